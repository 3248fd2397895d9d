//! Payment: charges and refunds. A full card number never reaches a table, a log line
//! or an event; only its last four digits do.
//!
//! `domain` holds the payment state machine, `storage` the SQL, `graphql` the schema.

pub mod charges;
pub mod domain;
pub mod events;
pub mod graphql;
pub mod storage;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use subgraph_kit::{RunningService, ServiceConfig};
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "payment";
pub const DEFAULT_PORT: u16 = 4003;
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/payment");
/// Where the migrations live, for tests that build a template database from them.
pub const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/payment");

pub use graphql::{PaymentSchema, schema};

/// Creates and migrates the database if needed, then serves the subgraph until
/// `shutdown` is cancelled.
pub async fn start(config: ServiceConfig, shutdown: CancellationToken) -> anyhow::Result<RunningService> {
    let handler = std::sync::Arc::new(events::PaymentEvents);
    subgraph_kit::server::start_subgraph(&config, MIGRATIONS, Some(handler), schema, shutdown).await
}
