//! What inventory does with the events it consumes: one use case each.

use contracts::{ForInventory, VisitKind};
use event_bus::{EventHandler, EventMeta, HandlerError};
use subgraph_kit::Tx;

use crate::service;

pub struct InventoryEvents;

impl EventHandler for InventoryEvents {
    type Inbox = ForInventory;

    async fn handle(&self, tx: &mut Tx<'_>, event: ForInventory, _meta: EventMeta) -> Result<(), HandlerError> {
        match event {
            ForInventory::DeliveryStarted(started) => service::take_unit(tx, &started).await,
            ForInventory::DeliveryCancelled(cancelled) => service::give_back(tx, &cancelled).await,
            ForInventory::VisitDone(visit) if visit.kind == VisitKind::Pickup => {
                service::collect_unit(tx, &visit).await
            }
            // A care visit changes no stock.
            ForInventory::VisitDone(_) => Ok(()),
        }
    }
}
