//! Prometheus metrics of a subgraph process, served on `/metrics`.
//!
//! Names carry their unit (`_seconds`, `_total`), and every label has a small, fixed
//! set of values: a service name, a root field, an error code, an event type, a
//! state. Never an id. docs/observability.md lists each metric with its meaning.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder, exponential_buckets,
};

pub struct Metrics {
    registry: Registry,
    /// `service`, `operation` (root field), `outcome` (`ok` or an error code).
    pub graphql_requests: IntCounterVec,
    /// `service`, `operation`.
    pub graphql_duration: HistogramVec,
    /// `service`, `pool` (`requests`, `background`), `state` (`in_use`, `idle`).
    pub pool_connections: IntGaugeVec,
    /// `service`, `pool`.
    pub pool_waiting: IntGaugeVec,
    /// `service`.
    pub outbox_backlog: IntGaugeVec,
    /// `service`.
    pub outbox_oldest_age: prometheus::GaugeVec,
    /// `service`, `event`.
    pub events_published: IntCounterVec,
    /// `service`, `event`, `outcome` (`applied`, `duplicate`).
    pub events_consumed: IntCounterVec,
    /// `service`, `reason` (`infrastructure`, `transient`).
    pub events_retried: IntCounterVec,
    /// `service`, `event`.
    pub events_dead_lettered: IntCounterVec,
    /// `service`: messages waiting in the service's dead-letter queue.
    pub dead_letters: IntGaugeVec,
    /// `service`, `event`: from the event's occurrence to its application here.
    pub consumer_lag: HistogramVec,
    /// `service`: 1 while the payment breaker is open or half-open.
    pub breaker_open: IntGaugeVec,
    /// `service`.
    pub live_subscriptions: IntGaugeVec,
    /// `service`, `action` (`called_off`, `failed`).
    pub reconciler_actions: IntCounterVec,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::register);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn register() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        // 1 ms to about 16 s.
        let latency = exponential_buckets(0.001, 2.0, 15).expect("valid buckets");
        let outbox_oldest_age = prometheus::GaugeVec::new(
            Opts::new("water_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0 when none)."),
            &["service"],
        )
        .expect("valid gauge");
        registry.register(Box::new(outbox_oldest_age.clone())).expect("registered once");
        Self {
            graphql_requests: counter(
                "water_graphql_requests_total",
                "GraphQL requests by root field and outcome (ok, or the first error's code).",
                &["service", "operation", "outcome"],
            ),
            graphql_duration: histogram(
                "water_graphql_request_duration_seconds",
                "Time to answer a GraphQL request.",
                &["service", "operation"],
                latency.clone(),
            ),
            pool_connections: gauge(
                "water_db_pool_connections",
                "Database connections of a pool, by state.",
                &["service", "pool", "state"],
            ),
            pool_waiting: gauge("water_db_pool_waiting", "Callers waiting for a database connection.", &[
                "service", "pool",
            ]),
            outbox_backlog: gauge("water_outbox_backlog", "Outbox rows not yet confirmed by the broker.", &["service"]),
            outbox_oldest_age,
            events_published: counter(
                "water_events_published_total",
                "Events confirmed by the broker and marked published.",
                &["service", "event"],
            ),
            events_consumed: counter(
                "water_events_consumed_total",
                "Messages settled by the consumer: applied, or a duplicate of one applied before.",
                &["service", "event", "outcome"],
            ),
            events_retried: counter(
                "water_events_retried_total",
                "Attempts to apply a message that failed and were tried again.",
                &["service", "reason"],
            ),
            events_dead_lettered: counter(
                "water_events_dead_lettered_total",
                "Messages sent to the service's dead-letter queue.",
                &["service", "event"],
            ),
            dead_letters: gauge("water_dead_letters", "Messages waiting in the service's dead-letter queue.", &[
                "service",
            ]),
            consumer_lag: histogram(
                "water_consumer_lag_seconds",
                "Time from an event's occurrence to its application by this service.",
                &["service", "event"],
                latency,
            ),
            breaker_open: gauge(
                "water_payment_breaker_open",
                "1 while the circuit breaker in front of payment is open or half-open.",
                &["service"],
            ),
            live_subscriptions: gauge("water_live_subscriptions", "Open live subscription streams.", &["service"]),
            reconciler_actions: counter(
                "water_reconciler_actions_total",
                "What the rent reconciler did with unfinished rent requests.",
                &["service", "action"],
            ),
            registry,
        }
    }

    /// Everything, in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer).expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}
