//! What rental does with other services' events.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use futures::future::BoxFuture;
use serde::Deserialize;
use subgraph_kit::events::{Envelope, EventHandler, HandlerError};
use uuid::Uuid;

use crate::storage::{self, CatalogEntry};

pub const PRODUCT_CREATED: &str = "product.created";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductAnnounced {
    product_id: Uuid,
    name: String,
    monthly_fee: i32,
}

pub struct RentalEvents;

impl EventHandler for RentalEvents {
    fn event_types(&self) -> &'static [&'static str] {
        &[PRODUCT_CREATED]
    }

    fn handle<'a>(
        &'a self,
        connection: &'a mut AsyncPgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            match event.event_type.as_str() {
                PRODUCT_CREATED => {
                    let product: ProductAnnounced = event.data_as()?;
                    let entry =
                        CatalogEntry { product_id: product.product_id, name: product.name, monthly_fee: product.monthly_fee };
                    let announced_at: DateTime<Utc> = event.occurred_at;
                    storage::upsert_catalog_entry(connection, &entry, announced_at).await?;
                    Ok(())
                }
                other => Err(HandlerError::Poison(format!("rental does not handle {other}"))),
            }
        })
    }
}
