//! The event bus's metrics, in the process's registry (`subgraph_kit::metrics`).

use std::sync::LazyLock;

use prometheus::{GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec};
use subgraph_kit::metrics::{counter, float_gauge, gauge, histogram};

pub struct BusMetrics {
    /// `service`.
    pub outbox_backlog: IntGaugeVec,
    /// `service`.
    pub outbox_oldest_age: GaugeVec,
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
}

static METRICS: LazyLock<BusMetrics> = LazyLock::new(|| BusMetrics {
    outbox_backlog: gauge("water_outbox_backlog", "Outbox rows not yet confirmed by the broker.", &["service"]),
    outbox_oldest_age: float_gauge(
        "water_outbox_oldest_age_seconds",
        "Age of the oldest unpublished outbox row (0 when none).",
        &["service"],
    ),
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
    dead_letters: gauge("water_dead_letters", "Messages waiting in the service's dead-letter queue.", &["service"]),
    consumer_lag: histogram(
        "water_consumer_lag_seconds",
        "Time from an event's occurrence to its application by this service.",
        &["service", "event"],
    ),
});

pub fn metrics() -> &'static BusMetrics {
    &METRICS
}
