//! Logs and traces of a process.
//!
//! - Logs: text lines by default, coloured only when the output is a terminal; one JSON
//!   object per line with `LOG_FORMAT=json`, each carrying the `trace_id` and `span_id` of
//!   the span it was written in. The level comes from `RUST_LOG` (default `info`). Crates
//!   that would write request data at debug level (SQL parameters, AMQP frames, HTTP
//!   bodies) are held at info whatever `RUST_LOG` says: no card number, address or token
//!   reaches a log at any level.
//! - Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are exported over OTLP/HTTP
//!   (`<endpoint>/v1/traces`) and the W3C trace context is continued from every incoming
//!   request, event and call, and passed on to every outgoing one ([`inject`],
//!   [`extract`]). Without it nothing is exported and no collector is needed, but the
//!   trace context still travels, so the logs of one request carry one `trace_id` in
//!   every service. `RUST_LOG` chooses the log lines, not the spans: every span at info
//!   or above is recorded whatever it says.

use std::collections::HashMap;
use std::io::IsTerminal;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber, span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

use crate::config::{LogFormat, TelemetryConfig};

/// Crates held at info (or quieter) whatever `RUST_LOG` asks: at debug or trace they
/// write SQL parameters (tokio_postgres), message bodies (lapin, amq_protocol), or
/// request and response contents (hyper, h2, reqwest, tungstenite). A later directive
/// for the same target wins, so these come last.
const QUIET_CRATES: &[&str] = &[
    "tokio_postgres=info",
    "diesel=info",
    "lapin=warn",
    "amq_protocol=info",
    "hyper=info",
    "hyper_util=info",
    "h2=info",
    "reqwest=info",
    "tungstenite=info",
    "tokio_tungstenite=info",
    "async_graphql=info",
    "opentelemetry=info",
    "opentelemetry_sdk=info",
    "opentelemetry_otlp=info",
];

/// Keeps the telemetry pipeline alive; dropping it flushes and stops the exporter.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber for `service`. Later calls (the launcher, tests)
/// leave the first one in place.
pub fn init(service: &'static str, config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    let mut events = EnvFilter::try_new(&config.log_filter)
        .map_err(|error| anyhow::anyhow!("RUST_LOG={:?} is not a valid filter: {error}", config.log_filter))?;
    for directive in QUIET_CRATES {
        events = events.add_directive(directive.parse().expect("our directives parse"));
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // Spans exist with or without a collector: their trace context travels with every
    // call and event, so JSON logs carry the same trace_id in every service either way.
    let provider = tracer_provider(service, config.otlp_endpoint.as_deref())?;
    let traces = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
    let output = match config.log_format {
        LogFormat::Json => fmt::layer().event_format(JsonLine).boxed(),
        LogFormat::Text => fmt::layer().with_ansi(std::io::stdout().is_terminal()).boxed(),
    };
    let layers = traces.and_then(output).with_filter(SpansAndEvents { events });
    // An error only means a subscriber is already installed, which is fine.
    let _ = tracing_subscriber::registry().with(layers).try_init();
    Ok(TelemetryGuard { provider })
}

/// `RUST_LOG` decides which events are written, not which spans exist: every span at
/// info or above is recorded, so `RUST_LOG=warn` still exports whole traces and a
/// warning carries the trace it happened in.
struct SpansAndEvents {
    events: EnvFilter,
}

impl<S: Subscriber + for<'lookup> LookupSpan<'lookup>> Filter<S> for SpansAndEvents {
    fn enabled(&self, metadata: &Metadata<'_>, context: &Context<'_, S>) -> bool {
        (metadata.is_span() && *metadata.level() <= Level::INFO) || Filter::enabled(&self.events, metadata, context)
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.is_span() && *metadata.level() <= Level::INFO {
            Interest::always()
        } else {
            Filter::<S>::callsite_enabled(&self.events, metadata)
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::<S>::max_level_hint(&self.events).map(|events| events.max(LevelFilter::INFO))
    }

    fn on_new_span(&self, attributes: &span::Attributes<'_>, id: &span::Id, context: Context<'_, S>) {
        Filter::on_new_span(&self.events, attributes, id, context);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, context: Context<'_, S>) {
        Filter::on_record(&self.events, id, values, context);
    }

    fn on_enter(&self, id: &span::Id, context: Context<'_, S>) {
        Filter::on_enter(&self.events, id, context);
    }

    fn on_exit(&self, id: &span::Id, context: Context<'_, S>) {
        Filter::on_exit(&self.events, id, context);
    }

    fn on_close(&self, id: span::Id, context: Context<'_, S>) {
        Filter::on_close(&self.events, id, context);
    }
}

/// Spans go to `<endpoint>/v1/traces` when there is an endpoint, and nowhere otherwise.
fn tracer_provider(service: &'static str, endpoint: Option<&str>) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
    let provider = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = endpoint else { return Ok(provider.build()) };
    let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces)
        .with_headers(HashMap::new())
        .build()
        .map_err(|error| anyhow::anyhow!("OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}: {error}"))?;
    // Exports run on a small runtime of their own, so a slow collector never holds up
    // the service's own threads.
    let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
        exporter,
        opentelemetry_sdk::runtime::TokioCurrentThread,
    )
    .build();
    Ok(provider.with_span_processor(processor).build())
}

/// For tests: warnings and errors only (unless `RUST_LOG` says otherwise), written
/// through the test harness so a passing test prints nothing.
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = fmt().with_env_filter(filter).with_ansi(false).with_test_writer().try_init();
}

/// The W3C `traceparent` of the current span, to store or send with something that
/// outlives it (an outbox row, a message); `None` when no trace is being recorded.
pub fn current_traceparent() -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the trace `traceparent` names (as an HTTP header, an AMQP
/// header or a stored outbox column carried it). Nothing happens for `None` or garbage.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else { return };
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// Writes the current span's trace context into outgoing HTTP headers.
pub fn inject(headers: &mut axum::http::HeaderMap) {
    TraceContextPropagator::new()
        .inject_context(&tracing::Span::current().context(), &mut opentelemetry_http::HeaderInjector(headers));
}

/// The trace context incoming HTTP headers carry.
pub fn extract(headers: &axum::http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers))
}

/// One JSON object per log line: time, level, target, message and fields, the current
/// span's name, and its `trace_id` and `span_id` when a trace is being recorded.
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = serde_json::Map::new();
        event.record(&mut JsonFields(&mut fields));
        let metadata = event.metadata();
        let mut line = serde_json::Map::new();
        line.insert("timestamp".into(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true).into());
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        if let Some(message) = fields.remove("message") {
            line.insert("message".into(), message);
        }
        if let Some(span) = ctx.lookup_current() {
            line.insert("span".into(), span.name().into());
        }
        let context = tracing::Span::current().context();
        let span_context = context.span().span_context().clone();
        if span_context.is_valid() {
            line.insert("trace_id".into(), span_context.trace_id().to_string().into());
            line.insert("span_id".into(), span_context.span_id().to_string().into());
        }
        if !fields.is_empty() {
            line.insert("fields".into(), serde_json::Value::Object(fields));
        }
        let text = serde_json::to_string(&line).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonFields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}
