//! What payment does with other services' events: a cancelled delivery means the rental
//! was called off before delivery, so its charge is refunded.

use diesel_async::AsyncPgConnection;
use futures::future::BoxFuture;
use serde::Deserialize;
use subgraph_kit::events::{Envelope, EventHandler, HandlerError};
use uuid::Uuid;

use crate::{charges, storage};

pub const DELIVERY_CANCELLED: &str = "delivery.cancelled";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryCancelled {
    rental_id: Uuid,
}

pub struct PaymentEvents;

impl EventHandler for PaymentEvents {
    fn handle<'a>(
        &'a self,
        connection: &'a mut AsyncPgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            match event.event_type.as_str() {
                DELIVERY_CANCELLED => {
                    let cancelled: DeliveryCancelled = event.data_as()?;
                    storage::lock_rental(connection, cancelled.rental_id).await?;
                    match storage::find_by_rental(connection, cancelled.rental_id).await? {
                        Some(payment) => {
                            charges::refund_in(connection, payment)
                                .await
                                .map_err(|error| HandlerError::Transient(error.message))?;
                        }
                        // A rental exists only after its charge, so this cannot happen;
                        // if it does, make sure no charge ever follows.
                        None => storage::mark_voided(connection, cancelled.rental_id).await?,
                    }
                    Ok(())
                }
                other => Err(HandlerError::Poison(format!("payment does not handle {other}"))),
            }
        })
    }
}
