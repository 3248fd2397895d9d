//! What shipments did to stock: one record per delivery (`shipments`), the queue of
//! shipments waiting for a unit (`stock_shortages`), and the ledger of every stock
//! change (`stock_movements`).

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subgraph_kit::domain::TextEnum;
use uuid::Uuid;

use crate::domain::{MovementReason, ShipmentState};

diesel::table! {
    shipments (delivery_id) {
        delivery_id -> Uuid,
        product_id -> Uuid,
        state -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    stock_shortages (delivery_id) {
        delivery_id -> Uuid,
        product_id -> Uuid,
        rental_id -> Uuid,
        created_at -> Timestamptz,
        allocated_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    stock_movements (id) {
        id -> Uuid,
        product_id -> Uuid,
        change -> Int4,
        reason -> Text,
        delivery_id -> Nullable<Uuid>,
        at -> Timestamptz,
    }
}

/// The delivery's shipment record, locked until the end of the transaction.
pub async fn lock(connection: &mut AsyncPgConnection, delivery_id: Uuid) -> QueryResult<Option<ShipmentState>> {
    let state: Option<String> =
        shipments::table.find(delivery_id).select(shipments::state).for_update().first(connection).await.optional()?;
    state
        .map(|text| {
            ShipmentState::parse(&text)
                .map_err(|unknown| diesel::result::Error::DeserializationError(unknown.to_string().into()))
        })
        .transpose()
}

pub async fn set(
    connection: &mut AsyncPgConnection,
    delivery_id: Uuid,
    product_id: Uuid,
    state: ShipmentState,
) -> QueryResult<()> {
    diesel::insert_into(shipments::table)
        .values((
            shipments::delivery_id.eq(delivery_id),
            shipments::product_id.eq(product_id),
            shipments::state.eq(state.as_str()),
        ))
        .on_conflict(shipments::delivery_id)
        .do_update()
        .set((shipments::state.eq(state.as_str()), shipments::updated_at.eq(Utc::now())))
        .execute(connection)
        .await?;
    Ok(())
}

/// Queues a shipment that found no unit.
pub async fn wait_for_unit(
    connection: &mut AsyncPgConnection,
    delivery_id: Uuid,
    product_id: Uuid,
    rental_id: Uuid,
) -> QueryResult<()> {
    diesel::insert_into(stock_shortages::table)
        .values((
            stock_shortages::delivery_id.eq(delivery_id),
            stock_shortages::product_id.eq(product_id),
            stock_shortages::rental_id.eq(rental_id),
        ))
        .on_conflict_do_nothing()
        .execute(connection)
        .await?;
    Ok(())
}

/// The shipments of `product_id` waiting for a unit, oldest first, locked:
/// (delivery, rental).
pub async fn waiting(connection: &mut AsyncPgConnection, product_id: Uuid) -> QueryResult<Vec<(Uuid, Uuid)>> {
    stock_shortages::table
        .filter(stock_shortages::product_id.eq(product_id))
        .filter(stock_shortages::allocated_at.is_null())
        .order(stock_shortages::created_at)
        .select((stock_shortages::delivery_id, stock_shortages::rental_id))
        .for_update()
        .load(connection)
        .await
}

pub async fn mark_served(connection: &mut AsyncPgConnection, delivery_id: Uuid) -> QueryResult<()> {
    diesel::update(stock_shortages::table.find(delivery_id))
        .set(stock_shortages::allocated_at.eq(Utc::now()))
        .execute(connection)
        .await?;
    Ok(())
}

pub async fn leave_queue(connection: &mut AsyncPgConnection, delivery_id: Uuid) -> QueryResult<()> {
    diesel::delete(stock_shortages::table.find(delivery_id)).execute(connection).await?;
    Ok(())
}

/// Writes one line of the stock ledger.
pub async fn record_movement(
    connection: &mut AsyncPgConnection,
    product_id: Uuid,
    change: i32,
    reason: MovementReason,
    delivery_id: Option<Uuid>,
    at: chrono::DateTime<Utc>,
) -> QueryResult<()> {
    diesel::insert_into(stock_movements::table)
        .values((
            stock_movements::id.eq(Uuid::now_v7()),
            stock_movements::product_id.eq(product_id),
            stock_movements::change.eq(change),
            stock_movements::reason.eq(reason.as_str()),
            stock_movements::delivery_id.eq(delivery_id),
            stock_movements::at.eq(at),
        ))
        .execute(connection)
        .await?;
    Ok(())
}
