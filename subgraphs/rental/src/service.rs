//! Rental's use cases, one transaction each. Every change of a rental refreshes the
//! customer's history row (the read model) in the same transaction, so a customer's own
//! change shows in `myRentals` at once, whatever the state of the other services.
//!
//! - [`renting`]: renting, paid or not at all, and the reconciler that calls off the
//!   charges of requests that never completed;
//! - [`payments`]: the client for the payment service;
//! - [`rebuild`]: recomputing the history from every service's records;
//! - here: cancelling, and what the other services' events change.

pub mod breaker;
pub mod payments;
pub mod rebuild;
pub mod renting;

use chrono::{DateTime, Utc};
use contracts::{ProductCreated, RentalCancelled};
use event_bus::{EventMeta, HandlerError, outbox};
use subgraph_kit::db;
use subgraph_kit::domain::TextEnum;
use subgraph_kit::{ApiError, Database, Identity, Tx};
use uuid::Uuid;

use crate::SERVICE;
use crate::domain::{Step, TimelineKind};
use crate::storage::catalog::{self, CatalogEntry};
use crate::storage::rentals::{self, RentalRow};
use crate::storage::{history, timeline};

/// Cancels a rental that is not yet delivered; cancelling a cancelled rental returns it
/// as it is. The rental reads CANCELLED at once, in its history too; delivery then
/// cancels the delivery (and payment refunds, inventory restocks), or, if the delivery
/// had completed first, refuses and the rental is reinstated.
pub async fn cancel(database: &Database, caller: &Identity, rental_id: Uuid) -> Result<RentalRow, ApiError> {
    database
        .transaction(async |tx: &mut Tx<'_>| {
            let mut rental = rentals::lock(tx, rental_id)
                .await?
                .filter(|rental| caller.may_see_customer(rental.customer_id))
                .ok_or_else(|| ApiError::not_found(format!("there is no rental with id {rental_id}")))?;
            let step = rental.status()?.cancel().map_err(|refused| {
                ApiError::conflict(format!("{refused}: only a rental that is not yet delivered can be cancelled"))
            })?;
            let Step::MovesTo(cancelled) = step else { return Ok(rental) };
            let now = db::now();
            rental.status = cancelled.as_str().to_owned();
            rental.updated_at = now;
            let event = RentalCancelled {
                rental_id,
                customer_id: rental.customer_id,
                product_id: rental.product_id,
                delivery_address: rental.delivery_address.clone(),
                payment_id: rental.payment_id,
                at: now,
            };
            let event_id = outbox::enqueue(tx, SERVICE, &event).await?;
            rentals::set_status(tx, rental_id, cancelled, now).await?;
            timeline::record(tx, event_id, rental_id, TimelineKind::Cancelled, now).await?;
            history::project(tx, rental_id).await?;
            Ok(rental)
        })
        .await
}

/// `product.created`: rental's price list follows the catalog.
pub async fn learn_product(tx: &mut Tx<'_>, product: &ProductCreated) -> Result<(), HandlerError> {
    let entry =
        CatalogEntry { product_id: product.product_id, name: product.name.clone(), monthly_fee: product.monthly_fee };
    catalog::upsert(tx, &entry, product.at).await?;
    Ok(())
}

/// A step another service reports (paid, requested, shipped, refunded) lands in the
/// rental's timeline, at the time it happened there, and the history row follows.
pub async fn record_step(
    tx: &mut Tx<'_>,
    meta: EventMeta,
    rental_id: Uuid,
    kind: TimelineKind,
    at: DateTime<Utc>,
) -> Result<(), HandlerError> {
    timeline::record(tx, meta.id, rental_id, kind, at).await?;
    history::project(tx, rental_id).await?;
    Ok(())
}

/// `delivery.completed`: the dispenser arrived, the rental starts running. A rental
/// cancelled meanwhile waits for delivery's verdict on the cancellation
/// (`delivery.cancel_refused`).
pub async fn activate(
    tx: &mut Tx<'_>,
    meta: EventMeta,
    rental_id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let rental = locked(tx, rental_id, "delivery completed").await?;
    if let Step::MovesTo(active) = rental.status()?.activate() {
        rentals::set_status(tx, rental_id, active, db::now()).await?;
    }
    record_step(tx, meta, rental_id, TimelineKind::Delivered, at).await
}

/// `delivery.cancel_refused`: the cancellation came after delivery, so the rental runs
/// after all, and its CANCELLED step leaves the timeline.
pub async fn reinstate(tx: &mut Tx<'_>, rental_id: Uuid) -> Result<(), HandlerError> {
    let rental = locked(tx, rental_id, "cancellation refused").await?;
    let step = rental.status()?.reinstate().map_err(|refused| HandlerError::Poison(refused.to_string()))?;
    if let Step::MovesTo(active) = step {
        rentals::set_status(tx, rental_id, active, db::now()).await?;
        timeline::forget(tx, rental_id, TimelineKind::Cancelled).await?;
        history::project(tx, rental_id).await?;
        tracing::info!(%rental_id, "cancellation arrived after delivery: rental reinstated");
    }
    Ok(())
}

async fn locked(tx: &mut Tx<'_>, rental_id: Uuid, what: &str) -> Result<RentalRow, HandlerError> {
    rentals::lock(tx, rental_id)
        .await?
        .ok_or_else(|| HandlerError::Poison(format!("{what} for unknown rental {rental_id}")))
}
