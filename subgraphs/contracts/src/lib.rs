//! The events the services exchange, each defined once: its payload, routing key,
//! version and producer (the [`events!`] catalogue, whence [`EVENTS`]), and, in one enum
//! per consuming service ([`Inbox`]), who consumes it. The broker topology
//! ([`TOPOLOGY`]) is derived from those enums, so a new event or a new consumer is one
//! change here, and a change to a payload is a compile error wherever it matters.
//!
//! Every payload carries `at`: when the step happened in its producer's records.
//! The JSON on the wire changes only with a `VERSION` bump, and consumers read only
//! the version they know (anything else is dead-lettered as poison, not misread).
//! docs/events.md describes each event for people.

use chrono::{DateTime, Utc};
use event_bus::{Event, Subscription, inbox};
use serde::{Deserialize, Serialize};
use subgraph_kit::text_enum;
use uuid::Uuid;

pub mod card;
pub use card::{CardNumber, Expiry, ExpiryRefused};

/// One kind of event, as the catalogue lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSpec {
    /// The routing key, e.g. `rental.accepted`.
    pub event_type: &'static str,
    pub version: i32,
    /// The only service that publishes it.
    pub producer: &'static str,
}

/// The catalogue: implements [`Event`] for each payload and lists them all in
/// [`EVENTS`]. An [`Event`] is only ever implemented here, so no event can exist
/// without being in the list.
macro_rules! events {
    ($( $name:ident = $type:literal, version $version:literal, by $producer:literal, ordered by $key:tt; )+) => {
        $(
            impl Event for $name {
                const TYPE: &'static str = $type;
                const VERSION: i32 = $version;
                const PRODUCER: &'static str = $producer;

                fn at(&self) -> DateTime<Utc> {
                    self.at
                }

                fn ordering_key(&self) -> Option<Uuid> {
                    events!(@key self $key)
                }
            }
        )+

        /// Every event of the contract, with its version and producer.
        pub const EVENTS: &[EventSpec] = &[$( EventSpec { event_type: $type, version: $version, producer: $producer } ),+];
    };
    (@key $self:ident nothing) => { None };
    (@key $self:ident $field:ident) => { Some($self.$field) };
}

/// Several events that share one payload (the delivery events, the stock events, the
/// visit events): a distinct type per routing key, the same JSON.
macro_rules! shared_payload {
    ($(#[$meta:meta])* $name:ident($payload:ident)) => {
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
    };
}

events! {
    ProductCreated = "product.created", version 3, by "inventory", ordered by nothing;
    StockShortage = "stock.shortage", version 2, by "inventory", ordered by rental_id;
    StockAllocated = "stock.allocated", version 2, by "inventory", ordered by rental_id;
    UnitReturned = "stock.returned", version 1, by "inventory", ordered by rental_id;

    PaymentCharged = "payment.charged", version 2, by "payment", ordered by rental_id;
    PaymentRefunded = "payment.refunded", version 2, by "payment", ordered by rental_id;
    InvoicePaid = "invoice.paid", version 1, by "payment", ordered by rental_id;
    InvoiceFailed = "invoice.failed", version 1, by "payment", ordered by rental_id;
    InvoiceVoided = "invoice.voided", version 1, by "payment", ordered by rental_id;
    PaymentMethodUpdated = "payment_method.updated", version 1, by "payment", ordered by rental_id;

    RentalAccepted = "rental.accepted", version 2, by "rental", ordered by rental_id;
    RentalCancelled = "rental.cancelled", version 2, by "rental", ordered by rental_id;
    RentalActivated = "rental.activated", version 1, by "rental", ordered by rental_id;
    RentalPeriodDue = "rental.period_due", version 1, by "rental", ordered by rental_id;
    RentalExtended = "rental.extended", version 1, by "rental", ordered by rental_id;
    RentalEnded = "rental.ended", version 1, by "rental", ordered by rental_id;

    DeliveryRequested = "delivery.requested", version 1, by "delivery", ordered by rental_id;
    DeliveryStarted = "delivery.started", version 1, by "delivery", ordered by rental_id;
    DeliveryCompleted = "delivery.completed", version 1, by "delivery", ordered by rental_id;
    DeliveryCancelled = "delivery.cancelled", version 1, by "delivery", ordered by rental_id;
    DeliveryCancelRefused = "delivery.cancel_refused", version 1, by "delivery", ordered by rental_id;
    VisitScheduled = "visit.scheduled", version 1, by "delivery", ordered by rental_id;
    VisitRescheduled = "visit.rescheduled", version 1, by "delivery", ordered by rental_id;
    VisitStarted = "visit.started", version 1, by "delivery", ordered by rental_id;
    VisitDone = "visit.done", version 1, by "delivery", ordered by rental_id;
    VisitCancelled = "visit.cancelled", version 1, by "delivery", ordered by rental_id;
}

// ---- inventory ---------------------------------------------------------------------

/// `product.created` v3 (inventory): a product was added, changed (its care interval),
/// or announced again by the demo seeding. Rental keeps its own price list from it; the
/// newest announcement wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductCreated {
    pub product_id: Uuid,
    pub name: String,
    pub monthly_fee: i32,
    /// Months between two filter-care visits (1-24).
    pub care_interval_months: i32,
    pub at: DateTime<Utc>,
}

/// What inventory tells delivery about a shipment's unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockNews {
    pub delivery_id: Uuid,
    pub rental_id: Uuid,
    pub product_id: Uuid,
    pub at: DateTime<Utc>,
}

shared_payload!(
    /// `stock.shortage` v2 (inventory): a started delivery found no unit on hand; it
    /// waits for a restock.
    StockShortage(StockNews)
);
shared_payload!(
    /// `stock.allocated` v2 (inventory): a unit was taken for the delivery, at once or
    /// later from a restock or a returned unit. Only then can it be completed.
    StockAllocated(StockNews)
);
shared_payload!(
    /// `stock.returned` v1 (inventory): the unit of the delivery came back to the
    /// warehouse with its pickup and is on hand again (once per delivery).
    UnitReturned(StockNews)
);

// ---- payment -----------------------------------------------------------------------

/// `payment.charged` v2 (payment): a rental's first month was charged, at rent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCharged {
    pub payment_id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub amount: i32,
    pub at: DateTime<Utc>,
}

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

text_enum! {
    /// What an invoice is for.
    pub enum InvoiceKind: "invoice kind" {
        /// One month (a period) of the contract.
        Period = "PERIOD",
        /// The fee for ending the contract early.
        TerminationFee = "TERMINATION_FEE",
    }
}

/// What every invoice event says: which invoice of which rental, for what, and where
/// the rental's account stands after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceChange {
    pub invoice_id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub kind: InvoiceKind,
    /// The period a PERIOD invoice is for (1 is the first month, paid at rent).
    pub period: Option<i32>,
    pub amount: i32,
    /// Which attempt to charge it this was (1 for the first); 0 for a change that was
    /// not a charge (a void).
    pub attempt: i32,
    /// Invoices of the rental that are FAILED after this change: the rental is past due
    /// while there is any.
    pub outstanding: i32,
    /// Orders the changes of one rental's account: a consumer applies what `outstanding`
    /// says only if `seq` is newer than the last it applied.
    pub seq: i64,
    pub at: DateTime<Utc>,
}

shared_payload!(
    /// `invoice.paid` v1 (payment): an invoice was charged to the card on file.
    InvoicePaid(InvoiceChange)
);
shared_payload!(
    /// `invoice.voided` v1 (payment): an operator wrote an unpaid invoice off; it will
    /// never be charged.
    InvoiceVoided(InvoiceChange)
);

/// `invoice.failed` v1 (payment): a charge of an invoice was declined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceFailed {
    #[serde(flatten)]
    pub change: InvoiceChange,
    /// Why the card network declined, in words.
    pub reason: String,
    /// When it is tried again; none when this was the last automatic attempt.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// True when this was the last automatic attempt of a monthly invoice: the rental
    /// ends for non-payment.
    pub final_attempt: bool,
}

impl std::ops::Deref for InvoiceFailed {
    type Target = InvoiceChange;

    fn deref(&self) -> &InvoiceChange {
        &self.change
    }
}

/// `payment_method.updated` v1 (payment): the customer replaced a rental's card on file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentMethodUpdated {
    /// The change, as payment records it.
    pub change_id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub brand: String,
    pub last4: String,
    pub at: DateTime<Utc>,
}

// ---- rental ------------------------------------------------------------------------

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

/// `rental.cancelled` v2 (rental): the customer or an operator cancelled before
/// delivery; enough for delivery to cancel, or to record a cancelled delivery if the
/// request has not reached it yet.
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

/// `rental.activated` v1 (rental): the dispenser was delivered and the term started:
/// period k runs from `starts_at` + (k-1) months, up to `ends_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RentalActivated {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub months: i32,
    pub monthly_fee: i32,
    pub delivery_address: String,
    /// The term's first instant (the delivery), and the first instant after it.
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// The first period's end (the second's start), for its invoice.
    pub first_period_ends_at: DateTime<Utc>,
    /// Months between two filter-care visits of this product, as the catalog said when
    /// the term started.
    pub care_interval_months: i32,
    pub at: DateTime<Utc>,
}

/// `rental.period_due` v1 (rental): a period of a running contract has started and is to
/// be charged, once, to the card on file. Published only while the rental runs, so a
/// period that starts after the end is never due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RentalPeriodDue {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub period: i32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub amount: i32,
    pub at: DateTime<Utc>,
}

/// `rental.extended` v1 (rental): the customer lengthened a running contract by
/// `added_months`, at the same fee. It says everything `rental.activated` says about the
/// term, so it can be applied even if it overtakes the activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RentalExtended {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub delivery_address: String,
    pub care_interval_months: i32,
    /// The contract length now, in months, and by how much it grew.
    pub months: i32,
    pub added_months: i32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

text_enum! {
    /// Why a delivered rental ended.
    pub enum EndReason: "end reason" {
        /// The last period ended.
        Completed = "COMPLETED",
        /// The customer ended it early (the termination fee applies).
        TerminatedByCustomer = "TERMINATED_BY_CUSTOMER",
        /// An operator ended it early (the termination fee applies).
        TerminatedByOperator = "TERMINATED_BY_OPERATOR",
        /// The last automatic attempt of a monthly invoice failed.
        TerminatedForNonPayment = "TERMINATED_FOR_NON_PAYMENT",
    }
}

/// `rental.ended` v1 (rental): a delivered rental ended (completed or terminated): its
/// later periods are never charged, a pickup is requested at `delivery_address`, and a
/// termination fee (if any) is to be charged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RentalEnded {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub delivery_address: String,
    pub reason: EndReason,
    /// In won; 0 when none is due.
    pub termination_fee: i32,
    pub at: DateTime<Utc>,
}

// ---- delivery ----------------------------------------------------------------------

text_enum! {
    /// Where a delivery stands; delivery's state machine moves it
    /// (`delivery::domain::DeliveryMoves`).
    pub enum DeliveryStatus: "delivery status" {
        /// Waiting in the operators' queue.
        Requested = "REQUESTED",
        /// On its way to the customer.
        Shipping = "SHIPPING",
        /// At the customer's door; the rental is active.
        Delivered = "DELIVERED",
        /// Called off because the rental was cancelled.
        Cancelled = "CANCELLED",
    }
}

/// What every delivery event says: which delivery, of which rental and product, its
/// status after the change, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryChange {
    pub delivery_id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub status: DeliveryStatus,
    pub at: DateTime<Utc>,
}

shared_payload!(
    /// `delivery.requested` v1: a delivery was created for an accepted rental.
    DeliveryRequested(DeliveryChange)
);
shared_payload!(
    /// `delivery.started` v1: an operator started the delivery (SHIPPING); inventory
    /// takes a unit for it.
    DeliveryStarted(DeliveryChange)
);
shared_payload!(
    /// `delivery.completed` v1: the dispenser reached the customer (DELIVERED).
    DeliveryCompleted(DeliveryChange)
);
shared_payload!(
    /// `delivery.cancelled` v1: the delivery was called off because its rental was
    /// cancelled; payment refunds, inventory takes back what it gave.
    DeliveryCancelled(DeliveryChange)
);
shared_payload!(
    /// `delivery.cancel_refused` v1: the rental was cancelled after its delivery had
    /// completed; the delivery stands and the rental runs.
    DeliveryCancelRefused(DeliveryChange)
);

text_enum! {
    /// Why a technician goes to a customer after the installation.
    pub enum VisitKind: "visit kind" {
        /// Filter change and cleaning, at the product's care interval.
        Care = "CARE",
        /// Collecting the unit when the rental has ended.
        Pickup = "PICKUP",
    }
}

text_enum! {
    /// Where a visit stands.
    pub enum VisitStatus: "visit status" {
        /// Planned for `scheduledFor`.
        Scheduled = "SCHEDULED",
        /// The technician is there.
        InProgress = "IN_PROGRESS",
        /// Done (for a pickup: the unit is collected).
        Done = "DONE",
        /// Will not happen (a care visit after the rental ended).
        Cancelled = "CANCELLED",
    }
}

/// What every visit event says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitChange {
    pub visit_id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    /// The delivery whose unit a pickup collects.
    pub delivery_id: Option<Uuid>,
    pub kind: VisitKind,
    pub status: VisitStatus,
    pub scheduled_for: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

shared_payload!(
    /// `visit.scheduled` v1: a care visit or a pickup was planned.
    VisitScheduled(VisitChange)
);
shared_payload!(
    /// `visit.rescheduled` v1: a visit was moved to another date.
    VisitRescheduled(VisitChange)
);
shared_payload!(
    /// `visit.started` v1: the technician started the visit.
    VisitStarted(VisitChange)
);
shared_payload!(
    /// `visit.done` v1: the visit is done; for a pickup, the unit is collected and
    /// inventory takes it back.
    VisitDone(VisitChange)
);
shared_payload!(
    /// `visit.cancelled` v1: a visit will not happen (care visits after the rental ended).
    VisitCancelled(VisitChange)
);

// ---- who consumes what -------------------------------------------------------------

inbox! {
    /// What inventory consumes: shipments take and give back units; pickups bring them
    /// home.
    pub enum ForInventory for "inventory" {
        DeliveryStarted(DeliveryStarted),
        DeliveryCancelled(DeliveryCancelled),
        VisitDone(VisitDone),
    }
}

inbox! {
    /// What payment consumes: a cancelled delivery refunds its rental's charge; the
    /// contract's term, its due periods and its end drive the invoices.
    pub enum ForPayment for "payment" {
        DeliveryCancelled(DeliveryCancelled),
        RentalActivated(RentalActivated),
        RentalPeriodDue(RentalPeriodDue),
        RentalEnded(RentalEnded),
    }
}

inbox! {
    /// What rental consumes: its price list, and every step of a rental's life for
    /// its state and the customer's history.
    pub enum ForRental for "rental" {
        ProductCreated(ProductCreated),
        PaymentCharged(PaymentCharged),
        PaymentRefunded(PaymentRefunded),
        InvoicePaid(InvoicePaid),
        InvoiceFailed(InvoiceFailed),
        InvoiceVoided(InvoiceVoided),
        PaymentMethodUpdated(PaymentMethodUpdated),
        DeliveryRequested(DeliveryRequested),
        DeliveryStarted(DeliveryStarted),
        DeliveryCompleted(DeliveryCompleted),
        DeliveryCancelRefused(DeliveryCancelRefused),
        VisitScheduled(VisitScheduled),
        VisitRescheduled(VisitRescheduled),
        VisitStarted(VisitStarted),
        VisitDone(VisitDone),
        VisitCancelled(VisitCancelled),
        UnitReturned(UnitReturned),
    }
}

inbox! {
    /// What delivery consumes: rentals to deliver or call off, news of their units, and
    /// the contract's term (care visits) and end (the pickup).
    pub enum ForDelivery for "delivery" {
        RentalAccepted(RentalAccepted),
        RentalCancelled(RentalCancelled),
        RentalActivated(RentalActivated),
        RentalExtended(RentalExtended),
        RentalEnded(RentalEnded),
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

/// Months between two filter-care visits when a product does not say.
pub const DEFAULT_CARE_INTERVAL_MONTHS: i32 = 4;

/// Every consuming service's queue and bindings: what each service declares when it
/// connects, so an event always has somewhere to go whatever the start order.
pub const TOPOLOGY: &[Subscription] = &[
    Subscription::of::<ForInventory>(),
    Subscription::of::<ForPayment>(),
    Subscription::of::<ForRental>(),
    Subscription::of::<ForDelivery>(),
];

/// The live listeners, by the service that runs them: they bind server-named queues of
/// their own to these event types.
pub const LISTENERS: &[(&str, Subscription)] = &[("delivery", Subscription::of::<DeliveryNews>())];

/// What each consuming service may do on the events exchange, from the catalogue: publish
/// the events it produces, bind what its inbox and its live listeners read. Provisioning
/// turns these into each service's broker user (`event_bus::accounts`).
pub fn grants() -> Vec<event_bus::accounts::Grant> {
    TOPOLOGY
        .iter()
        .map(|subscription| {
            let service = subscription.service;
            let mut reads: Vec<&'static str> = subscription.event_types.to_vec();
            for (_, listener) in LISTENERS.iter().filter(|(owner, _)| *owner == service) {
                reads.extend(listener.event_types);
            }
            reads.sort_unstable();
            reads.dedup();
            let publishes =
                EVENTS.iter().filter(|event| event.producer == service).map(|event| event.event_type).collect();
            event_bus::accounts::Grant { service, publishes, reads }
        })
        .collect()
}

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
    fn each_service_may_publish_only_what_it_produces_and_read_what_it_consumes() {
        let grants = grants();
        let rental = grants.iter().find(|grant| grant.service == "rental").expect("rental");
        assert!(rental.publishes.contains(&RentalAccepted::TYPE) && !rental.publishes.contains(&InvoicePaid::TYPE));
        assert!(rental.reads.contains(&InvoicePaid::TYPE) && !rental.reads.contains(&RentalAccepted::TYPE));
        let delivery = grants.iter().find(|grant| grant.service == "delivery").expect("delivery");
        assert!(delivery.reads.contains(&DeliveryStarted::TYPE), "its live listener hears its own news");
        let published: usize = grants.iter().map(|grant| grant.publishes.len()).sum();
        assert_eq!(published, EVENTS.len(), "every event has exactly one publisher among the services");
    }

    #[test]
    fn every_event_has_a_consumer() {
        // The relay publishes with `mandatory`: an event without a queue would stay in
        // the outbox for ever.
        for event in EVENTS {
            assert!(!consumers_of(event.event_type).is_empty(), "nobody consumes {}", event.event_type);
        }
        assert_eq!(consumers_of(DeliveryCancelled::TYPE), ["inventory", "payment"]);
    }

    #[test]
    fn the_catalogue_lists_each_event_once_and_no_service_consumes_its_own() {
        let mut types: Vec<&str> = EVENTS.iter().map(|event| event.event_type).collect();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), EVENTS.len(), "an event type is listed twice");
        for subscription in TOPOLOGY {
            for event_type in subscription.event_types {
                let event = EVENTS.iter().find(|event| event.event_type == *event_type).expect("catalogued");
                assert_ne!(
                    event.producer, subscription.service,
                    "{} consumes its own {event_type}",
                    subscription.service
                );
            }
        }
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
            status: DeliveryStatus::Shipping,
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
        let envelope = Envelope::wrap(&StockAllocated(news.clone()));
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
