//! What delivery does with other services' events.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;
use serde::Deserialize;
use subgraph_kit::events::{Envelope, EventHandler, HandlerError};
use uuid::Uuid;

use crate::shipping;
use crate::storage::deliveries;

pub const RENTAL_ACCEPTED: &str = "rental.accepted";
pub const RENTAL_CANCELLED: &str = "rental.cancelled";
pub const STOCK_SHORTAGE: &str = "stock.shortage";
pub const STOCK_ALLOCATED: &str = "stock.allocated";

/// What delivery reads from `rental.accepted` and `rental.cancelled`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RentalAccepted {
    rental_id: Uuid,
    customer_id: Uuid,
    product_id: Uuid,
    delivery_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StockNews {
    delivery_id: Uuid,
}

pub struct DeliveryEvents;

impl EventHandler for DeliveryEvents {
    fn handle<'a>(
        &'a self,
        connection: &'a mut AsyncPgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            match event.event_type.as_str() {
                RENTAL_ACCEPTED => {
                    let rental: RentalAccepted = event.data_as()?;
                    shipping::request(
                        connection,
                        rental.rental_id,
                        rental.customer_id,
                        rental.product_id,
                        rental.delivery_address,
                    )
                    .await?;
                    Ok(())
                }
                RENTAL_CANCELLED => {
                    let rental: RentalAccepted = event.data_as()?;
                    shipping::cancel_for_rental(
                        connection,
                        rental.rental_id,
                        rental.customer_id,
                        rental.product_id,
                        rental.delivery_address,
                    )
                    .await?;
                    Ok(())
                }
                STOCK_SHORTAGE | STOCK_ALLOCATED => {
                    let news: StockNews = event.data_as()?;
                    let waiting = event.event_type == STOCK_SHORTAGE;
                    let updated = diesel::update(deliveries::table.find(news.delivery_id))
                        .set(deliveries::waiting_for_stock.eq(waiting))
                        .execute(connection)
                        .await?;
                    if updated == 0 {
                        return Err(HandlerError::Poison(format!(
                            "no delivery {} to hold or release",
                            news.delivery_id
                        )));
                    }
                    Ok(())
                }
                other => Err(HandlerError::Poison(format!("delivery does not handle {other}"))),
            }
        })
    }
}
