//! Events between services over RabbitMQ, without losing or doubling any.
//!
//! A service plugs the bus into its start-up with [`ConsumeEvents::consume`]; a service
//! that streams changes live hears every instance's events with [`listen_until`].
//!
//! - An event is a typed payload ([`Event`]: its routing key, version and time), defined
//!   once in the `contracts` crate. What a service consumes is one enum there
//!   ([`Inbox`], declared with [`inbox!`]); the broker topology is derived from those
//!   enums, so there is no second list to keep in step.
//! - A service writes an event into its `outbox` table in the same transaction as the
//!   state change it describes ([`outbox::enqueue`], which takes the open transaction).
//! - The relay publishes outbox rows as persistent, mandatory messages and waits for the
//!   broker's confirmation; only a clean ack marks a row published. A crash in between
//!   publishes the row again later, which consumers absorb.
//! - A consumer decodes each message into its inbox enum (a message it cannot decode,
//!   or of a version it does not read, is poison), applies it in one transaction
//!   together with an inbox row keyed by the message id ([`inbox::claim_all`]), and
//!   acknowledges only after the commit. A message seen before is a no-op.
//! - Poison goes to the service's dead-letter queue with its reason. A failure of the
//!   service's own infrastructure (database unreachable) never spends a delivery
//!   attempt: the consumer holds the message and backs off ([`bus`]).
//! - Topology is declared at every (re)connection, idempotently; a lost connection is
//!   re-established with backoff ([`bus::EventBus`]).

pub mod accounts;
pub mod broker;
pub mod bus;
pub mod dead_letters;
pub mod inbox;
pub mod listen;
mod metrics;
pub mod outbox;
mod service;
#[cfg(feature = "testing")]
pub mod testing;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use bus::{BusStop, EventBus, EventHandler};
pub use listen::{Heard, listen_until};
pub use service::ConsumeEvents;

/// For the macros: paths they expand to, whatever the calling crate depends on.
#[doc(hidden)]
pub mod reexport {
    pub use uuid::Uuid;
}

/// One kind of event: a payload struct with its routing key and schema version.
///
/// The JSON of a payload changes only together with `VERSION`, and a consumer reads
/// only the version it knows: a message of another version is poison, visible in the
/// dead-letter queue, never silently misread.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The routing key, e.g. `rental.accepted`.
    const TYPE: &'static str;
    const VERSION: i32;
    /// The one service that publishes it (the envelope's `source`).
    const PRODUCER: &'static str;

    /// When the step happened in the producer's own records (every payload's `at`).
    fn at(&self) -> DateTime<Utc>;

    /// Events with the same key are applied one at a time, in every consumer and
    /// replica: the rental they are about.
    fn ordering_key(&self) -> Option<Uuid>;
}

/// Everything one service consumes, as an enum with one variant per event; handlers
/// `match` on it exhaustively. Declare one with [`inbox!`].
pub trait Inbox: Sized + Send + Sync + 'static {
    /// The consuming service; its queue is `<namespace>.<SERVICE>`.
    const SERVICE: &'static str;
    /// The routing keys its queue is bound to.
    const EVENT_TYPES: &'static [&'static str];

    fn decode(envelope: &Envelope) -> Result<Self, HandlerError>;
    fn ordering_key(&self) -> Option<Uuid>;
    fn event_type(&self) -> &'static str;
}

/// One consuming service and the routing keys its queue receives: the broker
/// topology, one entry per [`Inbox`].
#[derive(Debug, Clone, Copy)]
pub struct Subscription {
    pub service: &'static str,
    pub event_types: &'static [&'static str],
}

impl Subscription {
    pub const fn of<I: Inbox>() -> Self {
        Self { service: I::SERVICE, event_types: I::EVENT_TYPES }
    }
}

/// Declares a service's [`Inbox`]:
///
/// ```ignore
/// event_bus::inbox! {
///     /// What delivery consumes.
///     pub enum ForDelivery for "delivery" {
///         RentalAccepted(RentalAccepted),
///         RentalCancelled(RentalCancelled),
///     }
/// }
/// ```
#[macro_export]
macro_rules! inbox {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident for $service:literal {
            $( $(#[$variant_meta:meta])* $variant:ident($event:ty) ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis enum $name {
            $( $(#[$variant_meta])* $variant($event) ),+
        }

        impl $crate::Inbox for $name {
            const SERVICE: &'static str = $service;
            const EVENT_TYPES: &'static [&'static str] = &[$(<$event as $crate::Event>::TYPE),+];

            fn decode(envelope: &$crate::Envelope) -> Result<Self, $crate::HandlerError> {
                $(
                    if envelope.event_type == <$event as $crate::Event>::TYPE {
                        return envelope.payload::<$event>().map(Self::$variant);
                    }
                )+
                Err($crate::HandlerError::Poison(format!(
                    "{} does not consume {} events",
                    $service, envelope.event_type
                )))
            }

            fn ordering_key(&self) -> Option<$crate::reexport::Uuid> {
                match self {
                    $( Self::$variant(event) => $crate::Event::ordering_key(event) ),+
                }
            }

            fn event_type(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => <$event as $crate::Event>::TYPE ),+
                }
            }
        }
    };
}

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
    /// When the step happened (the payload's `at`).
    pub occurred_at: DateTime<Utc>,
    pub data: serde_json::Value,
}

impl Envelope {
    /// Wraps `event` with a fresh id.
    pub fn wrap<E: Event>(event: &E) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type: E::TYPE.to_owned(),
            version: E::VERSION,
            source: E::PRODUCER.to_owned(),
            occurred_at: event.at(),
            data: serde_json::to_value(event).expect("event payloads serialize"),
        }
    }

    /// The payload as `E`: poison unless it is `E`'s type and version and fits.
    pub fn payload<E: Event>(&self) -> Result<E, HandlerError> {
        if self.event_type != E::TYPE {
            return Err(HandlerError::Poison(format!("expected a {} event, got {}", E::TYPE, self.event_type)));
        }
        if self.version != E::VERSION {
            return Err(HandlerError::Poison(format!(
                "{} version {} is not understood here (this service reads version {})",
                self.event_type,
                self.version,
                E::VERSION
            )));
        }
        serde_json::from_value(self.data.clone()).map_err(|error| {
            HandlerError::Poison(format!("{} v{} payload does not fit: {error}", self.event_type, self.version))
        })
    }
}

/// Why a message could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// It will never apply (malformed, an unknown version, or it contradicts what this
    /// service knows): it goes to the dead-letter queue at once, for a person to look at.
    #[error("poison message: {0}")]
    Poison(String),
    /// This service's own infrastructure failed (the database is unreachable): the
    /// message is held and applied once it is back. Never spends a delivery attempt.
    #[error("infrastructure unavailable: {0}")]
    Unavailable(String),
    /// It failed for another reason that may pass (a deadlock, a conflict): tried again
    /// a few times in the consumer, then dead-lettered.
    #[error("transient failure: {0}")]
    Transient(String),
}

impl From<diesel::result::Error> for HandlerError {
    fn from(error: diesel::result::Error) -> Self {
        if subgraph_kit::error::is_outage(&error) {
            HandlerError::Unavailable(format!("database: {error}"))
        } else {
            HandlerError::Transient(format!("database: {error}"))
        }
    }
}

impl From<subgraph_kit::ApiError> for HandlerError {
    /// Our unavailability is an outage; our own fault may pass; a refusal the service
    /// would give a client (not found, conflict, bad input) means the event contradicts
    /// what it knows.
    fn from(error: subgraph_kit::ApiError) -> Self {
        use subgraph_kit::ErrorCode::*;
        match error.code {
            ServiceUnavailable => HandlerError::Unavailable(error.message),
            Internal => HandlerError::Transient(error.message),
            _ => HandlerError::Poison(format!("{}: {}", error.code, error.message)),
        }
    }
}

impl From<subgraph_kit::domain::UnknownValue> for HandlerError {
    /// A stored value this version cannot read: applying anything on top would guess.
    fn from(unknown: subgraph_kit::domain::UnknownValue) -> Self {
        HandlerError::Poison(unknown.to_string())
    }
}

/// What a handler may want to know about a message besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventMeta {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
}

impl From<&Envelope> for EventMeta {
    fn from(envelope: &Envelope) -> Self {
        Self { id: envelope.id, occurred_at: envelope.occurred_at }
    }
}
