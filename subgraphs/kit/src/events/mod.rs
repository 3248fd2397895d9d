//! Events between services over RabbitMQ, without losing or doubling any.
//!
//! - A service writes an event into its `outbox` table in the same transaction as the
//!   state change it describes ([`outbox::enqueue`]).
//! - The relay publishes outbox rows as persistent, mandatory messages and waits for the
//!   broker's confirmation; only a clean ack marks a row published. A crash in between
//!   publishes the row again later, which consumers absorb.
//! - A consumer applies each message in one transaction together with an inbox row
//!   keyed by the message id ([`inbox::claim_all`]); a message seen before is a no-op. It
//!   acknowledges only after the commit.
//! - Queues are durable quorum queues with a delivery limit; a message that cannot be
//!   applied (malformed, or failing again and again) goes to the service's dead-letter
//!   queue and the consumer moves on.
//! - Topology is declared at every (re)connection, idempotently; a lost connection is
//!   re-established with backoff ([`bus::EventBus`]).

pub mod broker;
pub mod bus;
pub mod catalog;
pub mod inbox;
pub mod outbox;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use bus::{EventBus, EventHandler, HandlerError};

/// What travels in a message body: the event and what is needed to process it once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Unique per event; also the AMQP message id and the inbox key.
    pub id: Uuid,
    /// The event's name, also its routing key, e.g. `rental.accepted`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload's schema version.
    pub version: i32,
    /// The service that produced it.
    pub source: String,
    pub occurred_at: DateTime<Utc>,
    pub data: serde_json::Value,
}

impl Envelope {
    /// The payload as the consumer's type; a payload that does not fit is poison.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_value(self.data.clone()).map_err(|error| {
            HandlerError::Poison(format!("{} v{} payload does not fit: {error}", self.event_type, self.version))
        })
    }
}

/// Where the broker is and which names this deployment uses.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub amqp_url: String,
    /// Prefix of every exchange and queue name; tests use a fresh one each, so they
    /// share nothing.
    pub namespace: String,
    /// How often a message that keeps failing is retried before it is dead-lettered.
    pub delivery_limit: i64,
}

pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

impl EventsConfig {
    pub fn from_env() -> Self {
        Self {
            amqp_url: crate::config::env_or("AMQP_URL", DEFAULT_AMQP_URL),
            namespace: crate::config::env_or("EVENTS_NAMESPACE", "water"),
            delivery_limit: 10,
        }
    }

    /// The topic exchange every service publishes to.
    pub fn exchange(&self) -> String {
        format!("{}.events", self.namespace)
    }

    /// The queue a service consumes from.
    pub fn queue(&self, service: &str) -> String {
        format!("{}.{service}", self.namespace)
    }

    /// Where a service's undeliverable messages end up, for an operator to inspect.
    pub fn dead_letter_queue(&self, service: &str) -> String {
        format!("{}.{service}.dead", self.namespace)
    }
}
