//! Who consumes which event: the whole topology in one place.
//!
//! Every service declares every queue and binding below when it connects, so an event
//! always has somewhere to go even if its consumer has never run yet: nothing is lost
//! to a start-up order. The event payloads are documented in docs/events.md.

/// One consuming service and the event types (routing keys) its queue receives.
#[derive(Debug, Clone, Copy)]
pub struct Subscription {
    pub service: &'static str,
    pub event_types: &'static [&'static str],
}

pub const SUBSCRIPTIONS: &[Subscription] = &[
    Subscription { service: "inventory", event_types: &["delivery.started", "delivery.cancelled"] },
    Subscription { service: "payment", event_types: &["delivery.cancelled"] },
    Subscription {
        service: "rental",
        event_types: &[
            "product.created",
            "payment.charged",
            "payment.refunded",
            "delivery.requested",
            "delivery.started",
            "delivery.completed",
            "delivery.cancel_refused",
        ],
    },
    Subscription {
        service: "delivery",
        event_types: &["rental.accepted", "rental.cancelled", "stock.shortage", "stock.allocated"],
    },
];

/// What `service` subscribes to (nothing, for a service that only publishes).
pub fn subscriptions_of(subscriptions: &[Subscription], service: &str) -> &'static [&'static str] {
    subscriptions.iter().find(|subscription| subscription.service == service).map_or(&[], |found| found.event_types)
}
