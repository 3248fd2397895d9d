//! Plumbing shared by every subgraph, written once: configuration, logs and traces,
//! metrics, the PostgreSQL pool with migrations and transactions, identity (JWT),
//! error codes, domain building blocks, pagination, batching, the event bus (outbox,
//! inbox, topology, dead letters), the HTTP and WebSocket server with probes, graceful
//! shutdown, and the skeleton each service's start-up is built on.
//!
//! A subgraph crate supplies only its domain, storage, use cases, GraphQL types and
//! event dispatch; everything that would otherwise be copied four times lives here.
//!
//! Dependencies point one way: `config` and `error` are leaves; `db` builds on them;
//! `events` on `db`; `server` and `app` on everything below.

pub mod app;
pub mod auth;
pub mod backoff;
pub mod batch;
pub mod breaker;
pub mod card;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod graphql;
pub mod metrics;
pub mod server;
pub mod shutdown;
pub mod telemetry;

#[cfg(feature = "testing")]
pub mod testing;

pub use app::{Foundation, RunningService};
pub use auth::{Identity, Role, TokenIssuer, TokenVerifier};
pub use config::ServiceConfig;
pub use db::{Database, Tx};
pub use error::{ApiError, ApiResult, ErrorCode};

/// For the macros: paths they expand to, whatever the calling crate depends on.
#[doc(hidden)]
pub mod reexport {
    pub use uuid::Uuid;
}
