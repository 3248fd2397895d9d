//! The event bus of one service: a supervisor that keeps a broker connection, declares
//! the topology, and runs the outbox relay and the consumer, reconnecting with backoff
//! whenever the connection is lost.
//!
//! How a consumed message is settled:
//!
//! - applied (or found to be a duplicate): acknowledged after the commit;
//! - poison (malformed, unknown version, contradicts this service): published to the
//!   service's dead-letter queue with the reason in its headers, then acknowledged, and
//!   logged as an error with its id;
//! - the service's own database is unreachable: the message is held (neither acked nor
//!   requeued), and applied when the database answers again. Waiting costs no delivery
//!   attempt, on RabbitMQ 3.x or 4.x alike; the outage is logged when it starts and
//!   when it ends;
//! - any other failure: tried again in the consumer with backoff, up to
//!   `EventsConfig::handler_attempts`, then dead-lettered with the last error.
//!
//! Nothing is ever nacked with requeue, so how a broker version counts requeues does
//! not matter. The queue's delivery limit only catches a message that keeps killing its
//! consumer before it can settle it.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Confirmation};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::broker::{self, Link};
use crate::metrics::metrics;
use crate::outbox::relay;
use crate::{Envelope, EventMeta, HandlerError, Inbox, Subscription, inbox};
use subgraph_kit::backoff::{Backoff, Outage};
use subgraph_kit::config::EventsConfig;
use subgraph_kit::db::{Database, Tx};

/// What a consuming service does with the events of its inbox. Implementations are
/// thin: an exhaustive `match` over the inbox enum, each arm one call into the
/// service's use cases.
pub trait EventHandler: Send + Sync + 'static {
    type Inbox: Inbox + Clone;

    /// Applies one event inside the transaction that also records it as processed.
    /// Events written to the outbox here are published after the commit.
    fn handle(
        &self,
        tx: &mut Tx<'_>,
        event: Self::Inbox,
        meta: EventMeta,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// When the bus stops: the consumer first (it finishes the batches in hand and takes
/// no more), the relay last (after the service's last requests committed their events,
/// it publishes what is left).
#[derive(Clone, Default)]
pub struct BusStop {
    pub consuming: CancellationToken,
    pub relaying: CancellationToken,
}

/// A running event bus; it stops when its [`BusStop`] tokens are cancelled.
pub struct EventBus {
    task: JoinHandle<()>,
    connected: watch::Receiver<bool>,
}

/// Unacknowledged messages the broker may hand this consumer at once: enough for
/// every worker to have a full batch in hand.
const PREFETCH: u16 = 256;
/// Batches applied at the same time. Messages about the same rental still apply one
/// at a time (see [`Session::apply`]).
const CONCURRENCY: usize = 8;
/// At most this many messages are applied in one transaction. A worker takes the
/// messages already delivered, without waiting for more: under a light load a batch is
/// one message, under a heavy one many messages share one commit (and its fsync).
const BATCH: usize = 64;
/// How often the dead-letter queue's depth is read for the `water_dead_letters` gauge.
const DEAD_LETTER_CHECK_EVERY: Duration = Duration::from_secs(10);

impl EventBus {
    /// Runs the bus of the handler's service: declares `topology` (every service's
    /// queues), relays this service's outbox from `database`, and consumes its inbox.
    pub fn start<H: EventHandler>(
        config: EventsConfig,
        topology: &'static [Subscription],
        database: Database,
        handler: H,
        stop: BusStop,
    ) -> Self {
        let service = <H::Inbox as Inbox>::SERVICE;
        let (connected_sender, connected) = watch::channel(false);
        let task = tokio::spawn(async move {
            let session = Session {
                config: &config,
                service,
                topology,
                database: &database,
                handler: &handler,
                connected: &connected_sender,
                database_outage: Mutex::new(Outage::new(format!("{service} consumer: the database"))),
                broker_outage: Mutex::new(Outage::new(format!("{service} event bus: the broker"))),
            };
            let mut backoff = Backoff::reconnect();
            loop {
                match session.run(&stop).await {
                    Ok(()) => break,
                    Err(error) => {
                        // A session that got connected earns a quick reconnect.
                        if *connected_sender.borrow() {
                            backoff.reset();
                        }
                        let _ = connected_sender.send(false);
                        session.broker_outage.lock().expect("outage lock").failed(&format!("{error:#}"));
                    }
                }
                if stop.relaying.is_cancelled() || !backoff.wait(&stop.relaying).await {
                    break;
                }
            }
            let _ = connected_sender.send(false);
        });
        Self { task, connected }
    }

    /// Whether the bus is connected (and its topology declared), as it changes.
    pub fn connection(&self) -> watch::Receiver<bool> {
        self.connected.clone()
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

struct Session<'a, H: EventHandler> {
    config: &'a EventsConfig,
    service: &'static str,
    topology: &'static [Subscription],
    database: &'a Database,
    handler: &'a H,
    connected: &'a watch::Sender<bool>,
    /// Shared by every worker, so an outage is logged once, not once per message.
    database_outage: Mutex<Outage>,
    broker_outage: Mutex<Outage>,
}

/// A message in hand: what arrived, and what it decoded to.
struct Message<I> {
    delivery: Delivery,
    envelope: Envelope,
    event: I,
    /// The W3C trace context it was published in.
    traceparent: Option<String>,
}

/// The `traceparent` header of a message, if the relay set one.
pub(crate) fn traceparent_of(delivery: &Delivery) -> Option<String> {
    let value = delivery.properties.headers().as_ref()?.inner().get("traceparent")?;
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

impl<H: EventHandler> Session<'_, H> {
    /// One connection's life: Ok when stopped, Err when the connection failed.
    async fn run(&self, stop: &BusStop) -> anyhow::Result<()> {
        let link = Link::open(self.config, self.service).await?;
        let result = self.run_on(&link, stop).await;
        link.close("shutting down").await;
        result
    }

    async fn run_on(&self, link: &Link, stop: &BusStop) -> anyhow::Result<()> {
        let setup = link.channel().await?;
        let own = self.topology.iter().find(|subscription| subscription.service == self.service);
        broker::declare_own(&setup, self.config, own).await?;
        let publisher = link.publisher_channel().await?;
        let consumer = link.channel().await?;
        let _ = self.connected.send(true);
        self.broker_outage.lock().expect("outage lock").recovered();
        tracing::debug!(service = self.service, "event bus connected");
        // Rows may have been committed while disconnected: look at once.
        self.database.events_committed().notify_one();

        let relaying = relay(self.service, self.database, &publisher, self.config, &stop.relaying);
        let consuming = async {
            self.consume(&consumer, &publisher, &stop.consuming).await?;
            // The consumer is done; the relay still has to flush what the last
            // requests committed: keep the session until it has.
            std::future::pending::<anyhow::Result<()>>().await
        };
        let watching = self.watch_dead_letters(&setup);
        tokio::select! {
            result = relaying => result,
            result = consuming => result,
            result = watching => result,
        }
    }

    async fn consume(&self, channel: &Channel, publisher: &Channel, stop: &CancellationToken) -> anyhow::Result<()> {
        let queue = self.config.queue(self.service);
        channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
        let tag = format!("{}-{}", self.service, Uuid::new_v4().simple());
        let deliveries = channel
            .basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut settled = deliveries
            .ready_chunks(BATCH)
            .map(|batch| self.settle(publisher, batch, stop))
            .buffer_unordered(CONCURRENCY);
        let mut cancelled = false;
        loop {
            tokio::select! {
                next = settled.next() => match next {
                    Some(Ok(())) => {}
                    Some(Err(error)) => return Err(error),
                    // After our cancel, the stream ends once every message in hand is
                    // settled: nothing is left unacknowledged.
                    None if cancelled => return Ok(()),
                    None => anyhow::bail!("the broker cancelled the consumer of {queue}"),
                },
                () = stop.cancelled(), if !cancelled => {
                    cancelled = true;
                    channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await?;
                }
            }
        }
    }

    /// Settles a batch of deliveries. The batch is applied in one transaction and
    /// acknowledged after its commit. If any message fails, that transaction is rolled
    /// back and the messages are settled one at a time, so one bad message cannot fail
    /// the others.
    async fn settle(
        &self,
        publisher: &Channel,
        batch: Vec<lapin::Result<Delivery>>,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut messages = Vec::with_capacity(batch.len());
        for delivery in batch {
            // A delivery error means the channel is gone: the session reconnects, and the
            // broker redelivers whatever this batch leaves unacknowledged.
            let delivery = delivery?;
            let decoded = serde_json::from_slice::<Envelope>(&delivery.data)
                .map_err(|error| HandlerError::Poison(format!("the message is not an event envelope: {error}")))
                .and_then(|envelope| Ok((H::Inbox::decode(&envelope)?, envelope)));
            match decoded {
                Ok((event, envelope)) => {
                    let traceparent = traceparent_of(&delivery);
                    messages.push(Message { delivery, envelope, event, traceparent })
                }
                Err(error) => self.dead_letter(publisher, &delivery, None, &error.to_string()).await?,
            }
        }
        if messages.len() > 1 {
            match self.apply(&messages).await {
                Ok(applied) => {
                    for message in &messages {
                        self.acknowledge(message, applied.contains(&message.envelope.id)).await?;
                    }
                    return Ok(());
                }
                Err(error) => {
                    tracing::debug!(service = self.service, %error, size = messages.len(), "batch failed; settling its messages one at a time");
                }
            }
        }
        for message in messages {
            self.settle_one(publisher, message, stop).await?;
        }
        Ok(())
    }

    async fn settle_one(
        &self,
        publisher: &Channel,
        message: Message<H::Inbox>,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut attempts = 0;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let error = match self.apply(std::slice::from_ref(&message)).await {
                Ok(applied) => {
                    self.database_outage.lock().expect("outage lock").recovered();
                    return self.acknowledge(&message, applied.contains(&message.envelope.id)).await;
                }
                Err(HandlerError::Poison(reason)) => {
                    return self.dead_letter(publisher, &message.delivery, Some(&message.envelope), &reason).await;
                }
                Err(error) => error,
            };
            // Our own infrastructure, or this message? If the database does not answer,
            // the message is not at fault: hold it, and spend no attempt.
            let outage = matches!(error, HandlerError::Unavailable(_)) || !self.database.is_reachable().await;
            if outage {
                metrics().events_retried.with_label_values(&[self.service, "infrastructure"]).inc();
                self.database_outage.lock().expect("outage lock").failed(&error);
                if !backoff.wait(stop).await {
                    // Stopping in the middle of an outage: leave the message unacknowledged;
                    // the broker hands it to another replica, or to this one after a restart.
                    return Ok(());
                }
                continue;
            }
            attempts += 1;
            metrics().events_retried.with_label_values(&[self.service, "transient"]).inc();
            if attempts >= self.config.handler_attempts {
                let reason = format!("failed {attempts} times; last error: {error}");
                return self.dead_letter(publisher, &message.delivery, Some(&message.envelope), &reason).await;
            }
            tracing::warn!(service = self.service, id = %message.envelope.id, event = %message.envelope.event_type, %error, attempts, "message failed; trying again");
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    async fn acknowledge(&self, message: &Message<H::Inbox>, applied_now: bool) -> anyhow::Result<()> {
        message.delivery.ack(BasicAckOptions::default()).await?;
        let event = message.event.event_type();
        let outcome = if applied_now { "applied" } else { "duplicate" };
        metrics().events_consumed.with_label_values(&[self.service, event, outcome]).inc();
        if applied_now {
            let lag = (Utc::now() - message.envelope.occurred_at).to_std().unwrap_or_default();
            metrics().consumer_lag.with_label_values(&[self.service, event]).observe(lag.as_secs_f64());
        } else {
            tracing::debug!(service = self.service, id = %message.envelope.id, "duplicate message ignored");
        }
        Ok(())
    }

    /// Moves a message to this service's dead-letter queue, with why, then acknowledges
    /// it. The copy is confirmed by the broker before the original is acknowledged, so
    /// a failure in between leaves a duplicate dead letter at worst, never none.
    async fn dead_letter(
        &self,
        publisher: &Channel,
        delivery: &Delivery,
        envelope: Option<&Envelope>,
        reason: &str,
    ) -> anyhow::Result<()> {
        let event = envelope.map_or("unreadable", |envelope| envelope.event_type.as_str());
        let id = envelope.map(|envelope| envelope.id.to_string()).unwrap_or_else(|| "unknown".into());
        tracing::error!(service = self.service, %id, %event, %reason, "poison message: dead-lettered");
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        let text = |value: &str| AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()));
        headers.insert("x-poison-reason".into(), text(reason));
        headers.insert("x-poison-service".into(), text(self.service));
        headers.insert("x-poison-at".into(), text(&Utc::now().to_rfc3339()));
        headers.insert("x-original-routing-key".into(), text(delivery.routing_key.as_str()));
        let properties = delivery.properties.clone().with_headers(headers).with_delivery_mode(2);
        let dead_letters = self.config.dead_letter_queue(self.service);
        let confirmation = publisher
            .basic_publish(
                self.config.dead_letter_exchange(self.service).as_str().into(),
                "".into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                &delivery.data,
                properties,
            )
            .await?
            .await?;
        if !matches!(confirmation, Confirmation::Ack(None)) {
            anyhow::bail!("the dead-letter queue {dead_letters} refused a message: {confirmation:?}");
        }
        delivery.ack(BasicAckOptions::default()).await?;
        metrics().events_dead_lettered.with_label_values(&[self.service, event]).inc();
        Ok(())
    }

    /// Applies `messages`, in their order, in one transaction: returns the ids applied
    /// now; the others had been applied before (or are a second copy in this batch).
    ///
    /// Events about the same rental apply one at a time, across concurrent workers and
    /// replicas alike: the transaction first takes an advisory lock on each ordering key
    /// of the batch, so a handler always sees the effect of every earlier event,
    /// committed or applied before it in the same batch. The locks are taken in sorted
    /// order, so two batches that share rentals never wait for each other in a cycle.
    /// Row locks a handler takes (a product's stock, say) are held until the batch
    /// commits; should two batches take them in opposite orders, PostgreSQL aborts one as
    /// a deadlock and its messages are settled again one at a time.
    async fn apply(&self, messages: &[Message<H::Inbox>]) -> Result<HashSet<Uuid>, HandlerError> {
        let mut ordering_keys: Vec<String> =
            messages.iter().filter_map(|message| message.event.ordering_key()).map(|key| key.to_string()).collect();
        ordering_keys.sort_unstable();
        ordering_keys.dedup();
        let claims: Vec<(Uuid, &str)> =
            messages.iter().map(|message| (message.envelope.id, message.event.event_type())).collect();
        self.database
            .transaction(async |tx: &mut Tx<'_>| {
                if !ordering_keys.is_empty() {
                    // unnest yields the keys in array order, so the locks follow it.
                    diesel_async::RunQueryDsl::execute(
                        diesel::sql_query(
                            "SELECT pg_advisory_xact_lock(hashtextextended(key, 1)) FROM unnest($1) AS key",
                        )
                        .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&ordering_keys),
                        &mut **tx,
                    )
                    .await?;
                }
                let mut claimed = inbox::claim_all(tx, &claims).await?;
                let mut applied = HashSet::with_capacity(claimed.len());
                for message in messages {
                    // `remove`, so a second copy of a message in the batch is skipped.
                    if claimed.remove(&message.envelope.id) {
                        // Each message continues the trace it was published in; events the
                        // handler writes continue it further.
                        let span = tracing::info_span!(
                            "consume event",
                            otel.kind = "consumer",
                            service = self.service,
                            event = message.event.event_type()
                        );
                        subgraph_kit::telemetry::continue_trace(&span, message.traceparent.as_deref());
                        let meta = EventMeta::from(&message.envelope);
                        self.handler.handle(tx, message.event.clone(), meta).instrument(span).await?;
                        applied.insert(message.envelope.id);
                    }
                }
                Ok(applied)
            })
            .await
    }

    /// Keeps the `water_dead_letters` gauge current. Ends only with an error.
    async fn watch_dead_letters(&self, channel: &Channel) -> anyhow::Result<()> {
        let queue = self.config.dead_letter_queue(self.service);
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        loop {
            let declared = channel.queue_declare(queue.as_str().into(), passive, FieldTable::default()).await?;
            metrics().dead_letters.with_label_values(&[self.service]).set(i64::from(declared.message_count()));
            tokio::time::sleep(DEAD_LETTER_CHECK_EVERY).await;
        }
    }
}
