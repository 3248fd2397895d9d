//! The event bus of one service: a supervisor that keeps a broker connection, declares
//! the topology, and runs the outbox relay and (for consuming services) the consumer,
//! reconnecting with backoff whenever the connection is lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::StreamExt;
use futures::future::BoxFuture;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::catalog::{Subscription, subscriptions_of};
use super::outbox::{RelayWaker, relay};
use super::{Envelope, EventsConfig, broker, inbox};
use crate::db::Database;

/// Why a message could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// It will never apply (malformed, or contradicts what this service knows): it goes
    /// to the dead-letter queue at once, for a person to look at.
    #[error("poison message: {0}")]
    Poison(String),
    /// It may apply later (the database is unreachable, a conflict): it is redelivered,
    /// up to the queue's delivery limit.
    #[error("transient failure: {0}")]
    Transient(String),
}

impl From<diesel::result::Error> for HandlerError {
    fn from(error: diesel::result::Error) -> Self {
        HandlerError::Transient(format!("database: {error}"))
    }
}

/// What a consuming service does with the events it subscribes to (the event types
/// are listed in [`super::catalog`]).
pub trait EventHandler: Send + Sync + 'static {
    /// Applies one event inside the transaction that also records it as processed.
    /// Events written to the outbox here are published after the commit.
    fn handle<'a>(
        &'a self,
        connection: &'a mut AsyncPgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;
}

/// A running event bus. Dropping it does not stop it; cancel the shutdown token.
pub struct EventBus {
    task: JoinHandle<()>,
    waker: RelayWaker,
    connected: watch::Receiver<bool>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Unacknowledged messages the broker may hand this consumer at once: enough for
/// every worker to have a full batch in hand.
const PREFETCH: u16 = 256;
/// Batches applied at the same time. Messages about the same rental still apply one
/// at a time (see [`apply`]).
const CONCURRENCY: usize = 8;
/// At most this many messages are applied in one transaction. A worker takes the
/// messages already delivered, without waiting for more: under a light load a batch is
/// one message, under a heavy one many messages share one commit (and its fsync).
const BATCH: usize = 64;

impl EventBus {
    /// Runs the bus of `service`, declaring `subscriptions` (normally
    /// [`super::catalog::SUBSCRIPTIONS`]) and consuming this service's own with `handler`.
    pub fn start(
        config: EventsConfig,
        service: &'static str,
        subscriptions: &'static [Subscription],
        database: Database,
        handler: Option<Arc<dyn EventHandler>>,
        shutdown: CancellationToken,
    ) -> Self {
        let waker = RelayWaker::default();
        let (connected_sender, connected) = watch::channel(false);
        let session_waker = waker.clone();
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            while !shutdown.is_cancelled() {
                let session = Session {
                    config: &config,
                    service,
                    subscriptions,
                    database: &database,
                    handler: handler.as_deref(),
                    waker: &session_waker,
                    connected: &connected_sender,
                };
                match session.run(&shutdown).await {
                    Ok(()) => break,
                    Err(error) => {
                        // A session that got connected earns a quick reconnect; repeated
                        // failures to connect back off.
                        if *connected_sender.borrow() {
                            backoff = Duration::from_millis(100);
                        }
                        let _ = connected_sender.send(false);
                        tracing::warn!(service, %error, retry_in = ?backoff, "event bus disconnected");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            let _ = connected_sender.send(false);
        });
        Self { task, waker, connected }
    }

    /// Call after committing a transaction that wrote outbox rows.
    pub fn waker(&self) -> RelayWaker {
        self.waker.clone()
    }

    /// Waits until the bus is connected and its topology declared, up to `limit`.
    pub async fn connected(&self, limit: Duration) -> bool {
        let mut connected = self.connected.clone();
        tokio::time::timeout(limit, connected.wait_for(|up| *up)).await.is_ok_and(|result| result.is_ok())
    }

    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

struct Session<'a> {
    config: &'a EventsConfig,
    service: &'static str,
    subscriptions: &'static [Subscription],
    database: &'a Database,
    handler: Option<&'a dyn EventHandler>,
    waker: &'a RelayWaker,
    connected: &'a watch::Sender<bool>,
}

impl Session<'_> {
    /// One connection's life: Ok when shut down, Err when the connection failed.
    async fn run(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let connection = broker::connect(self.config, self.service).await?;
        let setup = connection.create_channel().await?;
        broker::declare(&setup, self.config, self.subscriptions).await?;
        let publisher = broker::publisher_channel(&connection).await?;
        let consumes = !subscriptions_of(self.subscriptions, self.service).is_empty();
        let consumer = match self.handler {
            Some(handler) if consumes => Some((connection.create_channel().await?, handler)),
            _ => None,
        };
        let _ = self.connected.send(true);
        tracing::info!(service = self.service, "event bus connected");
        // A relay left over from a previous connection may have missed wake-ups.
        self.waker.wake();

        let consuming = async {
            match &consumer {
                Some((channel, handler)) => self.consume(channel, *handler).await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            error = relay(self.database, &publisher, self.config, self.waker) => Err(error),
            error = consuming => Err(error),
            () = shutdown.cancelled() => Ok(()),
        };
        close(&connection).await;
        result
    }

    async fn consume(&self, channel: &Channel, handler: &dyn EventHandler) -> anyhow::Error {
        let queue = self.config.queue(self.service);
        let started = async {
            channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
            let tag = format!("{}-{}", self.service, uuid::Uuid::new_v4().simple());
            channel
                .basic_consume(
                    queue.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
        };
        let mut deliveries = match started.await {
            Ok(deliveries) => deliveries,
            Err(error) => return error.into(),
        };
        let mut settled = (&mut deliveries)
            .ready_chunks(BATCH)
            .map(|batch| self.settle(handler, batch))
            .buffer_unordered(CONCURRENCY);
        while let Some(result) = settled.next().await {
            if let Err(error) = result {
                return error;
            }
        }
        anyhow::anyhow!("the broker cancelled the consumer of {queue}")
    }

    /// Applies a batch of deliveries and acknowledges, rejects or requeues each.
    ///
    /// The batch is applied in one transaction and acknowledged after its commit. If
    /// any message fails, that transaction is rolled back and the messages are applied
    /// again one at a time, so one bad message cannot fail the others.
    async fn settle(&self, handler: &dyn EventHandler, batch: Vec<lapin::Result<Delivery>>) -> anyhow::Result<()> {
        let mut messages = Vec::with_capacity(batch.len());
        for delivery in batch {
            // A delivery error means the channel is gone: the session reconnects, and the
            // broker redelivers whatever this batch leaves unacknowledged.
            let delivery = delivery?;
            match serde_json::from_slice::<Envelope>(&delivery.data) {
                Ok(envelope) => messages.push((delivery, envelope)),
                Err(error) => {
                    tracing::error!(service = self.service, %error, "malformed message: dead-lettered");
                    delivery.reject(BasicRejectOptions { requeue: false }).await?;
                }
            }
        }
        if messages.len() > 1 {
            let envelopes: Vec<&Envelope> = messages.iter().map(|(_, envelope)| envelope).collect();
            match apply(self.database, handler, &envelopes).await {
                Ok(applied) => {
                    for (delivery, envelope) in &messages {
                        delivery.ack(BasicAckOptions::default()).await?;
                        if !applied.contains(&envelope.id) {
                            tracing::debug!(service = self.service, id = %envelope.id, "duplicate message ignored");
                        }
                    }
                    if !applied.is_empty() {
                        self.waker.wake();
                    }
                    return Ok(());
                }
                Err(error) => {
                    tracing::debug!(service = self.service, %error, size = messages.len(), "batch failed; applying its messages one at a time");
                }
            }
        }
        let mut failed = Vec::new();
        for (delivery, envelope) in messages {
            match apply(self.database, handler, &[&envelope]).await {
                Ok(applied) => {
                    delivery.ack(BasicAckOptions::default()).await?;
                    if applied.is_empty() {
                        tracing::debug!(service = self.service, id = %envelope.id, "duplicate message ignored");
                    } else {
                        self.waker.wake();
                    }
                }
                Err(HandlerError::Poison(reason)) => {
                    tracing::error!(service = self.service, id = %envelope.id, event = %envelope.event_type, %reason, "poison message: dead-lettered");
                    delivery.reject(BasicRejectOptions { requeue: false }).await?;
                }
                Err(HandlerError::Transient(reason)) => {
                    tracing::warn!(service = self.service, id = %envelope.id, event = %envelope.event_type, %reason, "message failed; redelivering");
                    failed.push(delivery);
                }
            }
        }
        if !failed.is_empty() {
            // A short pause so a failing dependency is not hammered; the quorum queue's
            // delivery limit bounds the retries. One pause for the whole batch, not one
            // per message.
            tokio::time::sleep(Duration::from_millis(200)).await;
            for delivery in failed {
                delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await?;
            }
        }
        Ok(())
    }
}

/// Applies `envelopes`, in their order, in one transaction: returns the ids applied
/// now; the others had been applied before (or are a second copy in this batch).
///
/// Events about the same rental (`data.rentalId`) apply one at a time, across
/// concurrent workers and replicas alike: the transaction first takes an advisory lock
/// on each rental of the batch, so a handler always sees the effect of every earlier
/// event, committed or applied before it in the same batch. The locks are taken in
/// sorted order, so two batches that share rentals never wait for each other in a
/// cycle. Row locks a handler takes (a product's stock, say) are held until the batch
/// commits; should two batches take them in opposite orders, PostgreSQL aborts one as
/// a deadlock and its messages are applied again one at a time.
async fn apply(
    database: &Database,
    handler: &dyn EventHandler,
    envelopes: &[&Envelope],
) -> Result<HashSet<Uuid>, HandlerError> {
    let mut connection = database.connection().await.map_err(|error| HandlerError::Transient(error.message))?;
    let mut ordering_keys: Vec<&str> = envelopes
        .iter()
        .filter_map(|envelope| envelope.data.get("rentalId").and_then(serde_json::Value::as_str))
        .collect();
    ordering_keys.sort_unstable();
    ordering_keys.dedup();
    let messages: Vec<(Uuid, &str)> =
        envelopes.iter().map(|envelope| (envelope.id, envelope.event_type.as_str())).collect();
    connection
        .transaction(async |connection| {
            if !ordering_keys.is_empty() {
                // unnest yields the keys in array order, so the locks follow it.
                diesel_async::RunQueryDsl::execute(
                    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended(key, 1)) FROM unnest($1) AS key")
                        .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&ordering_keys),
                    connection,
                )
                .await?;
            }
            let mut claimed = inbox::claim_all(connection, &messages).await?;
            let mut applied = HashSet::with_capacity(claimed.len());
            for envelope in envelopes {
                // `remove`, so a second copy of a message in the batch is skipped.
                if claimed.remove(&envelope.id) {
                    handler.handle(connection, envelope).await?;
                    applied.insert(envelope.id);
                }
            }
            Ok(applied)
        })
        .await
}

async fn close(connection: &Connection) {
    if connection.status().connected() {
        let _ = connection.close(200, "shutting down".into()).await;
    }
}
