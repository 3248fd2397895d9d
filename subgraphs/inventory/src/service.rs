//! Inventory's use cases, one transaction each. Requests open their own
//! (`Database::transaction`); event use cases run inside the consumer's, which also
//! records the message as processed.
//!
//! Stock follows shipping: a started delivery takes one unit, exactly once, and tells
//! delivery so (`stock.allocated`); stock never goes negative: a shipment that finds
//! none waits in a queue (`stock.shortage`), and the next unit that arrives (a restock,
//! or one returned by a cancellation) serves the oldest waiting shipment first. Every
//! change of stock is a line in the ledger.

use contracts::{
    DeliveryCancelled, DeliveryStarted, ProductCreated, StockAllocated, StockNews, StockShortage, UnitReturned,
    VisitChange,
};
use diesel::QueryResult;
use event_bus::HandlerError;
use event_bus::outbox;
use subgraph_kit::db;
use subgraph_kit::{ApiError, Database, Tx};
use uuid::Uuid;

use crate::domain::{
    CareInterval, MovementReason, NewProduct, OnCancel, OnPickup, OnStart, RestockQuantity, ShipmentState, on_cancel,
    on_pickup, on_start,
};
use crate::storage::products::{self, ProductRow};
use crate::storage::shipments;

/// Adds a product to the catalog and announces it (`product.created`).
pub async fn create_product(database: &Database, product: NewProduct) -> Result<ProductRow, ApiError> {
    let row = ProductRow::new(Uuid::now_v7(), &product, db::now());
    database
        .transaction(async |tx: &mut Tx<'_>| {
            let row = products::insert(tx, &row).await?;
            shipments::record_movement(tx, row.id, row.stock, MovementReason::Created, None, db::now()).await?;
            announce(tx, &row).await?;
            Ok(row)
        })
        .await
}

/// Adds units and serves the shipments waiting for this product; `None` when the
/// product does not exist.
pub async fn restock(database: &Database, id: Uuid, quantity: RestockQuantity) -> Result<Option<ProductRow>, ApiError> {
    database
        .transaction(async |tx: &mut Tx<'_>| {
            if !products::add_units(tx, id, quantity.units()).await? {
                return Ok(None);
            }
            shipments::record_movement(tx, id, quantity.units(), MovementReason::Restocked, None, db::now()).await?;
            serve_waiting(tx, id).await?;
            Ok(products::find(tx, id).await?)
        })
        .await
}

/// `delivery.started`: takes one unit for the delivery, or queues it until a unit
/// arrives. Either way delivery hears of it.
pub async fn take_unit(tx: &mut Tx<'_>, started: &DeliveryStarted) -> Result<(), HandlerError> {
    if on_start(shipments::lock(tx, started.delivery_id).await?) == OnStart::Nothing {
        return Ok(());
    }
    let news = StockNews {
        delivery_id: started.delivery_id,
        rental_id: started.rental_id,
        product_id: started.product_id,
        at: db::now(),
    };
    if products::take_unit(tx, started.product_id).await? {
        shipments::set(tx, started.delivery_id, started.product_id, ShipmentState::Taken).await?;
        shipments::record_movement(
            tx,
            started.product_id,
            -1,
            MovementReason::Taken,
            Some(started.delivery_id),
            db::now(),
        )
        .await?;
        outbox::enqueue(tx, &StockAllocated(news)).await?;
        return Ok(());
    }
    if !products::exists(tx, started.product_id).await? {
        return Err(HandlerError::Poison(format!(
            "delivery {} ships unknown product {}",
            started.delivery_id, started.product_id
        )));
    }
    shipments::wait_for_unit(tx, started.delivery_id, started.product_id, started.rental_id).await?;
    shipments::set(tx, started.delivery_id, started.product_id, ShipmentState::Short).await?;
    outbox::enqueue(tx, &StockShortage(news)).await?;
    tracing::warn!(product = %started.product_id, delivery = %started.delivery_id, "shipment started without stock: held until a restock");
    Ok(())
}

/// `delivery.cancelled`: a cancelled delivery gives back what it took (its unit, or
/// its place in the queue). One whose start has not arrived is marked, so a late start
/// takes nothing.
pub async fn give_back(tx: &mut Tx<'_>, cancelled: &DeliveryCancelled) -> Result<(), HandlerError> {
    let (delivery_id, product_id) = (cancelled.delivery_id, cancelled.product_id);
    match on_cancel(shipments::lock(tx, delivery_id).await?) {
        OnCancel::ReturnUnit => {
            products::add_units(tx, product_id, 1).await?;
            shipments::record_movement(tx, product_id, 1, MovementReason::Returned, Some(delivery_id), db::now())
                .await?;
            shipments::set(tx, delivery_id, product_id, ShipmentState::Returned).await?;
            // The unit may serve a shipment that is waiting for one.
            serve_waiting(tx, product_id).await?;
        }
        OnCancel::LeaveQueue => {
            shipments::leave_queue(tx, delivery_id).await?;
            shipments::set(tx, delivery_id, product_id, ShipmentState::Returned).await?;
        }
        OnCancel::MarkCancelled => shipments::set(tx, delivery_id, product_id, ShipmentState::Cancelled).await?,
        OnCancel::Nothing => {}
    }
    Ok(())
}

/// Sets how often a product's units get a filter-care visit, and announces the product
/// again so the other services follow; `None` when the product does not exist. Rentals
/// that already started keep the plan they started with.
pub async fn set_care_interval(
    database: &Database,
    id: Uuid,
    interval: CareInterval,
) -> Result<Option<ProductRow>, ApiError> {
    database
        .transaction(async |tx: &mut Tx<'_>| {
            let Some(row) = products::set_care_interval(tx, id, interval.months()).await? else { return Ok(None) };
            announce(tx, &row).await?;
            Ok(Some(row))
        })
        .await
}

/// `visit.done` of a pickup: the unit that left with the delivery is back on the shelf,
/// once (a replayed event changes nothing), and may serve a shipment waiting for one.
pub async fn collect_unit(tx: &mut Tx<'_>, visit: &VisitChange) -> Result<(), HandlerError> {
    let Some(delivery_id) = visit.delivery_id else {
        return Err(HandlerError::Poison(format!("pickup {} names no delivery", visit.visit_id)));
    };
    let product_id = visit.product_id;
    match on_pickup(shipments::lock(tx, delivery_id).await?).map_err(HandlerError::Poison)? {
        OnPickup::Nothing => Ok(()),
        OnPickup::Collect => {
            // The ledger line and the event carry the same time: a rebuild of the
            // history reads the one, the live history the other.
            let now = db::now();
            products::add_units(tx, product_id, 1).await?;
            shipments::record_movement(tx, product_id, 1, MovementReason::Collected, Some(delivery_id), now).await?;
            shipments::set(tx, delivery_id, product_id, ShipmentState::Collected).await?;
            let news = StockNews { delivery_id, rental_id: visit.rental_id, product_id, at: now };
            outbox::enqueue(tx, &UnitReturned(news)).await?;
            serve_waiting(tx, product_id).await?;
            Ok(())
        }
    }
}

/// Serves waiting shipments of `product_id`, oldest first, while units last.
async fn serve_waiting(tx: &mut Tx<'_>, product_id: Uuid) -> QueryResult<usize> {
    let mut served = 0;
    for (delivery_id, rental_id) in shipments::waiting(tx, product_id).await? {
        if !products::take_unit(tx, product_id).await? {
            break;
        }
        shipments::mark_served(tx, delivery_id).await?;
        shipments::set(tx, delivery_id, product_id, ShipmentState::Taken).await?;
        shipments::record_movement(tx, product_id, -1, MovementReason::Taken, Some(delivery_id), db::now()).await?;
        let news = StockNews { delivery_id, rental_id, product_id, at: db::now() };
        outbox::enqueue(tx, &StockAllocated(news)).await?;
        served += 1;
    }
    Ok(served)
}

async fn announce(tx: &mut Tx<'_>, row: &ProductRow) -> QueryResult<()> {
    let event = ProductCreated {
        product_id: row.id,
        name: row.name.clone(),
        monthly_fee: row.monthly_fee,
        care_interval_months: row.care_interval_months,
        at: db::now(),
    };
    outbox::enqueue(tx, &event).await?;
    Ok(())
}

/// Inserts the demo products that are missing (fixed ids; existing rows, and stock
/// that changed since, are left alone) and announces every one of them, so a service
/// whose copy of the catalog missed them (a fresh database) catches up. Announcing
/// twice is harmless: the copies keep the newest announcement. Returns how many were
/// added.
pub async fn seed_demo_catalog(database: &Database) -> Result<usize, ApiError> {
    let now = db::now();
    database
        .transaction(async |tx: &mut Tx<'_>| {
            let mut added = 0;
            for &(id, name, description, monthly_fee, stock) in &DEMO_PRODUCTS {
                let product = NewProduct::parse(name, description, monthly_fee, stock, None)?;
                let row = ProductRow::new(Uuid::parse_str(id).expect("demo ids are valid UUIDs"), &product, now);
                if products::insert_if_missing(tx, &row).await? {
                    shipments::record_movement(tx, row.id, row.stock, MovementReason::Created, None, db::now()).await?;
                    added += 1;
                }
                let stored = products::find(tx, row.id).await?.expect("just inserted or already there");
                announce(tx, &stored).await?;
            }
            Ok(added)
        })
        .await
}

/// A few real-looking dispenser models: (id, name, description, monthly fee in won,
/// stock).
const DEMO_PRODUCTS: [(&str, &str, &str, i32, i32); 5] = [
    (
        "0192f1a4-0000-7000-8000-000000000001",
        "AquaPure Mini 2",
        "Countertop purifier, cold and room-temperature water, 1.8 L tank.",
        19_900,
        12,
    ),
    (
        "0192f1a4-0000-7000-8000-000000000002",
        "AquaPure Hot & Cold 5",
        "Hot, cold and purified water with a child lock, 5-stage filter.",
        29_900,
        8,
    ),
    (
        "0192f1a4-0000-7000-8000-000000000003",
        "IceFlow Pro",
        "Purifier with an ice maker: up to 1.2 kg of ice a day.",
        44_900,
        5,
    ),
    (
        "0192f1a4-0000-7000-8000-000000000004",
        "SlimLine Direct-Flow",
        "Tankless direct-flow purifier, 14 cm wide, fits any kitchen.",
        24_900,
        15,
    ),
    (
        "0192f1a4-0000-7000-8000-000000000005",
        "Office Tower 40",
        "Floor-standing dispenser for offices, 40 L of cold water an hour.",
        54_900,
        3,
    ),
];
