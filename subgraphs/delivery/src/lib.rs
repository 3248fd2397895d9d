//! Delivery: getting the dispenser to the customer, and its live status.
//!
//! `domain` holds the delivery state machine, `storage` the SQL, `graphql` the schema.

pub mod domain;
pub mod events;
pub mod graphql;
pub mod shipping;
pub mod storage;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use subgraph_kit::{RunningService, ServiceConfig};
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "delivery";
pub const DEFAULT_PORT: u16 = 4004;
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/delivery");
/// Where the migrations live, for tests that build a template database from them.
pub const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/delivery");

pub use graphql::{DeliverySchema, schema};

/// Creates and migrates the database if needed, then serves the subgraph until
/// `shutdown` is cancelled.
pub async fn start(config: ServiceConfig, shutdown: CancellationToken) -> anyhow::Result<RunningService> {
    let handler = std::sync::Arc::new(events::DeliveryEvents);
    subgraph_kit::server::start_subgraph(&config, MIGRATIONS, Some(handler), schema, shutdown).await
}
