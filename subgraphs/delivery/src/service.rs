//! Delivery's use cases, one transaction each: operators working the delivery queue
//! (start, complete) and what other services' events ask of it (request, cancel, stock
//! news). Each change and its event commit together.
//!
//! - [`visits`]: the field service after the installation (care visits, the pickup);
//! - [`live`]: the live delivery status on every replica.
//!
//! Every operator step is idempotent: repeating the step a delivery is already in
//! returns it as it is; only a move the state machine forbids is CONFLICT.

pub mod live;
pub mod visits;

use chrono::{DateTime, Utc};
use contracts::{
    DeliveryCancelRefused, DeliveryCancelled, DeliveryChange, DeliveryCompleted, DeliveryRequested, DeliveryStarted,
    RentalAccepted, RentalCancelled, StockNews,
};
use event_bus::{HandlerError, outbox};
use subgraph_kit::db;
use subgraph_kit::{ApiError, Database, Tx};
use uuid::Uuid;

use crate::domain::{DeliveryMoves, DeliveryStatus, Step, Unit};
use crate::storage::deliveries::{self, DeliveryRow};

fn change(row: &DeliveryRow, at: DateTime<Utc>) -> DeliveryChange {
    DeliveryChange {
        delivery_id: row.id,
        rental_id: row.rental_id,
        customer_id: row.customer_id,
        product_id: row.product_id,
        status: row.status,
        at,
    }
}

async fn locked(tx: &mut Tx<'_>, id: Uuid) -> Result<DeliveryRow, ApiError> {
    deliveries::lock(tx, id).await?.ok_or_else(|| ApiError::not_found(format!("there is no delivery with id {id}")))
}

/// REQUESTED → SHIPPING; inventory takes the unit when it hears of it.
pub async fn start(database: &Database, id: Uuid) -> Result<DeliveryRow, ApiError> {
    database
        .transaction(async |tx: &mut Tx<'_>| {
            let mut row = locked(tx, id).await?;
            let Step::MovesTo(shipping) = row.status.start()? else { return Ok(row) };
            let now = db::now();
            row.status = shipping;
            row.shipped_at = Some(now);
            row.unit = Unit::Pending;
            deliveries::save(tx, &row).await?;
            outbox::enqueue(tx, &DeliveryStarted(change(&row, now))).await?;
            Ok(row)
        })
        .await
}

/// SHIPPING → DELIVERED, once inventory took its unit; rental then activates the
/// rental.
pub async fn complete(database: &Database, id: Uuid) -> Result<DeliveryRow, ApiError> {
    database
        .transaction(async |tx: &mut Tx<'_>| {
            let mut row = locked(tx, id).await?;
            let Step::MovesTo(delivered) = row.status.complete(row.unit)? else { return Ok(row) };
            let now = db::now();
            row.status = delivered;
            row.delivered_at = Some(now);
            deliveries::save(tx, &row).await?;
            outbox::enqueue(tx, &DeliveryCompleted(change(&row, now))).await?;
            Ok(row)
        })
        .await
}

/// `rental.accepted`: a delivery for the new rental, unless it has one (or a
/// cancellation got here first and left a cancelled one).
pub async fn request(tx: &mut Tx<'_>, rental: &RentalAccepted) -> Result<(), HandlerError> {
    let row = DeliveryRow::new(
        rental.rental_id,
        rental.customer_id,
        rental.product_id,
        rental.delivery_address.clone(),
        DeliveryStatus::Requested,
        db::now(),
    );
    if deliveries::insert_once(tx, &row).await? {
        outbox::enqueue(tx, &DeliveryRequested(change(&row, row.requested_at))).await?;
    }
    Ok(())
}

/// `rental.cancelled`: delivery decides. A delivery not yet delivered is cancelled
/// (payment refunds, inventory takes its unit back); one already delivered stands, and
/// rental is told so. A cancellation that arrives before the request leaves a
/// cancelled delivery behind, so the late request creates nothing.
pub async fn cancel_for_rental(tx: &mut Tx<'_>, rental: &RentalCancelled) -> Result<(), HandlerError> {
    let now = db::now();
    let Some(mut row) = deliveries::lock_by_rental(tx, rental.rental_id).await? else {
        let row = DeliveryRow::new(
            rental.rental_id,
            rental.customer_id,
            rental.product_id,
            rental.delivery_address.clone(),
            DeliveryStatus::Cancelled,
            now,
        );
        deliveries::insert(tx, &row).await?;
        outbox::enqueue(tx, &DeliveryCancelled(change(&row, now))).await?;
        return Ok(());
    };
    let status = row.status;
    match status.cancel() {
        Ok(Step::MovesTo(cancelled)) => {
            row.status = cancelled;
            row.cancelled_at = Some(now);
            deliveries::save(tx, &row).await?;
            outbox::enqueue(tx, &DeliveryCancelled(change(&row, now))).await?;
        }
        Ok(Step::AlreadyThere) => {}
        // Delivered: the delivery stands.
        Err(_) => {
            outbox::enqueue(tx, &DeliveryCancelRefused(change(&row, now))).await?;
        }
    }
    Ok(())
}

/// `stock.shortage` / `stock.allocated`: inventory's news about a started delivery's
/// unit. Only a shipping delivery changes; the unit only moves forward.
pub async fn unit_news(tx: &mut Tx<'_>, news: &StockNews, apply: fn(Unit) -> Unit) -> Result<(), HandlerError> {
    let Some(mut row) = deliveries::lock(tx, news.delivery_id).await? else {
        return Err(HandlerError::Poison(format!("there is no delivery {} to hear stock news of", news.delivery_id)));
    };
    let status = row.status;
    let unit = row.unit;
    if status != DeliveryStatus::Shipping {
        // Cancelled meanwhile (inventory gives the unit back) or already delivered.
        return Ok(());
    }
    let next = apply(unit);
    if next != unit {
        row.unit = next;
        deliveries::save(tx, &row).await?;
    }
    Ok(())
}
