//! Hearing every event of some types on this instance, for live streams: each instance
//! binds an exclusive, server-named queue of its own, so a change committed through any
//! instance reaches the subscribers of all of them. Nothing here is acknowledged or
//! stored: a listener only learns that something changed, and reads the state itself.

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use subgraph_kit::backoff::{Backoff, Outage};
use subgraph_kit::config::EventsConfig;
use tokio_util::sync::CancellationToken;

use crate::broker::{self, Link};
use crate::bus::traceparent_of;
use crate::{Envelope, Inbox};

/// What a listener hears.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard<I> {
    /// An event of the inbox. The handler runs inside a span that continues the
    /// event's trace, so what it does (a nudge) continues it further.
    Event(I),
    /// The listener (re)connected: events may have been missed while it was not
    /// listening, so whatever depends on them should look again.
    Connected,
}

/// Listens to every event type of inbox `I` until `stopping`, reconnecting with
/// backoff; an outage is logged when it starts and when it ends. `name` names the
/// broker connection (`<namespace> <name>`).
pub async fn listen_until<I: Inbox>(
    config: EventsConfig,
    name: &'static str,
    stopping: CancellationToken,
    mut heard: impl FnMut(Heard<I>) + Send,
) {
    let mut outage = Outage::new(format!("{name} listener: the broker"));
    let mut backoff = Backoff::reconnect();
    while !stopping.is_cancelled() {
        tokio::select! {
            result = listen(&config, name, &mut outage, &mut backoff, &mut heard) => {
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

async fn listen<I: Inbox>(
    config: &EventsConfig,
    name: &str,
    outage: &mut Outage,
    backoff: &mut Backoff,
    heard: &mut (impl FnMut(Heard<I>) + Send),
) -> anyhow::Result<()> {
    let link = Link::open(config, name).await?;
    let result = async {
        let channel = link.channel().await?;
        broker::declare_own(&channel, config, None).await?;
        // A server-named, exclusive queue: it lives as long as this connection, and
        // every instance has its own, so each one hears every change.
        let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        let queue = channel.queue_declare("".into(), options, FieldTable::default()).await?;
        for event_type in I::EVENT_TYPES {
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
        let mut deliveries =
            channel.basic_consume(queue.name().clone(), "".into(), consume, FieldTable::default()).await?;
        outage.recovered();
        backoff.reset();
        heard(Heard::Connected);
        while let Some(delivery) = deliveries.next().await {
            let delivery = delivery?;
            let decoded = serde_json::from_slice::<Envelope>(&delivery.data)
                .map_err(|error| error.to_string())
                .and_then(|envelope| I::decode(&envelope).map_err(|error| error.to_string()));
            match decoded {
                Ok(event) => {
                    let span = tracing::info_span!("live change", otel.kind = "consumer", event = event.event_type());
                    subgraph_kit::telemetry::continue_trace(&span, traceparent_of(&delivery).as_deref());
                    span.in_scope(|| heard(Heard::Event(event)));
                }
                Err(error) => tracing::warn!(listener = name, %error, "ignoring an event this listener cannot read"),
            }
        }
        anyhow::bail!("the broker closed the {name} listener's consumer")
    }
    .await;
    link.close("shutting down").await;
    result
}
