//! Plumbing shared by every subgraph, written once: configuration, tracing, the
//! PostgreSQL pool and migrations, identity (JWT), error codes, pagination, the HTTP and
//! WebSocket server with health probes, and graceful shutdown.
//!
//! A subgraph crate supplies only its domain, storage, GraphQL types and event handlers;
//! everything that would otherwise be copied four times lives here.

pub mod auth;
pub mod batch;
pub mod breaker;
pub mod card;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod graphql;
pub mod server;
pub mod shutdown;
pub mod telemetry;

#[cfg(feature = "testing")]
pub mod testing;

pub use auth::{Identity, Role, TokenIssuer, TokenVerifier};
pub use config::ServiceConfig;
pub use db::Database;
pub use error::{ApiError, ErrorCode};
pub use server::RunningService;
