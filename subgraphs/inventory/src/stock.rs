//! Stock follows shipping: a started delivery takes one unit, exactly once. Stock never
//! goes negative: a shipment that finds none is recorded as a shortage (and the
//! delivery shows it is waiting), and the next restock serves the oldest shortages
//! first.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use subgraph_kit::events::{Envelope, EventHandler, HandlerError, outbox};
use uuid::Uuid;

use crate::storage::products;

pub const DELIVERY_STARTED: &str = "delivery.started";
pub const DELIVERY_CANCELLED: &str = "delivery.cancelled";
pub const STOCK_SHORTAGE: &str = "stock.shortage";
pub const STOCK_ALLOCATED: &str = "stock.allocated";

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
    shipments (delivery_id) {
        delivery_id -> Uuid,
        product_id -> Uuid,
        state -> Text,
        updated_at -> Timestamptz,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryStarted {
    delivery_id: Uuid,
    rental_id: Uuid,
    product_id: Uuid,
}

/// `stock.shortage` and `stock.allocated` v1.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StockNews {
    pub delivery_id: Uuid,
    pub rental_id: Uuid,
    pub product_id: Uuid,
}

async fn shipment_state(connection: &mut AsyncPgConnection, delivery_id: Uuid) -> QueryResult<Option<String>> {
    shipments::table.find(delivery_id).select(shipments::state).for_update().first(connection).await.optional()
}

async fn set_shipment(
    connection: &mut AsyncPgConnection,
    delivery_id: Uuid,
    product_id: Uuid,
    state: &str,
) -> QueryResult<()> {
    diesel::insert_into(shipments::table)
        .values((
            shipments::delivery_id.eq(delivery_id),
            shipments::product_id.eq(product_id),
            shipments::state.eq(state),
        ))
        .on_conflict(shipments::delivery_id)
        .do_update()
        .set((shipments::state.eq(state), shipments::updated_at.eq(Utc::now())))
        .execute(connection)
        .await?;
    Ok(())
}

/// Takes one unit for a started delivery, or records the shortage.
async fn take_unit(connection: &mut AsyncPgConnection, started: DeliveryStarted) -> Result<(), HandlerError> {
    if shipment_state(connection, started.delivery_id).await?.is_some() {
        // Cancelled before its start arrived, or already handled: nothing to take.
        return Ok(());
    }
    let taken = diesel::update(products::table.find(started.product_id).filter(products::stock.gt(0)))
        .set((products::stock.eq(products::stock - 1), products::updated_at.eq(Utc::now())))
        .execute(connection)
        .await?;
    if taken == 1 {
        set_shipment(connection, started.delivery_id, started.product_id, "TAKEN").await?;
        return Ok(());
    }
    let exists: bool =
        diesel::select(diesel::dsl::exists(products::table.find(started.product_id))).get_result(connection).await?;
    if !exists {
        return Err(HandlerError::Poison(format!(
            "delivery {} ships unknown product {}",
            started.delivery_id, started.product_id
        )));
    }
    diesel::insert_into(stock_shortages::table)
        .values((
            stock_shortages::delivery_id.eq(started.delivery_id),
            stock_shortages::product_id.eq(started.product_id),
            stock_shortages::rental_id.eq(started.rental_id),
        ))
        .on_conflict_do_nothing()
        .execute(connection)
        .await?;
    set_shipment(connection, started.delivery_id, started.product_id, "SHORT").await?;
    let news =
        StockNews { delivery_id: started.delivery_id, rental_id: started.rental_id, product_id: started.product_id };
    outbox::enqueue(connection, crate::SERVICE, STOCK_SHORTAGE, 1, &news).await?;
    tracing::warn!(product = %started.product_id, delivery = %started.delivery_id, "shipment started without stock: held until a restock");
    Ok(())
}

/// After a restock, inside its transaction: serves waiting shipments, oldest first,
/// while units last.
pub async fn serve_shortages(connection: &mut AsyncPgConnection, product_id: Uuid) -> QueryResult<usize> {
    let waiting: Vec<(Uuid, Uuid)> = stock_shortages::table
        .filter(stock_shortages::product_id.eq(product_id))
        .filter(stock_shortages::allocated_at.is_null())
        .order(stock_shortages::created_at)
        .select((stock_shortages::delivery_id, stock_shortages::rental_id))
        .for_update()
        .load(connection)
        .await?;
    let mut served = 0;
    for (delivery_id, rental_id) in waiting {
        let taken = diesel::update(products::table.find(product_id).filter(products::stock.gt(0)))
            .set(products::stock.eq(products::stock - 1))
            .execute(connection)
            .await?;
        if taken == 0 {
            break;
        }
        diesel::update(stock_shortages::table.find(delivery_id))
            .set(stock_shortages::allocated_at.eq(Utc::now()))
            .execute(connection)
            .await?;
        set_shipment(connection, delivery_id, product_id, "TAKEN").await?;
        outbox::enqueue(
            connection,
            crate::SERVICE,
            STOCK_ALLOCATED,
            1,
            &StockNews { delivery_id, rental_id, product_id },
        )
        .await?;
        served += 1;
    }
    Ok(served)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryCancelled {
    delivery_id: Uuid,
    product_id: Uuid,
}

/// A cancelled delivery gives back what it took: its unit, or its place in the
/// shortage queue. One that never started here is marked, so a late start takes nothing.
async fn give_back(connection: &mut AsyncPgConnection, cancelled: DeliveryCancelled) -> Result<(), HandlerError> {
    match shipment_state(connection, cancelled.delivery_id).await?.as_deref() {
        Some("TAKEN") => {
            diesel::update(products::table.find(cancelled.product_id))
                .set((products::stock.eq(products::stock + 1), products::updated_at.eq(Utc::now())))
                .execute(connection)
                .await?;
            set_shipment(connection, cancelled.delivery_id, cancelled.product_id, "RETURNED").await?;
            // The unit may serve a shipment that is waiting for one.
            serve_shortages(connection, cancelled.product_id).await?;
        }
        Some("SHORT") => {
            diesel::delete(stock_shortages::table.find(cancelled.delivery_id)).execute(connection).await?;
            set_shipment(connection, cancelled.delivery_id, cancelled.product_id, "RETURNED").await?;
        }
        Some(_) => {}
        None => set_shipment(connection, cancelled.delivery_id, cancelled.product_id, "CANCELLED").await?,
    }
    Ok(())
}

pub struct InventoryEvents;

impl EventHandler for InventoryEvents {
    fn handle<'a>(
        &'a self,
        connection: &'a mut AsyncPgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            match event.event_type.as_str() {
                DELIVERY_STARTED => take_unit(connection, event.data_as()?).await,
                DELIVERY_CANCELLED => give_back(connection, event.data_as()?).await,
                other => Err(HandlerError::Poison(format!("inventory does not handle {other}"))),
            }
        })
    }
}
