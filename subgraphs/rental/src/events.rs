//! What rental does with the events it consumes: one use case each. Every event about
//! a rental lands in its timeline, at the time the step happened in its own service.

use contracts::ForRental;
use event_bus::{Event, EventHandler, EventMeta, HandlerError};
use subgraph_kit::Tx;

use crate::domain::TimelineKind;
use crate::service;

pub struct RentalEvents;

impl EventHandler for RentalEvents {
    type Inbox = ForRental;

    async fn handle(&self, tx: &mut Tx<'_>, event: ForRental, meta: EventMeta) -> Result<(), HandlerError> {
        match event {
            ForRental::ProductCreated(product) => service::learn_product(tx, &product).await,
            ForRental::PaymentCharged(charged) => {
                service::record_step(tx, meta, charged.rental_id, TimelineKind::Paid, charged.at).await
            }
            ForRental::PaymentRefunded(refunded) => {
                service::record_step(tx, meta, refunded.rental_id, TimelineKind::Refunded, refunded.at).await
            }
            ForRental::DeliveryRequested(requested) => {
                service::record_step(tx, meta, requested.rental_id, TimelineKind::DeliveryRequested, requested.at())
                    .await
            }
            ForRental::DeliveryStarted(started) => {
                service::record_step(tx, meta, started.rental_id, TimelineKind::Shipped, started.at()).await
            }
            ForRental::DeliveryCompleted(completed) => {
                service::activate(tx, meta, completed.rental_id, completed.at()).await
            }
            ForRental::DeliveryCancelRefused(refused) => service::reinstate(tx, refused.rental_id).await,
        }
    }
}
