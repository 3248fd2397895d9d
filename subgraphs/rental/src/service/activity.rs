//! A rental's activity, live, on whichever replica the subscriber is connected to.
//!
//! The activity is the rental's timeline: every step of it (charges, declines, status
//! changes, the extension, the end, visits) is written by some transaction of rental's,
//! and that transaction's projection announces the rental on a PostgreSQL channel
//! (`storage::history::ACTIVITY_CHANNEL`) once it commits. Each replica listens on that
//! channel with one connection of its own and nudges the rental's subscribers in its
//! [`LiveHub`]; each stream then reads the timeline and sends the steps it has not sent
//! yet. A notification is only delivered after the commit, so a stream never reads
//! before the change it was told of; after a reconnection every stream reads again, so
//! a change made while the listener was away is not lost.

use std::sync::Arc;

use diesel::sql_query;
use diesel_async::RunQueryDsl;
use futures::StreamExt;
use subgraph_kit::backoff::{Backoff, Outage};
use subgraph_kit::config::DatabaseConfig;
use subgraph_kit::live::LiveHub;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::storage::history::ACTIVITY_CHANNEL;

/// Nudges this replica's activity subscribers on every change of a rental's history,
/// until `stopping`, reconnecting with backoff.
pub async fn listen_until(hub: Arc<LiveHub>, database: DatabaseConfig, stopping: CancellationToken) {
    let mut outage = Outage::new("rental activity listener: the database");
    let mut backoff = Backoff::reconnect();
    while !stopping.is_cancelled() {
        tokio::select! {
            result = listen(&hub, &database, &mut outage, &mut backoff) => {
                if let Err(error) = result {
                    outage.failed(&format!("{error:#}"));
                }
            }
            () = stopping.cancelled() => return,
        }
        if !backoff.wait(&stopping).await {
            return;
        }
    }
}

async fn listen(
    hub: &LiveHub,
    database: &DatabaseConfig,
    outage: &mut Outage,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let mut connection = subgraph_kit::db::connect_to(database).await?;
    sql_query(format!("LISTEN {ACTIVITY_CHANNEL}")).execute(&mut connection).await?;
    outage.recovered();
    backoff.reset();
    // Changes committed while this replica was not listening: every stream reads again.
    hub.nudge_everyone();
    let mut notifications = std::pin::pin!(connection.notifications_stream());
    while let Some(notification) = notifications.next().await {
        let notification = notification?;
        match notification.payload.parse::<Uuid>() {
            Ok(rental_id) => hub.nudge(rental_id, None),
            Err(_) => tracing::warn!(payload = %notification.payload, "ignoring a malformed activity notification"),
        }
    }
    anyhow::bail!("the activity listener's database connection closed")
}
