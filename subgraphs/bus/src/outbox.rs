//! The transactional outbox: writing events, and the relay that publishes them.

use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation};
use uuid::Uuid;

use crate::metrics::metrics;
use crate::{Envelope, Event};
use subgraph_kit::backoff::{Backoff, Outage};
use subgraph_kit::config::EventsConfig;
use subgraph_kit::db::{Database, Tx};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

diesel::table! {
    outbox (id) {
        id -> Uuid,
        event_type -> Text,
        version -> Int4,
        payload -> Jsonb,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        trace_context -> Nullable<Text>,
    }
}

/// At most this many rows are published per round trip to the database.
const BATCH: i64 = 200;
/// The relay looks for rows this often even when nobody wakes it (after a restart,
/// or when a commit's wake-up was missed).
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Writes `event` into the outbox, inside the transaction that makes the change it
/// describes: both commit, or neither. The commit wakes the relay. Returns the
/// event's id.
pub async fn enqueue<E: Event>(tx: &mut Tx<'_>, event: &E) -> QueryResult<Uuid> {
    let ids = enqueue_all(tx, std::slice::from_ref(event)).await?;
    Ok(ids[0])
}

/// Writes several events of one type into the outbox in a single statement, in order,
/// for a transaction that emits many (a round trip per event would dominate it).
/// Returns their ids.
pub async fn enqueue_all<E: Event>(tx: &mut Tx<'_>, events: &[E]) -> QueryResult<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(events.len());
    // The trace of the change travels with its events.
    let trace_context = subgraph_kit::telemetry::current_traceparent();
    let rows: Vec<_> = events
        .iter()
        .map(|event| {
            let envelope = Envelope::wrap(event);
            let payload = serde_json::to_value(&envelope).expect("envelopes serialize");
            ids.push(envelope.id);
            (
                outbox::id.eq(envelope.id),
                outbox::event_type.eq(E::TYPE),
                outbox::version.eq(E::VERSION),
                outbox::payload.eq(payload),
                outbox::trace_context.eq(trace_context.clone()),
            )
        })
        .collect();
    if !rows.is_empty() {
        diesel::insert_into(outbox::table).values(rows).execute(&mut **tx).await?;
        tx.record_event();
    }
    Ok(ids)
}

/// Why a relay round failed: the database (wait and try again, the broker session is
/// fine) or the broker (reconnect).
enum RelayFailure {
    Database(String),
    Broker(anyhow::Error),
}

/// Publishes unpublished outbox rows until `stop`, then publishes what is left and
/// returns Ok; returns the error when the channel fails, for the bus to reconnect. A
/// database outage does not end it: the relay waits it out with backoff, logging once,
/// and the broker session stays up.
pub async fn relay(
    service: &str,
    database: &Database,
    channel: &Channel,
    config: &EventsConfig,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let mut outage = Outage::new(format!("{service} outbox relay: the database"));
    let mut backoff = Backoff::reconnect();
    loop {
        let stopping = stop.is_cancelled();
        match publish_batch(service, database, channel, config).await {
            Ok(published) => {
                outage.recovered();
                backoff.reset();
                // A full batch: more may be waiting.
                if published as i64 == BATCH {
                    continue;
                }
                // Everything committed before the stop is out.
                if stopping {
                    return Ok(());
                }
                tokio::select! {
                    _ = tokio::time::timeout(POLL_EVERY, database.events_committed().notified()) => {}
                    () = stop.cancelled() => {}
                }
            }
            Err(RelayFailure::Database(error)) => {
                outage.failed(&error);
                // What is left waits for the next start (or another replica).
                if stopping {
                    return Ok(());
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    () = stop.cancelled() => {}
                }
            }
            Err(RelayFailure::Broker(error)) => return Err(error),
        }
    }
}

/// Publishes up to [`BATCH`] rows and marks the confirmed ones. Rows are locked with
/// SKIP LOCKED, so several replicas relay side by side without sending a row twice.
async fn publish_batch(
    service: &str,
    database: &Database,
    channel: &Channel,
    config: &EventsConfig,
) -> Result<usize, RelayFailure> {
    let mut connection = database.connection().await.map_err(|error| RelayFailure::Database(error.message))?;
    let exchange = config.exchange();
    let outcome = connection
        .transaction(async |connection| {
            let rows: Vec<(Uuid, String, serde_json::Value, Option<String>)> = outbox::table
                .filter(outbox::published_at.is_null())
                .order(outbox::id)
                .limit(BATCH)
                .select((outbox::id, outbox::event_type, outbox::payload, outbox::trace_context))
                .for_update()
                .skip_locked()
                .load(connection)
                .await?;
            if rows.is_empty() {
                return Ok((0, None));
            }
            let mut pending = Vec::with_capacity(rows.len());
            for (id, event_type, payload, trace_context) in &rows {
                let mut properties = BasicProperties::default()
                    .with_message_id(id.to_string().into())
                    .with_type(event_type.as_str().into())
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2);
                // A short span per message, in the trace of the change that wrote it; the
                // message carries this span's context on to its consumers.
                let span = tracing::info_span!("publish event", otel.kind = "producer", event = %event_type);
                subgraph_kit::telemetry::continue_trace(&span, trace_context.as_deref());
                if let Some(traceparent) = span.in_scope(subgraph_kit::telemetry::current_traceparent) {
                    let mut headers = lapin::types::FieldTable::default();
                    headers.insert(
                        "traceparent".into(),
                        lapin::types::AMQPValue::LongString(traceparent.into_bytes().into()),
                    );
                    properties = properties.with_headers(headers);
                }
                let confirm = channel
                    .basic_publish(
                        exchange.as_str().into(),
                        event_type.as_str().into(),
                        BasicPublishOptions { mandatory: true, ..Default::default() },
                        &serde_json::to_vec(payload)?,
                        properties,
                    )
                    .instrument(span)
                    .await?;
                pending.push((*id, event_type.as_str(), confirm));
            }
            let mut confirmed = Vec::with_capacity(pending.len());
            let mut failure = None;
            for (id, event_type, confirm) in pending {
                match confirm.await {
                    Ok(Confirmation::Ack(None)) => {
                        confirmed.push(id);
                        metrics().events_published.with_label_values(&[service, event_type]).inc();
                    }
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
        Ok((_, Some(error))) => Err(RelayFailure::Broker(error)),
        Err(RelayError::Database(error)) => Err(RelayFailure::Database(error.to_string())),
        Err(RelayError::Broker(error)) => Err(RelayFailure::Broker(error)),
    }
}

/// A failure that rolls the relay's transaction back: nothing is marked, and rows that
/// may already have reached the broker are sent again later (consumers dedupe).
enum RelayError {
    Database(diesel::result::Error),
    Broker(anyhow::Error),
}

impl From<diesel::result::Error> for RelayError {
    fn from(error: diesel::result::Error) -> Self {
        RelayError::Database(error)
    }
}

impl From<lapin::Error> for RelayError {
    fn from(error: lapin::Error) -> Self {
        RelayError::Broker(error.into())
    }
}

impl From<serde_json::Error> for RelayError {
    fn from(error: serde_json::Error) -> Self {
        RelayError::Broker(error.into())
    }
}

/// How far behind the relay is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Rows not yet confirmed by the broker.
    pub rows: i64,
    /// Age of the oldest of them (zero when there are none).
    pub oldest_age: Duration,
}

/// The outbox backlog, in one statement (for the metrics).
pub async fn backlog(database: &Database) -> Result<Backlog, subgraph_kit::ApiError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        rows: i64,
        #[diesel(sql_type = diesel::sql_types::Double)]
        oldest_age: f64,
    }
    let mut connection = database.connection().await?;
    let row: Row = diesel::sql_query(
        "SELECT count(*) AS rows, \
                COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest_age \
         FROM outbox WHERE published_at IS NULL",
    )
    .get_result(&mut connection)
    .await?;
    Ok(Backlog { rows: row.rows, oldest_age: Duration::from_secs_f64(row.oldest_age.max(0.0)) })
}
