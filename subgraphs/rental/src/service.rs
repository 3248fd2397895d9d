//! Rental's use cases, one transaction each. Every change of a rental or its timeline
//! refreshes the customer's history row (the read model) in the same transaction: the
//! storage functions touch the rental and the transaction projects it before it commits
//! (`storage::history::HistoryProjection`), so a customer's own change shows in
//! `myRentals` at once, whatever the state of the other services.
//!
//! - [`renting`]: renting, paid or not at all, and the reconciler that calls off the
//!   charges of requests that never completed;
//! - [`payments`]: the client for the payment service (with its [`breaker`]);
//! - [`contract`]: the contract after delivery: its clock (due periods, the end of the
//!   term), extension, early termination, and what the account's events change;
//! - [`activity`]: the live activity of a rental, on every replica;
//! - [`rebuild`]: recomputing the history from every service's records;
//! - here: cancelling, and what delivery's and the catalog's events change.

pub mod activity;
pub mod breaker;
pub mod contract;
pub mod payments;
pub mod rebuild;
pub mod renting;

use chrono::{DateTime, Utc};
use contracts::{ProductCreated, RentalActivated, RentalCancelled};
use event_bus::{EventMeta, HandlerError, outbox};
use subgraph_kit::clock::Calendar;
use subgraph_kit::{ApiError, Database, Identity, Tx, db};
use uuid::Uuid;

use crate::domain::{DEFAULT_CARE_INTERVAL_MONTHS, Step, Term, TimelineKind};
use crate::storage::catalog::{self, CatalogEntry};
use crate::storage::rentals::{self, RentalRow};
use crate::storage::timeline::{self, Step as TimelineStep};

/// Cancels a rental that is not yet delivered; cancelling a cancelled rental returns it
/// as it is. The rental reads CANCELLED at once, in its history too; delivery then
/// cancels the delivery (and payment refunds, inventory restocks), or, if the delivery
/// had completed first, refuses and the rental is reinstated.
pub async fn cancel(database: &Database, caller: &Identity, rental_id: Uuid) -> Result<RentalRow, ApiError> {
    database
        .transaction(async |tx: &mut Tx<'_>| {
            let mut rental = visible_locked(tx, caller, rental_id).await?;
            let step = rental.status.cancel().map_err(|refused| {
                ApiError::conflict(format!(
                    "{refused}: only a rental that is not yet delivered can be cancelled (a delivered one is \
                     ended with terminateRental)"
                ))
            })?;
            let Step::MovesTo(cancelled) = step else { return Ok(rental) };
            let now = db::now();
            rental.status = cancelled;
            rental.updated_at = now;
            let event = RentalCancelled {
                rental_id,
                customer_id: rental.customer_id,
                product_id: rental.product_id,
                delivery_address: rental.delivery_address.clone(),
                payment_id: rental.payment_id,
                at: now,
            };
            let event_id = outbox::enqueue(tx, &event).await?;
            rentals::save(tx, &rental).await?;
            timeline::record(tx, event_id, &TimelineStep::once(rental_id, TimelineKind::Cancelled, now)).await?;
            Ok(rental)
        })
        .await
}

/// The rental, locked, if the caller may see it; another customer's reads as missing.
pub(crate) async fn visible_locked(tx: &mut Tx<'_>, caller: &Identity, rental_id: Uuid) -> Result<RentalRow, ApiError> {
    rentals::lock(tx, rental_id)
        .await?
        .filter(|rental| caller.may_see_customer(rental.customer_id))
        .ok_or_else(|| ApiError::not_found(format!("there is no rental with id {rental_id}")))
}

/// `product.created`: rental's price list follows the catalog.
pub async fn learn_product(tx: &mut Tx<'_>, product: &ProductCreated) -> Result<(), HandlerError> {
    let entry = CatalogEntry {
        product_id: product.product_id,
        name: product.name.clone(),
        monthly_fee: product.monthly_fee,
        care_interval_months: product.care_interval_months,
    };
    catalog::upsert(tx, &entry, product.at).await?;
    Ok(())
}

/// A step another service reports (paid, requested, shipped, refunded, a visit) lands in
/// the rental's timeline, at the time it happened there; the history row follows.
pub async fn record_step(tx: &mut Tx<'_>, meta: EventMeta, step: TimelineStep) -> Result<(), HandlerError> {
    timeline::record(tx, meta.id, &step).await?;
    Ok(())
}

/// `delivery.completed`: the dispenser arrived; the term starts and the rental runs. A
/// rental cancelled meanwhile waits for delivery's verdict on the cancellation
/// (`delivery.cancel_refused`).
pub async fn activate(
    tx: &mut Tx<'_>,
    calendar: &Calendar,
    meta: EventMeta,
    rental_id: Uuid,
    delivered_at: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let mut rental = locked(tx, rental_id, "delivery completed").await?;
    timeline::record(tx, meta.id, &TimelineStep::once(rental_id, TimelineKind::Delivered, delivered_at)).await?;
    if let Step::MovesTo(active) = rental.status.activate() {
        rental.status = active;
        start_term(tx, calendar, &mut rental, delivered_at).await?;
    }
    Ok(())
}

/// `delivery.cancel_refused`: the cancellation came after delivery, so the rental runs
/// after all (its term started at the delivery), and its CANCELLED step leaves the
/// timeline.
pub async fn reinstate(
    tx: &mut Tx<'_>,
    calendar: &Calendar,
    rental_id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let mut rental = locked(tx, rental_id, "cancellation refused").await?;
    let step = rental.status.reinstate().map_err(|refused| HandlerError::Poison(refused.to_string()))?;
    if let Step::MovesTo(active) = step {
        rental.status = active;
        // The term started when the unit arrived; delivery reported that first.
        let delivered_at = timeline::of_rental(tx, rental_id)
            .await?
            .into_iter()
            .find(|step| step.kind == TimelineKind::Delivered)
            .map_or(at, |step| step.at);
        start_term(tx, calendar, &mut rental, delivered_at).await?;
        timeline::forget(tx, rental_id, TimelineKind::Cancelled).await?;
        tracing::info!(%rental_id, "cancellation arrived after delivery: rental reinstated");
    }
    Ok(())
}

/// Starts the term of a rental that just became ACTIVE, at `starts_at`: its schedule,
/// and `rental.activated` for payment and delivery.
async fn start_term(
    tx: &mut Tx<'_>,
    calendar: &Calendar,
    rental: &mut RentalRow,
    starts_at: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let term = Term { starts_at, months: rental.months };
    let care_interval_months = care_interval(tx, rental.product_id).await?;
    rental.term_starts_at = Some(starts_at);
    rental.term_ends_at = Some(term.ends_at(calendar));
    rental.next_period = 2;
    rental.next_period_at = term.start_of(calendar, 2);
    rental.updated_at = db::now();
    rentals::save(tx, rental).await?;
    let activated = RentalActivated {
        rental_id: rental.id,
        customer_id: rental.customer_id,
        product_id: rental.product_id,
        months: rental.months,
        monthly_fee: rental.monthly_fee,
        delivery_address: rental.delivery_address.clone(),
        starts_at,
        ends_at: term.ends_at(calendar),
        first_period_ends_at: term.period_start(calendar, 2).min(term.ends_at(calendar)),
        care_interval_months,
        at: starts_at,
    };
    outbox::enqueue(tx, &activated).await?;
    Ok(())
}

/// Months between the care visits of a product, as rental's copy of the catalog says
/// (a product it never heard of gets the usual interval).
pub(crate) async fn care_interval(tx: &mut Tx<'_>, product_id: Uuid) -> diesel::QueryResult<i32> {
    Ok(catalog::entry(tx, product_id).await?.map_or(DEFAULT_CARE_INTERVAL_MONTHS, |entry| entry.care_interval_months))
}

/// The rental an event is about, locked; an event about a rental rental does not know
/// contradicts its records.
pub(crate) async fn locked(tx: &mut Tx<'_>, rental_id: Uuid, what: &str) -> Result<RentalRow, HandlerError> {
    rentals::lock(tx, rental_id)
        .await?
        .ok_or_else(|| HandlerError::Poison(format!("{what} for unknown rental {rental_id}")))
}
