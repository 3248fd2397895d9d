//! Prometheus metrics of a subgraph process, served on `/metrics`.
//!
//! One registry per process; each crate registers its own metrics in it (the kit its
//! requests and pools, the event bus its events, rental its payment breaker, ...) with
//! the helpers below, and keeps them in a `LazyLock` of its own. Names carry their unit
//! (`_seconds`, `_total`), and every label has a small, fixed set of values: a service
//! name, a root field, an error code, an event type, a state. Never an id.
//! docs/observability.md lists each metric with its meaning.

use std::sync::{Arc, LazyLock};

use futures::future::BoxFuture;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
    exponential_buckets,
};

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Registers a counter in the process's registry.
pub fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    REGISTRY.register(Box::new(metric.clone())).expect("each metric is registered once");
    metric
}

/// Registers an integer gauge in the process's registry.
pub fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    REGISTRY.register(Box::new(metric.clone())).expect("each metric is registered once");
    metric
}

/// Registers a floating-point gauge in the process's registry.
pub fn float_gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let metric = GaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    REGISTRY.register(Box::new(metric.clone())).expect("each metric is registered once");
    metric
}

/// Registers a histogram with [`latency_buckets`] in the process's registry.
pub fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(latency_buckets()), labels).expect("valid");
    REGISTRY.register(Box::new(metric.clone())).expect("each metric is registered once");
    metric
}

/// 1 ms to about 16 s.
pub fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.001, 2.0, 15).expect("valid buckets")
}

/// Everything registered, in Prometheus's text format.
pub fn render() -> String {
    let mut buffer = Vec::new();
    TextEncoder::new().encode(&REGISTRY.gather(), &mut buffer).expect("text encoding cannot fail");
    String::from_utf8(buffer).expect("the text format is UTF-8")
}

/// Work that refreshes gauges read at scrape time (an outbox backlog, say), run before
/// each `/metrics` answer.
pub type ScrapeHook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// The kit's own metrics: requests and database pools.
pub struct KitMetrics {
    /// `service`, `operation` (root field), `outcome` (`ok` or an error code).
    pub graphql_requests: IntCounterVec,
    /// `service`, `operation`.
    pub graphql_duration: HistogramVec,
    /// `service`, `pool` (`requests`, `background`), `state` (`in_use`, `idle`).
    pub pool_connections: IntGaugeVec,
    /// `service`, `pool`.
    pub pool_waiting: IntGaugeVec,
    /// `service`.
    pub live_subscriptions: IntGaugeVec,
}

static KIT_METRICS: LazyLock<KitMetrics> = LazyLock::new(|| KitMetrics {
    graphql_requests: counter(
        "water_graphql_requests_total",
        "GraphQL requests by root field and outcome (ok, or the first error's code).",
        &["service", "operation", "outcome"],
    ),
    graphql_duration: histogram(
        "water_graphql_request_duration_seconds",
        "Time to answer a GraphQL request.",
        &["service", "operation"],
    ),
    pool_connections: gauge(
        "water_db_pool_connections",
        "Database connections of a pool, by state.",
        &["service", "pool", "state"],
    ),
    pool_waiting: gauge("water_db_pool_waiting", "Callers waiting for a database connection.", &["service", "pool"]),
    live_subscriptions: gauge("water_live_subscriptions", "Open live subscription streams.", &["service"]),
});

/// The kit's metrics.
pub fn metrics() -> &'static KitMetrics {
    &KIT_METRICS
}
