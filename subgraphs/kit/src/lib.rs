//! Plumbing shared by every subgraph, written once: configuration, logs and traces,
//! metrics, the PostgreSQL pool with migrations and transactions, error codes and
//! identity in GraphQL, domain building blocks, pagination, batching, live streams, the
//! HTTP and WebSocket server with probes, graceful shutdown, and the skeleton each
//! service's start-up is built on.
//!
//! A subgraph crate supplies only its domain, storage, use cases, GraphQL types and
//! event dispatch; everything that would otherwise be copied four times lives here. Two
//! neighbours complete it: `identity` (tokens and error codes, shared with the router)
//! and `event-bus` (outbox, relay, consumer, inbox, dead letters), which plugs into
//! [`Foundation`].
//!
//! Dependencies point one way: `config` and `error` are leaves; `db` builds on them;
//! `server` and `app` on everything below.

pub mod app;
pub mod backoff;
pub mod batch;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod live;
pub mod metrics;
pub mod postgres_tls;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

#[cfg(feature = "testing")]
pub mod testing;

pub use app::{Foundation, RunningService};
pub use config::ServiceConfig;
pub use db::{Database, Tx};
pub use error::{ApiError, ApiResult, ErrorCode};
pub use identity::{Identity, Role, TokenIssuer, TokenVerifier};
