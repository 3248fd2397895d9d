//! What rental does with other services' events.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use futures::future::BoxFuture;
use serde::Deserialize;
use subgraph_kit::events::{Envelope, EventHandler, HandlerError};
use uuid::Uuid;

use crate::domain::{RentalStatus, TimelineKind};
use crate::storage::{self, CatalogEntry};

pub const PRODUCT_CREATED: &str = "product.created";
pub const DELIVERY_COMPLETED: &str = "delivery.completed";
pub const DELIVERY_CANCEL_REFUSED: &str = "delivery.cancel_refused";

/// The part every payment and delivery event has: the rental, and when the step
/// happened (`at` for delivery events, `chargedAt` / `refundedAt` for payment's).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AboutRental {
    rental_id: Uuid,
    at: Option<DateTime<Utc>>,
    charged_at: Option<DateTime<Utc>>,
    refunded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductAnnounced {
    product_id: Uuid,
    name: String,
    monthly_fee: i32,
}

pub struct RentalEvents;

impl EventHandler for RentalEvents {
    fn handle<'a>(
        &'a self,
        connection: &'a mut AsyncPgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            match event.event_type.as_str() {
                PRODUCT_CREATED => {
                    let product: ProductAnnounced = event.data_as()?;
                    let entry = CatalogEntry {
                        product_id: product.product_id,
                        name: product.name,
                        monthly_fee: product.monthly_fee,
                    };
                    let announced_at: DateTime<Utc> = event.occurred_at;
                    storage::upsert_catalog_entry(connection, &entry, announced_at).await?;
                    Ok(())
                }
                DELIVERY_COMPLETED => {
                    let delivered: AboutRental = event.data_as()?;
                    activate(connection, delivered.rental_id).await
                }
                DELIVERY_CANCEL_REFUSED => {
                    let refused: AboutRental = event.data_as()?;
                    reinstate(connection, refused.rental_id).await
                }
                // Only recorded in the timeline (below).
                "payment.charged" | "payment.refunded" | "delivery.requested" | "delivery.started" => Ok(()),
                other => Err(HandlerError::Poison(format!("rental does not handle {other}"))),
            }?;
            // Every event about a rental also lands in its timeline, at the time the
            // step happened in its own service, and the history row follows.
            if let Some(kind) = TimelineKind::of_event(&event.event_type) {
                let about: AboutRental = event.data_as()?;
                let at = about.at.or(about.charged_at).or(about.refunded_at).unwrap_or(event.occurred_at);
                storage::record_timeline(connection, event.id, about.rental_id, kind, at).await?;
                storage::project(connection, about.rental_id).await?;
            } else if let Ok(about) = event.data_as::<AboutRental>() {
                storage::project(connection, about.rental_id).await?;
            }
            Ok(())
        })
    }
}

/// The dispenser arrived: the rental starts running. A rental cancelled meanwhile
/// waits for delivery's verdict on the cancellation (`delivery.cancel_refused`).
async fn activate(connection: &mut AsyncPgConnection, rental_id: Uuid) -> Result<(), HandlerError> {
    let rental = storage::lock_rental(connection, rental_id)
        .await?
        .ok_or_else(|| HandlerError::Poison(format!("delivery completed for unknown rental {rental_id}")))?;
    let status = rental.status().map_err(|error| HandlerError::Poison(error.message))?;
    // Cancelled: delivery's verdict on the cancellation decides. Active: reinstated
    // already (the events crossed), nothing to do.
    if matches!(status, RentalStatus::Cancelled | RentalStatus::Active) {
        return Ok(());
    }
    let activated = status.activate().map_err(|refused| HandlerError::Poison(refused.to_string()))?;
    storage::set_status(connection, rental_id, activated, Utc::now()).await?;
    Ok(())
}

/// The cancellation came after delivery: the rental runs after all, and its
/// CANCELLED entry leaves the timeline.
async fn reinstate(connection: &mut AsyncPgConnection, rental_id: Uuid) -> Result<(), HandlerError> {
    let rental = storage::lock_rental(connection, rental_id)
        .await?
        .ok_or_else(|| HandlerError::Poison(format!("cancellation refused for unknown rental {rental_id}")))?;
    let status = rental.status().map_err(|error| HandlerError::Poison(error.message))?;
    if status == RentalStatus::Active {
        return Ok(());
    }
    let reinstated = status.reinstate().map_err(|refused| HandlerError::Poison(refused.to_string()))?;
    storage::set_status(connection, rental_id, reinstated, Utc::now()).await?;
    storage::forget_timeline(connection, rental_id, TimelineKind::Cancelled).await?;
    tracing::info!(%rental_id, "cancellation arrived after delivery: rental reinstated");
    Ok(())
}
