//! The events the services exchange, each defined once: its payload, routing key and
//! version ([`Event`]), and, in one enum per consuming service ([`Inbox`]), who
//! consumes it. The broker topology ([`TOPOLOGY`]) is derived from those enums, so a
//! new event or a new consumer is one change here, and a change to a payload is a
//! compile error wherever it matters.
//!
//! Every payload carries `at`: when the step happened in its producer's records.
//! The JSON on the wire changes only with a `VERSION` bump, and consumers read only
//! the version they know (anything else is dead-lettered as poison, not misread).
//! docs/events.md describes each event for people.

use chrono::{DateTime, Utc};
use event_bus::{Event, Subscription, inbox};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod card;
pub use card::CardNumber;

/// Implements [`Event`] for a payload struct with an `at` field.
macro_rules! event {
    ($name:ident = $type:literal, version $version:literal, ordered by $key:ident) => {
        impl Event for $name {
            const TYPE: &'static str = $type;
            const VERSION: i32 = $version;

            fn at(&self) -> DateTime<Utc> {
                self.at
            }

            fn ordering_key(&self) -> Option<Uuid> {
                event!(@key self $key)
            }
        }
    };
    (@key $self:ident nothing) => { None };
    (@key $self:ident $field:ident) => { Some($self.$field) };
}

/// An event whose payload is a shared struct (the five delivery events, the two stock
/// events): a distinct type per routing key, the same JSON.
macro_rules! event_of {
    ($(#[$meta:meta])* $name:ident($payload:ident) = $type:literal, version $version:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $payload);

        impl std::ops::Deref for $name {
            type Target = $payload;

            fn deref(&self) -> &$payload {
                &self.0
            }
        }

        impl Event for $name {
            const TYPE: &'static str = $type;
            const VERSION: i32 = $version;

            fn at(&self) -> DateTime<Utc> {
                self.0.at
            }

            fn ordering_key(&self) -> Option<Uuid> {
                Some(self.0.rental_id)
            }
        }
    };
}

/// `product.created` v2 (inventory): a product was added, or announced again by the
/// demo seeding. Rental keeps its own price list from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductCreated {
    pub product_id: Uuid,
    pub name: String,
    pub monthly_fee: i32,
    pub at: DateTime<Utc>,
}
event!(ProductCreated = "product.created", version 2, ordered by nothing);

/// `payment.charged` v2 (payment): a rental's first month was charged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCharged {
    pub payment_id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub amount: i32,
    pub at: DateTime<Utc>,
}
event!(PaymentCharged = "payment.charged", version 2, ordered by rental_id);

/// `payment.refunded` v2 (payment): a charge was paid back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    pub payment_id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub amount: i32,
    pub at: DateTime<Utc>,
}
event!(PaymentRefunded = "payment.refunded", version 2, ordered by rental_id);

/// `rental.accepted` v2 (rental): a paid rental was committed; its dispenser is to be
/// delivered to `delivery_address`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RentalAccepted {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub months: i32,
    pub monthly_fee: i32,
    pub delivery_address: String,
    pub payment_id: Uuid,
    pub at: DateTime<Utc>,
}
event!(RentalAccepted = "rental.accepted", version 2, ordered by rental_id);

/// `rental.cancelled` v2 (rental): the customer or an operator cancelled; enough for
/// delivery to cancel, or to record a cancelled delivery if the request has not
/// reached it yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RentalCancelled {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub delivery_address: String,
    pub payment_id: Uuid,
    pub at: DateTime<Utc>,
}
event!(RentalCancelled = "rental.cancelled", version 2, ordered by rental_id);

/// What every delivery event says: which delivery, of which rental and product, its
/// status after the change, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryChange {
    pub delivery_id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    /// `REQUESTED`, `SHIPPING`, `DELIVERED` or `CANCELLED`.
    pub status: String,
    pub at: DateTime<Utc>,
}

event_of!(
    /// `delivery.requested` v1: a delivery was created for an accepted rental.
    DeliveryRequested(DeliveryChange) = "delivery.requested", version 1
);
event_of!(
    /// `delivery.started` v1: an operator started the delivery (SHIPPING); inventory
    /// takes a unit for it.
    DeliveryStarted(DeliveryChange) = "delivery.started", version 1
);
event_of!(
    /// `delivery.completed` v1: the dispenser reached the customer (DELIVERED).
    DeliveryCompleted(DeliveryChange) = "delivery.completed", version 1
);
event_of!(
    /// `delivery.cancelled` v1: the delivery was called off because its rental was
    /// cancelled; payment refunds, inventory takes back what it gave.
    DeliveryCancelled(DeliveryChange) = "delivery.cancelled", version 1
);
event_of!(
    /// `delivery.cancel_refused` v1: the rental was cancelled after its delivery had
    /// completed; the delivery stands and the rental runs.
    DeliveryCancelRefused(DeliveryChange) = "delivery.cancel_refused", version 1
);

/// What inventory tells delivery about a shipment's unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockNews {
    pub delivery_id: Uuid,
    pub rental_id: Uuid,
    pub product_id: Uuid,
    pub at: DateTime<Utc>,
}

event_of!(
    /// `stock.shortage` v2 (inventory): a started delivery found no unit on hand; it
    /// waits for a restock.
    StockShortage(StockNews) = "stock.shortage", version 2
);
event_of!(
    /// `stock.allocated` v2 (inventory): a unit was taken for the delivery, at once or
    /// later from a restock or a returned unit. Only then can it be completed.
    StockAllocated(StockNews) = "stock.allocated", version 2
);

inbox! {
    /// What inventory consumes: shipments take and give back units.
    pub enum ForInventory for "inventory" {
        DeliveryStarted(DeliveryStarted),
        DeliveryCancelled(DeliveryCancelled),
    }
}

inbox! {
    /// What payment consumes: a cancelled delivery refunds its rental's charge.
    pub enum ForPayment for "payment" {
        DeliveryCancelled(DeliveryCancelled),
    }
}

inbox! {
    /// What rental consumes: its price list, and every step of a rental's life for
    /// its state and the customer's history.
    pub enum ForRental for "rental" {
        ProductCreated(ProductCreated),
        PaymentCharged(PaymentCharged),
        PaymentRefunded(PaymentRefunded),
        DeliveryRequested(DeliveryRequested),
        DeliveryStarted(DeliveryStarted),
        DeliveryCompleted(DeliveryCompleted),
        DeliveryCancelRefused(DeliveryCancelRefused),
    }
}

inbox! {
    /// What delivery consumes: rentals to deliver or call off, and news of their units.
    pub enum ForDelivery for "delivery" {
        RentalAccepted(RentalAccepted),
        RentalCancelled(RentalCancelled),
        StockShortage(StockShortage),
        StockAllocated(StockAllocated),
    }
}

inbox! {
    /// What a delivery instance's live listener hears (on a queue of its own, not part
    /// of [`TOPOLOGY`]): every change of a delivery, to nudge its subscribers.
    pub enum DeliveryNews for "delivery-live" {
        Requested(DeliveryRequested),
        Started(DeliveryStarted),
        Completed(DeliveryCompleted),
        Cancelled(DeliveryCancelled),
        CancelRefused(DeliveryCancelRefused),
    }
}

impl DeliveryNews {
    /// The rental whose delivery changed.
    pub fn rental_id(&self) -> Uuid {
        match self {
            Self::Requested(event) => event.rental_id,
            Self::Started(event) => event.rental_id,
            Self::Completed(event) => event.rental_id,
            Self::Cancelled(event) => event.rental_id,
            Self::CancelRefused(event) => event.rental_id,
        }
    }
}

/// Every consuming service's queue and bindings: what each service declares when it
/// connects, so an event always has somewhere to go whatever the start order.
pub const TOPOLOGY: &[Subscription] = &[
    Subscription::of::<ForInventory>(),
    Subscription::of::<ForPayment>(),
    Subscription::of::<ForRental>(),
    Subscription::of::<ForDelivery>(),
];

#[cfg(test)]
mod tests {
    use event_bus::{Envelope, HandlerError, Inbox};
    use serde_json::json;

    use super::*;

    fn consumers_of(event_type: &str) -> Vec<&'static str> {
        TOPOLOGY
            .iter()
            .filter(|subscription| subscription.event_types.contains(&event_type))
            .map(|subscription| subscription.service)
            .collect()
    }

    #[test]
    fn every_event_has_a_consumer() {
        // The relay publishes with `mandatory`: an event without a queue would stay in
        // the outbox for ever.
        for event_type in [
            ProductCreated::TYPE,
            PaymentCharged::TYPE,
            PaymentRefunded::TYPE,
            RentalAccepted::TYPE,
            RentalCancelled::TYPE,
            DeliveryRequested::TYPE,
            DeliveryStarted::TYPE,
            DeliveryCompleted::TYPE,
            DeliveryCancelled::TYPE,
            DeliveryCancelRefused::TYPE,
            StockShortage::TYPE,
            StockAllocated::TYPE,
        ] {
            assert!(!consumers_of(event_type).is_empty(), "nobody consumes {event_type}");
        }
        assert_eq!(consumers_of(DeliveryCancelled::TYPE), ["inventory", "payment"]);
    }

    #[test]
    fn payloads_keep_their_wire_format() {
        let at: DateTime<Utc> = "2026-12-01T09:15:02.481Z".parse().expect("time");
        let id = Uuid::nil();
        let change = DeliveryChange {
            delivery_id: id,
            rental_id: id,
            customer_id: id,
            product_id: id,
            status: "SHIPPING".into(),
            at,
        };
        assert_eq!(
            serde_json::to_value(DeliveryStarted(change)).expect("json"),
            json!({ "deliveryId": id, "rentalId": id, "customerId": id, "productId": id, "status": "SHIPPING",
                    "at": "2026-12-01T09:15:02.481Z" })
        );
        let charged = PaymentCharged { payment_id: id, rental_id: id, customer_id: id, amount: 19_900, at };
        assert_eq!(
            serde_json::to_value(charged).expect("json"),
            json!({ "paymentId": id, "rentalId": id, "customerId": id, "amount": 19900, "at": "2026-12-01T09:15:02.481Z" })
        );
    }

    #[test]
    fn an_inbox_reads_its_events_and_refuses_other_types_and_versions() {
        let news = StockNews {
            delivery_id: Uuid::now_v7(),
            rental_id: Uuid::now_v7(),
            product_id: Uuid::now_v7(),
            at: Utc::now(),
        };
        let envelope = Envelope::wrap("inventory", &StockAllocated(news.clone()));
        assert_eq!(ForDelivery::decode(&envelope), Ok(ForDelivery::StockAllocated(StockAllocated(news.clone()))));
        assert_eq!(ForDelivery::decode(&envelope).expect("decoded").ordering_key(), Some(news.rental_id));

        let mut old = envelope.clone();
        old.version = 1;
        assert!(matches!(ForDelivery::decode(&old), Err(HandlerError::Poison(reason)) if reason.contains("version 1")));
        assert!(
            matches!(ForPayment::decode(&envelope), Err(HandlerError::Poison(reason)) if reason.contains("does not consume"))
        );
    }
}
