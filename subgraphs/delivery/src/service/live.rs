//! Live delivery status for subscribers, whichever instance they are connected to.
//!
//! Every delivery instance listens to the delivery events on the broker through an
//! exclusive queue of its own, so a change committed by any instance reaches the
//! subscribers of all of them. An event only says "rental R changed": each stream then
//! reads the delivery's current row and sends it if its status is further along than
//! the last one it sent. The state machine only moves forward, so this can never send
//! an older status after a newer one, and duplicated or reordered events change
//! nothing. After a broker reconnection every stream re-reads, so changes missed
//! while disconnected are not lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use contracts::DeliveryNews;
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use subgraph_kit::backoff::{Backoff, Outage};
use subgraph_kit::config::EventsConfig;
use subgraph_kit::events::{Envelope, Inbox, broker};
use subgraph_kit::metrics::metrics;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::DeliveryStatus;

/// A nudge to re-read one rental's delivery, with the trace of the change behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nudge {
    pub traceparent: Option<String>,
}

/// Per-rental channels that the broker listener nudges.
#[derive(Default)]
pub struct LiveHub {
    channels: Mutex<HashMap<Uuid, broadcast::Sender<Nudge>>>,
}

impl LiveHub {
    /// Listens for changes of `rental_id`; call before reading the current state, so
    /// no change can fall between the read and the listening.
    pub fn listen(self: &Arc<Self>, rental_id: Uuid) -> Listener {
        let mut channels = self.channels.lock().expect("hub lock poisoned");
        let sender = channels.entry(rental_id).or_insert_with(|| broadcast::channel(16).0);
        Listener { receiver: sender.subscribe(), rental_id, hub: self.clone() }
    }

    fn nudge(&self, rental_id: Uuid, traceparent: Option<String>) {
        if let Some(sender) = self.channels.lock().expect("hub lock poisoned").get(&rental_id) {
            let _ = sender.send(Nudge { traceparent });
        }
    }

    fn nudge_everyone(&self) {
        for sender in self.channels.lock().expect("hub lock poisoned").values() {
            let _ = sender.send(Nudge { traceparent: None });
        }
    }

    /// Rentals with at least one listener.
    pub fn watched(&self) -> usize {
        self.channels.lock().expect("hub lock poisoned").len()
    }
}

/// One subscriber's end; dropping it frees the rental's channel when it was the last.
pub struct Listener {
    receiver: broadcast::Receiver<Nudge>,
    rental_id: Uuid,
    hub: Arc<LiveHub>,
}

impl Listener {
    /// Waits for the next nudge; `None` once the hub is gone. A subscriber that fell
    /// behind (many nudges at once) just re-reads once: a nudge only says "look again".
    pub async fn changed(&mut self) -> Option<Nudge> {
        match self.receiver.recv().await {
            Ok(nudge) => Some(nudge),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Nudge { traceparent: None }),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut channels = self.hub.channels.lock().expect("hub lock poisoned");
        if channels.get(&self.rental_id).is_some_and(|sender| sender.receiver_count() <= 1) {
            channels.remove(&self.rental_id);
        }
    }
}

/// Counts an open subscription stream for as long as it lives (`open_streams` here,
/// and the `water_live_subscriptions` metric).
pub struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    pub fn new(open_streams: Arc<AtomicUsize>) -> Self {
        open_streams.fetch_add(1, Ordering::Relaxed);
        metrics().live_subscriptions.with_label_values(&[crate::SERVICE]).inc();
        Self(open_streams)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        metrics().live_subscriptions.with_label_values(&[crate::SERVICE]).dec();
    }
}

/// How far along a status is; a stream only ever sends increasing ranks.
pub fn rank(status: DeliveryStatus) -> u8 {
    match status {
        DeliveryStatus::Requested => 1,
        DeliveryStatus::Shipping => 2,
        DeliveryStatus::Delivered | DeliveryStatus::Cancelled => 3,
    }
}

/// Keeps this instance's broker listener running until `stopping`, reconnecting with
/// backoff; an outage is logged when it starts and when it ends.
pub async fn listen_until(hub: Arc<LiveHub>, config: EventsConfig, stopping: CancellationToken) {
    let mut outage = Outage::new("delivery live status listener: the broker");
    let mut backoff = Backoff::reconnect();
    while !stopping.is_cancelled() {
        tokio::select! {
            result = listen(&hub, &config, &mut outage, &mut backoff) => {
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

async fn listen(hub: &LiveHub, config: &EventsConfig, outage: &mut Outage, backoff: &mut Backoff) -> anyhow::Result<()> {
    let connection = broker::connect(config, "delivery-live").await?;
    let channel = connection.create_channel().await?;
    broker::declare(&channel, config, &[]).await?;
    // A server-named, exclusive queue: it lives as long as this connection, and every
    // instance has its own, so each one hears every change.
    let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    let queue = channel.queue_declare("".into(), options, FieldTable::default()).await?;
    for event_type in DeliveryNews::EVENT_TYPES {
        channel
            .queue_bind(
                queue.name().clone(),
                config.exchange().as_str().into(),
                (*event_type).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    let consume = BasicConsumeOptions { no_ack: true, exclusive: true, ..Default::default() };
    let mut deliveries = channel.basic_consume(queue.name().clone(), "".into(), consume, FieldTable::default()).await?;
    outage.recovered();
    backoff.reset();
    // Changes made while this instance was not listening are picked up by a re-read.
    hub.nudge_everyone();
    while let Some(delivery) = deliveries.next().await {
        let delivery = delivery?;
        let news = serde_json::from_slice::<Envelope>(&delivery.data)
            .map_err(|error| error.to_string())
            .and_then(|envelope| DeliveryNews::decode(&envelope).map_err(|error| error.to_string()));
        match news {
            Ok(news) => {
                // The nudge continues the trace of the change: publish, then this.
                let span = tracing::info_span!("live status change", otel.kind = "consumer", event = news.event_type());
                let traceparent = delivery.properties.headers().as_ref().and_then(|headers| {
                    match headers.inner().get("traceparent")? {
                        lapin::types::AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
                        _ => None,
                    }
                });
                subgraph_kit::telemetry::continue_trace(&span, traceparent.as_deref());
                span.in_scope(|| hub.nudge(news.rental_id(), subgraph_kit::telemetry::current_traceparent()));
            }
            Err(error) => tracing::warn!(%error, "ignoring a delivery event this listener cannot read"),
        }
    }
    anyhow::bail!("the broker closed the live status consumer")
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

    #[tokio::test]
    async fn the_last_listener_frees_the_channel() {
        let hub = Arc::new(LiveHub::default());
        let rental = Uuid::now_v7();
        let mut first = hub.listen(rental);
        let second = hub.listen(rental);
        assert_eq!(hub.watched(), 1);
        hub.nudge(rental, None);
        assert!(first.changed().await.is_some());
        drop(second);
        assert_eq!(hub.watched(), 1);
        drop(first);
        assert_eq!(hub.watched(), 0);
    }
}
