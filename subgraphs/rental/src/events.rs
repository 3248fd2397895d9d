//! What rental does with the events it consumes: one use case each. Every event about
//! a rental lands in its timeline, at the time the step happened in its own service.

use contracts::{ForRental, VisitChange, VisitKind};
use event_bus::{Event, EventHandler, EventMeta, HandlerError};
use subgraph_kit::Tx;
use subgraph_kit::clock::Calendar;

use crate::domain::TimelineKind;
use crate::service::{self, contract};
use crate::storage::timeline::Step;

pub struct RentalEvents {
    pub calendar: Calendar,
}

impl EventHandler for RentalEvents {
    type Inbox = ForRental;

    async fn handle(&self, tx: &mut Tx<'_>, event: ForRental, meta: EventMeta) -> Result<(), HandlerError> {
        let step = |rental_id, kind, at| Step::once(rental_id, kind, at);
        match event {
            ForRental::ProductCreated(product) => service::learn_product(tx, &product).await,
            ForRental::PaymentCharged(charged) => {
                service::record_step(tx, meta, step(charged.rental_id, TimelineKind::Paid, charged.at)).await
            }
            ForRental::PaymentRefunded(refunded) => {
                service::record_step(tx, meta, step(refunded.rental_id, TimelineKind::Refunded, refunded.at)).await
            }
            ForRental::InvoicePaid(paid) => contract::invoice_paid(tx, meta, &paid).await,
            ForRental::InvoiceFailed(failed) => contract::invoice_failed(tx, &self.calendar, meta, &failed).await,
            ForRental::InvoiceVoided(voided) => contract::invoice_voided(tx, meta, &voided).await,
            ForRental::PaymentMethodUpdated(updated) => contract::card_updated(tx, meta, &updated).await,
            ForRental::DeliveryRequested(requested) => {
                let requested_step = step(requested.rental_id, TimelineKind::DeliveryRequested, requested.at());
                service::record_step(tx, meta, requested_step).await
            }
            ForRental::DeliveryStarted(started) => {
                service::record_step(tx, meta, step(started.rental_id, TimelineKind::Shipped, started.at())).await
            }
            ForRental::DeliveryCompleted(completed) => {
                service::activate(tx, &self.calendar, meta, completed.rental_id, completed.at()).await
            }
            ForRental::DeliveryCancelRefused(refused) => {
                service::reinstate(tx, &self.calendar, refused.rental_id, refused.at()).await
            }
            ForRental::VisitScheduled(visit) if visit.kind == VisitKind::Pickup => {
                service::record_step(tx, meta, visit_step(&visit, TimelineKind::PickupScheduled)).await
            }
            // A care visit's plan is in `Rental.visits`; the timeline tells what happened.
            ForRental::VisitScheduled(_) | ForRental::VisitCancelled(_) => Ok(()),
            ForRental::VisitRescheduled(visit) => {
                service::record_step(tx, meta, visit_step(&visit, TimelineKind::VisitRescheduled)).await
            }
            ForRental::VisitStarted(visit) => {
                service::record_step(tx, meta, visit_step(&visit, TimelineKind::VisitStarted)).await
            }
            ForRental::VisitDone(visit) => {
                let kind = match visit.kind {
                    VisitKind::Care => TimelineKind::CareVisitDone,
                    VisitKind::Pickup => TimelineKind::PickedUp,
                };
                service::record_step(tx, meta, visit_step(&visit, kind)).await
            }
            ForRental::UnitReturned(returned) => {
                service::record_step(tx, meta, step(returned.rental_id, TimelineKind::Returned, returned.at)).await
            }
        }
    }
}

/// A step about one visit, once per visit (a visit moved twice shows when it was first
/// moved; `Rental.visits` has its date now).
fn visit_step(visit: &VisitChange, kind: TimelineKind) -> Step {
    Step::of_visit(visit.rental_id, kind, visit.visit_id, format!("visit:{}", visit.visit_id), visit.at)
}
