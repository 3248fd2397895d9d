//! What an operator sees, checked with real tools: traces received over OTLP, metrics
//! scraped by a real Prometheus, and logs at debug level that hold no secret. Each test
//! runs the system as production does: every service its own process, the router in
//! front (docs/observability.md).

mod logs;
mod metrics;
mod support;
mod traces;
