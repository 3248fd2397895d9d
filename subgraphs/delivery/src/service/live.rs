//! Live delivery status for subscribers, whichever instance they are connected to.
//!
//! Every delivery instance hears the delivery events on the broker (`event_bus::listen_until`,
//! a queue of its own), so a change committed by any instance reaches the subscribers of
//! all of them. An event only says "rental R changed" (a nudge in the kit's `LiveHub`):
//! each stream then reads the delivery's current row and sends it if its status is further
//! along than the last one it sent. The state machine only moves forward, so this can
//! never send an older status after a newer one, and duplicated or reordered events change
//! nothing. After a broker reconnection every stream re-reads, so changes missed while
//! disconnected are not lost. A shipment that ended before its own nudge was read (a
//! cancellation right behind `startDelivery`) is not skipped either: the row keeps when
//! it shipped, so the stream sends SHIPPING, as it was, before the end ([`unseen`]).

use std::sync::Arc;

use contracts::DeliveryNews;
use event_bus::{Heard, listen_until};
use subgraph_kit::config::EventsConfig;
use subgraph_kit::live::LiveHub;
use tokio_util::sync::CancellationToken;

use crate::domain::{DeliveryMoves, DeliveryStatus};
use crate::storage::deliveries::DeliveryRow;

/// How far along a status is; a stream only ever sends increasing ranks.
pub fn rank(status: DeliveryStatus) -> u8 {
    match status {
        DeliveryStatus::Requested => 1,
        DeliveryStatus::Shipping => 2,
        DeliveryStatus::Delivered | DeliveryStatus::Cancelled => 3,
    }
}

/// What a subscriber that has seen up to rank `sent` is still owed from `row`, oldest
/// first: nothing if it is not further along; otherwise the row, preceded by the
/// delivery as it was while shipping when it shipped and has ended since (each status
/// of a delivery is seen once, in order, however fast they followed each other).
pub fn unseen(row: DeliveryRow, sent: u8) -> Vec<DeliveryRow> {
    let status = row.status;
    if rank(status) <= sent {
        return Vec::new();
    }
    let mut owed = Vec::new();
    if sent >= rank(DeliveryStatus::Requested) && sent < rank(DeliveryStatus::Shipping) && status.is_terminal() {
        if let Some(shipped_at) = row.shipped_at {
            owed.push(DeliveryRow {
                status: DeliveryStatus::Shipping,
                delivered_at: None,
                cancelled_at: None,
                updated_at: shipped_at,
                ..row.clone()
            });
        }
    }
    owed.push(row);
    owed
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
    fn a_shipment_cancelled_before_anyone_read_it_is_still_sent_first() {
        use chrono::Utc;
        let mut row = DeliveryRow::new(
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
            "1 Main St".into(),
            DeliveryStatus::Requested,
            Utc::now(),
        );
        let statuses = |rows: Vec<DeliveryRow>| rows.into_iter().map(|row| row.status).collect::<Vec<_>>();
        // The first event of a subscription is the status as it is.
        assert_eq!(statuses(unseen(row.clone(), 0)), [DeliveryStatus::Requested]);
        assert!(unseen(row.clone(), rank(DeliveryStatus::Requested)).is_empty());

        row.status = DeliveryStatus::Cancelled;
        row.cancelled_at = Some(Utc::now());
        // Cancelled before it ever shipped: nothing in between.
        assert_eq!(statuses(unseen(row.clone(), 1)), [DeliveryStatus::Cancelled]);

        row.shipped_at = Some(Utc::now());
        let owed = unseen(row.clone(), 1);
        assert_eq!(statuses(owed.clone()), [DeliveryStatus::Shipping, DeliveryStatus::Cancelled]);
        assert_eq!(owed[0].cancelled_at, None, "the shipment as it was");
        // Seen shipping already, or subscribing only now: the end alone.
        assert_eq!(statuses(unseen(row.clone(), 2)), [DeliveryStatus::Cancelled]);
        assert_eq!(statuses(unseen(row, 0)), [DeliveryStatus::Cancelled]);
    }

    #[test]
    fn ranks_only_grow_along_the_state_machine() {
        use DeliveryStatus::*;
        assert!(rank(Requested) < rank(Shipping));
        assert!(rank(Shipping) < rank(Delivered));
        assert_eq!(rank(Delivered), rank(Cancelled));
    }
}
