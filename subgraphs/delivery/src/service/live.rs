//! Live delivery status for subscribers, whichever instance they are connected to.
//!
//! Every delivery instance hears the delivery events on the broker (`event_bus::listen_until`,
//! a queue of its own), so a change committed by any instance reaches the subscribers of
//! all of them. An event only says "rental R changed" (a nudge in the kit's `LiveHub`):
//! each stream then reads the delivery's current row and sends it if its status is further
//! along than the last one it sent. The state machine only moves forward, so this can
//! never send an older status after a newer one, and duplicated or reordered events change
//! nothing. After a broker reconnection every stream re-reads, so changes missed while
//! disconnected are not lost.

use std::sync::Arc;

use contracts::DeliveryNews;
use event_bus::{Heard, listen_until};
use subgraph_kit::config::EventsConfig;
use subgraph_kit::live::LiveHub;
use tokio_util::sync::CancellationToken;

use crate::domain::DeliveryStatus;

/// How far along a status is; a stream only ever sends increasing ranks.
pub fn rank(status: DeliveryStatus) -> u8 {
    match status {
        DeliveryStatus::Requested => 1,
        DeliveryStatus::Shipping => 2,
        DeliveryStatus::Delivered | DeliveryStatus::Cancelled => 3,
    }
}

/// Nudges this instance's subscribers on every delivery change, until `stopping`.
pub async fn listen(hub: Arc<LiveHub>, config: EventsConfig, stopping: CancellationToken) {
    listen_until::<DeliveryNews>(config, "delivery-live", stopping, |heard| match heard {
        // The nudge continues the trace of the change: publish, then this.
        Heard::Event(news) => hub.nudge(news.rental_id(), subgraph_kit::telemetry::current_traceparent()),
        Heard::Connected => hub.nudge_everyone(),
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_only_grow_along_the_state_machine() {
        use DeliveryStatus::*;
        assert!(rank(Requested) < rank(Shipping));
        assert!(rank(Shipping) < rank(Delivered));
        assert_eq!(rank(Delivered), rank(Cancelled));
    }
}
