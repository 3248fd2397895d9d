//! Inspecting and replaying a service's dead letters (the `dead-letters` command).
//!
//! A dead letter is a message the service gave up on: poison it dead-lettered itself
//! (with an `x-poison-reason` header), or one the broker dead-lettered past the queue's
//! delivery limit (`x-death`). Replaying publishes it again to that service's own queue
//! only, confirmed, and then removes it from the dead-letter queue. Every consumer
//! deduplicates by the envelope id and a dead-lettered message was never applied, so a
//! replayed message has exactly one effect, however often it is replayed.

use lapin::Confirmation;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use uuid::Uuid;

use crate::Envelope;
use crate::broker::Link;
use subgraph_kit::config::EventsConfig;

/// One dead letter, as an operator reads it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The envelope's id, when the body is an envelope.
    pub id: Option<Uuid>,
    pub event_type: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// When, if known.
    pub at: Option<String>,
    /// The payload's identifying fields (ids and status), never an address or a name.
    pub summary: String,
}

/// Which dead letters to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    All,
    One(Uuid),
}

/// Every dead letter of `service`, oldest first. The queue is left as it was.
pub async fn list(config: &EventsConfig, service: &str) -> anyhow::Result<Vec<DeadLetter>> {
    let link = Link::open(config, &format!("{service}-dead-letters")).await?;
    let channel = link.channel().await?;
    let mut letters = Vec::new();
    let queue = config.dead_letter_queue(service);
    // Taken without acknowledging, then handed back when the channel closes.
    while let Some(message) = channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false }).await? {
        letters.push(describe(&message.delivery.data, message.delivery.properties.headers().as_ref()));
    }
    link.close("done").await;
    Ok(letters)
}

/// Replays the selected dead letters of `service` into its queue; returns how many.
pub async fn replay(config: &EventsConfig, service: &str, selection: Selection) -> anyhow::Result<usize> {
    let link = Link::open(config, &format!("{service}-dead-letters")).await?;
    let channel = link.publisher_channel().await?;
    let dead_letters = config.dead_letter_queue(service);
    let target = config.queue(service);
    let mut replayed = 0;
    while let Some(message) = channel.basic_get(dead_letters.as_str().into(), BasicGetOptions { no_ack: false }).await?
    {
        let delivery = message.delivery;
        let letter = describe(&delivery.data, delivery.properties.headers().as_ref());
        let chosen = match selection {
            Selection::All => true,
            Selection::One(id) => letter.id == Some(id),
        };
        if !chosen {
            continue;
        }
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert("x-replayed-at".into(), text(&chrono::Utc::now().to_rfc3339()));
        let properties = delivery.properties.clone().with_headers(headers);
        let confirmation = channel
            .basic_publish(
                "".into(),
                target.as_str().into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                &delivery.data,
                properties,
            )
            .await?
            .await?;
        if !matches!(confirmation, Confirmation::Ack(None)) {
            anyhow::bail!("{target} did not take the replayed message ({confirmation:?}); it stays a dead letter");
        }
        delivery.ack(BasicAckOptions::default()).await?;
        replayed += 1;
        if matches!(selection, Selection::One(_)) {
            break;
        }
    }
    link.close("done").await;
    Ok(replayed)
}

fn describe(body: &[u8], headers: Option<&FieldTable>) -> DeadLetter {
    let envelope = serde_json::from_slice::<Envelope>(body).ok();
    let header = |name: &str| headers.and_then(|headers| headers.inner().get(name)).and_then(as_text);
    let reason = header("x-poison-reason").or_else(|| broker_reason(headers)).unwrap_or_else(|| "unknown".into());
    DeadLetter {
        id: envelope.as_ref().map(|envelope| envelope.id),
        event_type: envelope
            .as_ref()
            .map_or_else(|| "(not an envelope)".into(), |envelope| envelope.event_type.clone()),
        reason,
        at: header("x-poison-at"),
        summary: envelope.as_ref().map(|envelope| summary(&envelope.data)).unwrap_or_default(),
    }
}

/// The ids and status in a payload: enough to find the thing it is about, nothing
/// personal (no address, no name).
fn summary(data: &serde_json::Value) -> String {
    let Some(fields) = data.as_object() else { return String::new() };
    fields
        .iter()
        .filter(|(key, _)| key.ends_with("Id") || *key == "status" || *key == "at")
        .map(|(key, value)| format!("{key}={}", value.as_str().map_or_else(|| value.to_string(), str::to_owned)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The reason the broker gave (`x-death`), e.g. `delivery_limit` or `rejected`.
fn broker_reason(headers: Option<&FieldTable>) -> Option<String> {
    let deaths = headers?.inner().get("x-death")?;
    let AMQPValue::FieldArray(deaths) = deaths else { return None };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else { return None };
    let reason = first.inner().get("reason").and_then(as_text)?;
    let queue = first.inner().get("queue").and_then(as_text).unwrap_or_default();
    Some(format!("dead-lettered by the broker: {reason} (from {queue})"))
}

fn as_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_shows_ids_and_status_but_nothing_personal() {
        let data = serde_json::json!({
            "rentalId": "r-1", "deliveryAddress": "12 Teheran-ro", "status": "SHIPPING", "name": "Kim",
        });
        assert_eq!(summary(&data), "rentalId=r-1 status=SHIPPING");
    }
}
