//! The event bus of one service: a supervisor that keeps a broker connection, declares
//! the topology, and runs the outbox relay and (for consuming services) the consumer,
//! reconnecting with backoff whenever the connection is lost.

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
/// Unacknowledged messages the broker may hand this consumer at once.
const PREFETCH: u16 = 64;
/// Messages applied at the same time. Messages about the same rental still apply one
/// at a time (see [`apply`]).
const CONCURRENCY: usize = 8;

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
            .map(|delivery| async move {
                match delivery {
                    Ok(delivery) => self.settle(handler, delivery).await,
                    Err(error) => Err(error.into()),
                }
            })
            .buffer_unordered(CONCURRENCY);
        while let Some(result) = settled.next().await {
            if let Err(error) = result {
                return error;
            }
        }
        anyhow::anyhow!("the broker cancelled the consumer of {queue}")
    }

    /// Applies one delivery and acknowledges, rejects or requeues it.
    async fn settle(&self, handler: &dyn EventHandler, delivery: Delivery) -> Result<(), anyhow::Error> {
        let envelope: Envelope = match serde_json::from_slice(&delivery.data) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::error!(service = self.service, %error, "malformed message: dead-lettered");
                delivery.reject(BasicRejectOptions { requeue: false }).await?;
                return Ok(());
            }
        };
        match apply(self.database, handler, &envelope).await {
            Ok(applied) => {
                delivery.ack(BasicAckOptions::default()).await?;
                if applied {
                    self.waker.wake();
                } else {
                    tracing::debug!(service = self.service, id = %envelope.id, "duplicate message ignored");
                }
            }
            Err(HandlerError::Poison(reason)) => {
                tracing::error!(service = self.service, id = %envelope.id, event = %envelope.event_type, %reason, "poison message: dead-lettered");
                delivery.reject(BasicRejectOptions { requeue: false }).await?;
            }
            Err(HandlerError::Transient(reason)) => {
                tracing::warn!(service = self.service, id = %envelope.id, event = %envelope.event_type, %reason, "message failed; redelivering");
                // A short pause so a failing dependency is not hammered; the quorum
                // queue's delivery limit bounds the retries.
                tokio::time::sleep(Duration::from_millis(200)).await;
                delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await?;
            }
        }
        Ok(())
    }
}

/// Applies `envelope` once: true if applied now, false if it had been applied before.
///
/// Events about the same rental (`data.rentalId`) apply one at a time, across
/// concurrent workers and replicas alike: the transaction first takes an advisory lock
/// on the rental, so a handler always sees every earlier event's effect committed.
async fn apply(database: &Database, handler: &dyn EventHandler, envelope: &Envelope) -> Result<bool, HandlerError> {
    let mut connection = database.connection().await.map_err(|error| HandlerError::Transient(error.message))?;
    let ordering_key = envelope.data.get("rentalId").and_then(serde_json::Value::as_str).map(str::to_owned);
    connection
        .transaction(async |connection| {
            if let Some(key) = &ordering_key {
                diesel_async::RunQueryDsl::execute(
                    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))")
                        .bind::<diesel::sql_types::Text, _>(key),
                    connection,
                )
                .await?;
            }
            if !inbox::claim(connection, envelope.id, &envelope.event_type).await? {
                return Ok(false);
            }
            handler.handle(connection, envelope).await?;
            Ok(true)
        })
        .await
}

async fn close(connection: &Connection) {
    if connection.status().connected() {
        let _ = connection.close(200, "shutting down".into()).await;
    }
}
