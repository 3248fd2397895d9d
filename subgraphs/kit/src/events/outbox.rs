//! The transactional outbox: writing events, and the relay that publishes them.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation};
use serde::Serialize;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Envelope, EventsConfig};
use crate::db::Database;

diesel::table! {
    outbox (id) {
        id -> Uuid,
        event_type -> Text,
        version -> Int4,
        payload -> Jsonb,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
    }
}

/// At most this many rows are published per round trip to the database.
const BATCH: i64 = 200;
/// The relay looks for rows this often even when nobody wakes it (after a restart,
/// or when a commit's wake-up was missed).
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Writes an event into the outbox. Call it inside the transaction that makes the
/// change the event describes: both commit, or neither.
pub async fn enqueue<T: Serialize>(
    connection: &mut AsyncPgConnection,
    source: &str,
    event_type: &str,
    version: i32,
    data: &T,
) -> QueryResult<Uuid> {
    let ids = enqueue_all(connection, source, event_type, version, std::slice::from_ref(data)).await?;
    Ok(ids[0])
}

/// Writes several events of one type into the outbox in a single statement, in order,
/// for a transaction that emits many (a round trip per event would dominate it).
/// Returns their ids.
pub async fn enqueue_all<T: Serialize>(
    connection: &mut AsyncPgConnection,
    source: &str,
    event_type: &str,
    version: i32,
    items: &[T],
) -> QueryResult<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(items.len());
    let rows: Vec<_> = items
        .iter()
        .map(|data| {
            let envelope = Envelope {
                id: Uuid::now_v7(),
                event_type: event_type.to_owned(),
                version,
                source: source.to_owned(),
                occurred_at: Utc::now(),
                data: serde_json::to_value(data).expect("event payloads serialize"),
            };
            let payload = serde_json::to_value(&envelope).expect("envelopes serialize");
            ids.push(envelope.id);
            (
                outbox::id.eq(envelope.id),
                outbox::event_type.eq(event_type),
                outbox::version.eq(version),
                outbox::payload.eq(payload),
                outbox::created_at.eq(envelope.occurred_at),
            )
        })
        .collect();
    if !rows.is_empty() {
        diesel::insert_into(outbox::table).values(rows).execute(connection).await?;
    }
    Ok(ids)
}

/// Wakes the relay after a commit that wrote outbox rows, so events leave at once
/// instead of at the next poll.
#[derive(Clone, Default)]
pub struct RelayWaker(Arc<Notify>);

impl RelayWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }

    async fn wait(&self) {
        let _ = tokio::time::timeout(POLL_EVERY, self.0.notified()).await;
    }
}

/// Publishes unpublished outbox rows until the channel fails. Returns the error that
/// stopped it, for the bus to reconnect.
pub async fn relay(database: &Database, channel: &Channel, config: &EventsConfig, waker: &RelayWaker) -> anyhow::Error {
    loop {
        match publish_batch(database, channel, config).await {
            // A full batch: more may be waiting.
            Ok(published) if published as i64 == BATCH => continue,
            Ok(_) => waker.wait().await,
            Err(error) => return error,
        }
    }
}

/// Publishes up to [`BATCH`] rows and marks the confirmed ones. Rows are locked with
/// SKIP LOCKED, so several replicas relay side by side without sending a row twice.
async fn publish_batch(database: &Database, channel: &Channel, config: &EventsConfig) -> anyhow::Result<usize> {
    let mut connection = database.connection().await.map_err(|error| anyhow::anyhow!(error.message))?;
    let exchange = config.exchange();
    let outcome = connection
        .transaction(async |connection| {
            let rows: Vec<(Uuid, String, serde_json::Value)> = outbox::table
                .filter(outbox::published_at.is_null())
                .order(outbox::id)
                .limit(BATCH)
                .select((outbox::id, outbox::event_type, outbox::payload))
                .for_update()
                .skip_locked()
                .load(connection)
                .await?;
            if rows.is_empty() {
                return Ok((0, None));
            }
            let mut pending = Vec::with_capacity(rows.len());
            for (id, event_type, payload) in &rows {
                let properties = BasicProperties::default()
                    .with_message_id(id.to_string().into())
                    .with_type(event_type.clone().into())
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2);
                let confirm = channel
                    .basic_publish(
                        exchange.as_str().into(),
                        event_type.as_str().into(),
                        BasicPublishOptions { mandatory: true, ..Default::default() },
                        &serde_json::to_vec(payload)?,
                        properties,
                    )
                    .await?;
                pending.push((*id, confirm));
            }
            let mut confirmed = Vec::with_capacity(pending.len());
            let mut failure = None;
            for (id, confirm) in pending {
                match confirm.await {
                    Ok(Confirmation::Ack(None)) => confirmed.push(id),
                    // A mandatory message that reached no queue comes back inside the ack.
                    // The row stays and is retried at the next poll; the others go on. With
                    // the whole topology declared by every service this means an event type
                    // missing from the catalog: a bug worth a loud log, not a lost event.
                    Ok(Confirmation::Ack(Some(_))) => {
                        tracing::error!(%id, "event reached no queue; it stays in the outbox");
                    }
                    Ok(Confirmation::Nack(_)) => {
                        tracing::warn!(%id, "broker refused the event; it will be retried");
                    }
                    Ok(Confirmation::NotRequested) => {
                        failure
                            .get_or_insert_with(|| anyhow::anyhow!("publisher confirms are off on the relay channel"));
                    }
                    // The channel or connection failed: reconnect.
                    Err(error) => {
                        failure.get_or_insert_with(|| anyhow::anyhow!(error));
                    }
                }
            }
            diesel::update(outbox::table.filter(outbox::id.eq_any(&confirmed)))
                .set(outbox::published_at.eq(Utc::now()))
                .execute(connection)
                .await?;
            // A broker failure is returned as data, not as an error: the transaction
            // must still commit, so the rows that were confirmed stay marked. The
            // others are retried after the bus reconnects.
            Ok::<_, RelayError>((confirmed.len(), failure))
        })
        .await;
    match outcome {
        Ok((published, None)) => Ok(published),
        Ok((_, Some(error))) => Err(error),
        Err(RelayError(error)) => Err(error),
    }
}

/// A failure that rolls the relay's transaction back: nothing is marked, and rows that
/// may already have reached the broker are sent again later (consumers dedupe).
struct RelayError(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for RelayError {
    fn from(error: E) -> Self {
        RelayError(error.into())
    }
}
