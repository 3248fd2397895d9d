//! One rent is one trace: router → rental → payment → the relay's publish → the
//! consumers; one delivery step is one trace down to the live update a subscriber gets.
//! The spans are received over OTLP/HTTP by a receiver the test runs, as a collector.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use harness::live_clients::WsClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;
use subgraph_kit::Identity;
use uuid::Uuid;

use crate::support::{APPROVED_CARD, LIVE, Observed, START, Settings, new_traceparent};

#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    start_unix_nanos: u64,
    end_unix_nanos: u64,
    attributes: HashMap<String, String>,
}

impl ReceivedSpan {
    fn describe(&self) -> String {
        format!("{} {:?} {:?}", self.service, self.name, self.attributes.get("event"))
    }
}

/// An OTLP/HTTP receiver: every span any process exported, and every request it could
/// not read (those fail the test).
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    unreadable: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    async fn start(self) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = self.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { state.receive(&headers, &body) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(format!("http://{address}"))
    }

    fn receive(&self, headers: &HeaderMap, body: &[u8]) -> StatusCode {
        let content_type = headers.get("content-type").and_then(|value| value.to_str().ok()).unwrap_or_default();
        let request = match ExportTraceServiceRequest::decode(body) {
            Ok(request) if content_type.starts_with("application/x-protobuf") => request,
            other => {
                let why = format!("content-type {content_type:?}, {} bytes: {:?}", body.len(), other.err());
                self.unreadable.lock().expect("unreadable").push(why);
                return StatusCode::BAD_REQUEST;
            }
        };
        let mut spans = self.spans.lock().expect("spans");
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .map(|attribute| text(attribute.value.as_ref().and_then(|value| value.value.as_ref())))
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    start_unix_nanos: span.start_time_unix_nano,
                    end_unix_nanos: span.end_time_unix_nano,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|attribute| {
                            (
                                attribute.key.clone(),
                                text(attribute.value.as_ref().and_then(|value| value.value.as_ref())),
                            )
                        })
                        .collect(),
                });
            }
        }
        StatusCode::OK
    }

    fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("spans").iter().filter(|span| span.trace_id == trace_id).cloned().collect()
    }

    /// Waits until the trace holds every span `wanted` names (service, span name,
    /// `event` attribute), then a little longer for stragglers.
    async fn wait_for(&self, trace_id: &str, wanted: &[(&str, &str, Option<&str>)]) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let trace = self.trace(trace_id);
            let complete = wanted.iter().all(|want| find(&trace, *want).is_some());
            if complete || Instant::now() > deadline {
                tokio::time::sleep(Duration::from_millis(500)).await;
                return self.trace(trace_id);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value {
        Some(AnyValue::StringValue(text)) => text.clone(),
        Some(AnyValue::IntValue(number)) => number.to_string(),
        Some(AnyValue::BoolValue(flag)) => flag.to_string(),
        Some(AnyValue::DoubleValue(number)) => number.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn find<'a>(trace: &'a [ReceivedSpan], (service, name, event): (&str, &str, Option<&str>)) -> Option<&'a ReceivedSpan> {
    trace.iter().find(|span| {
        span.service == service
            && span.name == name
            && event.is_none_or(|event| span.attributes.get("event").map(String::as_str) == Some(event))
    })
}

/// The span, checked to be a descendant of `ancestor` within the trace.
fn below<'a>(
    trace: &'a [ReceivedSpan],
    wanted: (&str, &str, Option<&str>),
    ancestor: &ReceivedSpan,
) -> &'a ReceivedSpan {
    let listing = || trace.iter().map(ReceivedSpan::describe).collect::<Vec<_>>().join("\n  ");
    let span = find(trace, wanted).unwrap_or_else(|| panic!("no span {wanted:?} in the trace:\n  {}", listing()));
    let by_id: HashMap<&str, &ReceivedSpan> = trace.iter().map(|span| (span.span_id.as_str(), span)).collect();
    let mut current = span;
    let mut chain = vec![current.describe()];
    while let Some(parent) = by_id.get(current.parent_span_id.as_str()) {
        if parent.span_id == ancestor.span_id {
            return span;
        }
        current = parent;
        chain.push(current.describe());
    }
    panic!(
        "{} is not below {}: its ancestry is\n  {}\nthe trace:\n  {}",
        span.describe(),
        ancestor.describe(),
        chain.join("\n  "),
        listing()
    )
}

#[tokio::test]
async fn one_rent_is_one_trace_from_the_router_to_the_last_consumer() {
    let collector = Collector::default();
    let endpoint = collector.clone().start().await.expect("the receiver listens");
    let observed = Observed::start(
        "traces",
        Settings {
            subgraph_env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone())],
            router_env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)],
            ..Settings::default()
        },
    )
    .await
    .expect("the cluster starts");
    let product = observed.product(3).await.expect("a product");
    let customer_id = Uuid::now_v7();
    let customer = observed.token(&Identity::Customer { customer_id });
    let address = format!("{} Traced-ro, Seoul", Uuid::new_v4().simple());

    // The rent, in a trace the client started.
    let (traceparent, rent_trace) = new_traceparent();
    let rental_id = observed.rent(&customer, product, &address, Some(&traceparent)).await.expect("rented");
    let trace = collector
        .wait_for(
            &rent_trace,
            &[
                ("rental", "graphql request", None),
                ("rental", "call payment", None),
                ("payment", "graphql request", None),
                ("rental", "publish event", Some("rental.accepted")),
                ("delivery", "consume event", Some("rental.accepted")),
            ],
        )
        .await;
    let router = trace.iter().find(|span| span.service == "router" && span.parent_span_id == traceparent[36..52]);
    let router = router.unwrap_or_else(|| panic!("no router span continues the client's trace: {trace:#?}"));
    let rental_request = below(&trace, ("rental", "graphql request", None), router);
    let call = below(&trace, ("rental", "call payment", None), rental_request);
    below(&trace, ("payment", "graphql request", None), call);
    let publish = below(&trace, ("rental", "publish event", Some("rental.accepted")), rental_request);
    below(&trace, ("delivery", "consume event", Some("rental.accepted")), publish);
    if let Ok(path) = std::env::var("TRACE_PICTURE") {
        std::fs::write(&path, waterfall(&trace)).expect("the picture is written");
        eprintln!("the rent's trace is drawn in {path}");
    }
    // Variables never become span attributes: neither the card nor the address left.
    for span in &trace {
        for value in span.attributes.values() {
            assert!(!value.contains(APPROVED_CARD) && !value.contains(&address), "{} carries {value}", span.describe());
        }
    }

    // Shipping, in a trace of its own, down to the update a live subscriber reads.
    let delivery_id = observed.delivery_of(&rental_id).await.expect("a delivery");
    let mut subscriber =
        WsClient::connect(&observed.cluster.router.as_ref().expect("router").websocket_url(), Some(&customer)).await;
    subscriber.subscribe("live", LIVE, json!({ "rentalId": rental_id })).await;
    let first = subscriber.next_message().await.expect("the current status");
    assert_eq!(first["payload"]["data"]["deliveryStatusChanged"]["status"], "REQUESTED", "{first}");
    let (traceparent, ship_trace) = new_traceparent();
    observed
        .graphql(&observed.operator(), Some(&traceparent), START, json!({ "id": delivery_id }))
        .await
        .expect("shipped");
    let shipped = subscriber.next_message().await.expect("the change");
    assert_eq!(shipped["payload"]["data"]["deliveryStatusChanged"]["status"], "SHIPPING", "{shipped}");
    let trace = collector
        .wait_for(
            &ship_trace,
            &[
                ("delivery", "graphql request", None),
                ("delivery", "publish event", Some("delivery.started")),
                ("delivery", "live change", Some("delivery.started")),
                ("delivery", "live update", None),
                ("inventory", "consume event", Some("delivery.started")),
            ],
        )
        .await;
    let router = trace.iter().find(|span| span.service == "router" && span.parent_span_id == traceparent[36..52]);
    let router = router.unwrap_or_else(|| panic!("no router span continues the client's trace: {trace:#?}"));
    let delivery_request = below(&trace, ("delivery", "graphql request", None), router);
    let publish = below(&trace, ("delivery", "publish event", Some("delivery.started")), delivery_request);
    below(&trace, ("inventory", "consume event", Some("delivery.started")), publish);
    let change = below(&trace, ("delivery", "live change", Some("delivery.started")), publish);
    below(&trace, ("delivery", "live update", None), change);

    subscriber.close().await;
    // No span any process exported carries a card number, an address or a token (a JWT
    // starts `eyJ`: its header, base64): not the customer's, the operator's, nor the one
    // rental signs for payment.
    let every_span = collector.spans.lock().expect("spans").clone();
    assert!(every_span.len() > 20, "{} spans", every_span.len());
    for span in &every_span {
        for (key, value) in &span.attributes {
            let secret =
                [APPROVED_CARD, address.as_str(), "eyJ", "Bearer "].into_iter().find(|secret| value.contains(secret));
            assert!(secret.is_none(), "{} carries {secret:?} in {key}: {value}", span.describe());
        }
    }
    let unreadable = collector.unreadable.lock().expect("unreadable").clone();
    assert!(unreadable.is_empty(), "exports the receiver could not read: {unreadable:?}");
    observed.finish().await.expect("the cluster stops");
}

/// The trace as an SVG waterfall (TRACE_PICTURE=<file.svg>): one row per span in start
/// order, indented by depth, coloured by service: the picture in docs/observability.md.
fn waterfall(trace: &[ReceivedSpan]) -> String {
    let by_id: HashMap<&str, &ReceivedSpan> = trace.iter().map(|span| (span.span_id.as_str(), span)).collect();
    let depth = |span: &ReceivedSpan| {
        let (mut depth, mut current) = (0, span);
        while let Some(parent) = by_id.get(current.parent_span_id.as_str()) {
            depth += 1;
            current = parent;
        }
        depth
    };
    let mut spans: Vec<&ReceivedSpan> = trace.iter().collect();
    spans.sort_by_key(|span| (span.start_unix_nanos, depth(span)));
    let start = spans.iter().map(|span| span.start_unix_nanos).min().unwrap_or_default();
    let end = spans.iter().map(|span| span.end_unix_nanos).max().unwrap_or_default().max(start + 1);
    let (label_width, bar_width, row) = (430.0, 640.0, 22.0);
    let x = |nanos: u64| label_width + (nanos - start) as f64 / (end - start) as f64 * bar_width;
    let colour = |service: &str| match service {
        "router" => "#6b7280",
        "rental" => "#2563eb",
        "payment" => "#d97706",
        "delivery" => "#059669",
        "inventory" => "#7c3aed",
        _ => "#9ca3af",
    };
    let height = 40.0 + row * spans.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"8\" y=\"18\" font-weight=\"bold\">One rent, one trace: {} spans in {:.1} ms</text>\n",
        spans.len(),
        (end - start) as f64 / 1e6,
        w = label_width + bar_width + 90.0,
    );
    for (index, span) in spans.iter().enumerate() {
        let y = 30.0 + row * index as f64;
        let event = span.attributes.get("event").map(|event| format!(" {event}")).unwrap_or_default();
        let label = format!("{}{}: {}{}", "  ".repeat(depth(span)), span.service, span.name, event);
        let (left, right) = (x(span.start_unix_nanos), x(span.end_unix_nanos.max(span.start_unix_nanos)));
        svg.push_str(&format!(
            "<text x=\"8\" y=\"{ty}\" xml:space=\"preserve\">{label}</text>\
             <rect x=\"{left:.1}\" y=\"{y}\" width=\"{width:.1}\" height=\"14\" fill=\"{fill}\"/>\
             <text x=\"{tx:.1}\" y=\"{ty}\" fill=\"#374151\">{ms:.2} ms</text>\n",
            ty = y + 11.0,
            width = (right - left).max(1.0),
            fill = colour(&span.service),
            tx = right + 4.0,
            ms = (span.end_unix_nanos.saturating_sub(span.start_unix_nanos)) as f64 / 1e6,
            label = label.replace('&', "&amp;").replace('<', "&lt;"),
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
