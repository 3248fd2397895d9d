//! What delivery does with the events it consumes: one use case each.

use contracts::ForDelivery;
use event_bus::{EventHandler, EventMeta, HandlerError};
use subgraph_kit::Tx;
use subgraph_kit::clock::Calendar;

use crate::domain::Unit;
use crate::service::{self, visits};

pub struct DeliveryEvents {
    pub calendar: Calendar,
}

impl EventHandler for DeliveryEvents {
    type Inbox = ForDelivery;

    async fn handle(&self, tx: &mut Tx<'_>, event: ForDelivery, _meta: EventMeta) -> Result<(), HandlerError> {
        match event {
            ForDelivery::RentalAccepted(rental) => service::request(tx, &rental).await,
            ForDelivery::RentalCancelled(rental) => service::cancel_for_rental(tx, &rental).await,
            ForDelivery::RentalActivated(activated) => visits::plan_term(tx, &self.calendar, &activated).await,
            ForDelivery::RentalExtended(extended) => visits::extend_term(tx, &self.calendar, &extended).await,
            ForDelivery::RentalEnded(ended) => visits::end_term(tx, &self.calendar, &ended).await,
            ForDelivery::StockShortage(news) => service::unit_news(tx, &news, Unit::short).await,
            ForDelivery::StockAllocated(news) => service::unit_news(tx, &news, Unit::taken).await,
        }
    }
}
