//! Inventory: the catalog of dispenser models and their stock.
//!
//! `domain` holds the rules, `storage` the SQL, `graphql` the schema; this file wires
//! them to the shared server.

pub mod demo;
pub mod domain;
pub mod graphql;
pub mod stock;
pub mod storage;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use subgraph_kit::{RunningService, ServiceConfig};
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "inventory";
pub const DEFAULT_PORT: u16 = 4001;
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/inventory");
/// Where the migrations live, for tests that build a template database from them.
pub const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/inventory");

pub use graphql::{InventorySchema, schema};

/// Creates and migrates the database if needed, then serves the subgraph until
/// `shutdown` is cancelled.
pub async fn start(config: ServiceConfig, shutdown: CancellationToken) -> anyhow::Result<RunningService> {
    let handler = std::sync::Arc::new(stock::InventoryEvents);
    subgraph_kit::server::start_subgraph(&config, MIGRATIONS, Some(handler), schema, shutdown).await
}
