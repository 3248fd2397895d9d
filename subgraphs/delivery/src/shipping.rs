//! Operators working the queue: starting and completing deliveries. Each change and
//! its event commit together.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::{Deserialize, Serialize};
use subgraph_kit::events::outbox;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::{DeliveryStatus, IllegalTransition};
use crate::storage::{self, DeliveryRow};

pub const DELIVERY_REQUESTED: &str = "delivery.requested";
pub const DELIVERY_STARTED: &str = "delivery.started";
pub const DELIVERY_COMPLETED: &str = "delivery.completed";
pub const DELIVERY_CANCELLED: &str = "delivery.cancelled";
/// The rental was cancelled after its delivery had completed: the delivery stands.
pub const DELIVERY_CANCEL_REFUSED: &str = "delivery.cancel_refused";

/// The payload of every delivery event: enough for inventory (product), rental
/// (rental) and any read model (times).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryChanged {
    pub delivery_id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub status: String,
    pub at: DateTime<Utc>,
}

impl DeliveryChanged {
    pub fn of(row: &DeliveryRow, at: DateTime<Utc>) -> Self {
        Self {
            delivery_id: row.id,
            rental_id: row.rental_id,
            customer_id: row.customer_id,
            product_id: row.product_id,
            status: row.status.clone(),
            at,
        }
    }
}

/// REQUESTED → SHIPPING. Inventory takes the unit when it hears of it.
pub async fn start(database: &Database, id: Uuid) -> Result<DeliveryRow, ApiError> {
    change(database, id, |row, now| {
        row.status = row.status()?.start().map_err(refused)?.as_str().to_owned();
        row.shipped_at = Some(now);
        Ok(DELIVERY_STARTED)
    })
    .await
}

/// SHIPPING → DELIVERED; the rental becomes ACTIVE when rental hears of it.
pub async fn complete(database: &Database, id: Uuid) -> Result<DeliveryRow, ApiError> {
    change(database, id, |row, now| {
        if row.waiting_for_stock {
            return Err(ApiError::conflict(
                "this delivery is waiting for stock: its product had no unit when it started; restock the product first",
            ));
        }
        row.status = row.status()?.complete().map_err(refused)?.as_str().to_owned();
        row.delivered_at = Some(now);
        Ok(DELIVERY_COMPLETED)
    })
    .await
}

fn refused(error: IllegalTransition) -> ApiError {
    ApiError::conflict(error.to_string())
}

async fn change(
    database: &Database,
    id: Uuid,
    apply: impl FnOnce(&mut DeliveryRow, DateTime<Utc>) -> Result<&'static str, ApiError> + Send,
) -> Result<DeliveryRow, ApiError> {
    let mut connection = database.connection().await?;
    connection
        .transaction(async |connection| {
            let mut row = storage::lock(connection, id)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("there is no delivery with id {id}")))?;
            let now = Utc::now();
            let event_type = apply(&mut row, now)?;
            storage::save(connection, &row).await?;
            outbox::enqueue(connection, crate::SERVICE, event_type, 1, &DeliveryChanged::of(&row, now)).await?;
            Ok(row)
        })
        .await
}

/// A delivery for a newly accepted rental (from `rental.accepted`); nothing if the
/// rental already has one.
pub async fn request(
    connection: &mut AsyncPgConnection,
    rental_id: Uuid,
    customer_id: Uuid,
    product_id: Uuid,
    address: String,
) -> diesel::QueryResult<()> {
    let now = Utc::now();
    let row = DeliveryRow {
        id: Uuid::now_v7(),
        rental_id,
        customer_id,
        product_id,
        address,
        status: DeliveryStatus::Requested.as_str().to_owned(),
        requested_at: now,
        shipped_at: None,
        delivered_at: None,
        cancelled_at: None,
        updated_at: now,
        waiting_for_stock: false,
    };
    if storage::insert_once(connection, &row).await? {
        outbox::enqueue(connection, crate::SERVICE, DELIVERY_REQUESTED, 1, &DeliveryChanged::of(&row, now)).await?;
    }
    Ok(())
}

/// The rental was cancelled (from `rental.cancelled`). Delivery decides: a delivery
/// not yet delivered is cancelled (payment refunds, inventory takes its unit back); one
/// already delivered stands, and rental is told so. A cancellation that arrives before
/// the delivery was even requested leaves a cancelled delivery behind, so the late
/// request creates nothing.
pub async fn cancel_for_rental(
    connection: &mut AsyncPgConnection,
    rental_id: Uuid,
    customer_id: Uuid,
    product_id: Uuid,
    address: String,
) -> diesel::QueryResult<()> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;

    use crate::storage::deliveries;

    let now = Utc::now();
    let existing: Option<DeliveryRow> = deliveries::table
        .filter(deliveries::rental_id.eq(rental_id))
        .select(DeliveryRow::as_select())
        .for_update()
        .first(connection)
        .await
        .optional()?;
    let mut row = match existing {
        Some(row) => row,
        None => {
            let row = DeliveryRow {
                id: Uuid::now_v7(),
                rental_id,
                customer_id,
                product_id,
                address,
                status: DeliveryStatus::Cancelled.as_str().to_owned(),
                requested_at: now,
                shipped_at: None,
                delivered_at: None,
                cancelled_at: Some(now),
                updated_at: now,
                waiting_for_stock: false,
            };
            storage::insert_once(connection, &row).await?;
            outbox::enqueue(connection, crate::SERVICE, DELIVERY_CANCELLED, 1, &DeliveryChanged::of(&row, now)).await?;
            return Ok(());
        }
    };
    let status = row.status().map_err(|error| diesel::result::Error::DeserializationError(error.message.into()))?;
    match status.cancel() {
        Ok(cancelled) => {
            row.status = cancelled.as_str().to_owned();
            row.cancelled_at = Some(now);
            row.waiting_for_stock = false;
            storage::save(connection, &row).await?;
            outbox::enqueue(connection, crate::SERVICE, DELIVERY_CANCELLED, 1, &DeliveryChanged::of(&row, now)).await?;
        }
        // Already cancelled: nothing more to do.
        Err(_) if status == DeliveryStatus::Cancelled => {}
        Err(_) => {
            outbox::enqueue(connection, crate::SERVICE, DELIVERY_CANCEL_REFUSED, 1, &DeliveryChanged::of(&row, now))
                .await?;
        }
    }
    Ok(())
}
