//! Delivery: getting the dispenser to the customer, and its live status.
//!
//! `domain` holds the delivery state machine, `storage` the SQL, `graphql` the schema.

pub mod domain;
pub mod events;
pub mod graphql;
pub mod live;
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

pub use graphql::{DeliverySchema, schema_with};

/// Creates and migrates the database if needed, then serves the subgraph until
/// `shutdown` is cancelled.
pub async fn start(config: ServiceConfig, shutdown: CancellationToken) -> anyhow::Result<RunningService> {
    let handler = std::sync::Arc::new(events::DeliveryEvents);
    subgraph_kit::server::start_subgraph(
        &config,
        MIGRATIONS,
        Some(handler),
        |wiring| {
            let hub = std::sync::Arc::new(live::LiveHub::default());
            live::spawn_listener(hub.clone(), wiring.config.events.clone(), wiring.shutdown.clone());
            schema_with(wiring, hub)
        },
        shutdown,
    )
    .await
}

/// The schema without a broker listener (for exporting the SDL).
pub fn schema(wiring: &subgraph_kit::server::Wiring) -> DeliverySchema {
    schema_with(wiring, std::sync::Arc::default())
}
