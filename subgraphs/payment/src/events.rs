//! What payment does with the events it consumes: one use case each.

use contracts::ForPayment;
use event_bus::{EventHandler, EventMeta, HandlerError};
use subgraph_kit::Tx;

use crate::service;

pub struct PaymentEvents;

impl EventHandler for PaymentEvents {
    type Inbox = ForPayment;

    async fn handle(&self, tx: &mut Tx<'_>, event: ForPayment, _meta: EventMeta) -> Result<(), HandlerError> {
        match event {
            ForPayment::DeliveryCancelled(cancelled) => service::refund_cancelled_delivery(tx, &cancelled).await,
            ForPayment::RentalActivated(activated) => service::date_first_period(tx, &activated).await,
            ForPayment::RentalPeriodDue(due) => service::invoice_period(tx, &due).await,
            ForPayment::RentalEnded(ended) => service::invoice_termination_fee(tx, &ended).await,
        }
    }
}
