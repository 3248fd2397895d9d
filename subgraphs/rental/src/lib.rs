//! Rental: the rentals themselves and, for customers, their history.
//!
//! `domain` holds the rental state machine, `storage` the SQL, `graphql` the schema.

pub mod domain;
pub mod events;
pub mod graphql;
pub mod history;
pub mod payments;
pub mod renting;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use subgraph_kit::config::env_or;
use subgraph_kit::{RunningService, ServiceConfig};
use tokio_util::sync::CancellationToken;

use crate::payments::{PaymentClient, PaymentSettings};
use crate::renting::Renting;

pub const SERVICE: &str = "rental";
pub const DEFAULT_PORT: u16 = 4002;
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/rental");
/// Where the migrations live, for tests that build a template database from them.
pub const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/rental");

pub use graphql::{RentalSchema, schema_with};

/// What rental needs beyond the common configuration.
#[derive(Debug, Clone)]
pub struct RentalSettings {
    pub payments: PaymentSettings,
    /// A rent request left unfinished this long has its charge called off.
    pub reconcile_after: Duration,
}

impl RentalSettings {
    /// Payment settings (see [`PaymentSettings::from_env`]) and `RENT_RECONCILE_AFTER_MS`
    /// (default 30000).
    pub fn from_env() -> anyhow::Result<Self> {
        let reconcile_after: u64 = env_or("RENT_RECONCILE_AFTER_MS", "30000")
            .parse()
            .map_err(|_| anyhow::anyhow!("RENT_RECONCILE_AFTER_MS must be a whole number"))?;
        Ok(Self { payments: PaymentSettings::from_env()?, reconcile_after: Duration::from_millis(reconcile_after) })
    }
}

/// Creates and migrates the database if needed, then serves the subgraph, consumes its
/// events and reconciles unfinished rent requests until `shutdown` is cancelled.
pub async fn start(
    config: ServiceConfig,
    settings: RentalSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningService> {
    let handler = Arc::new(events::RentalEvents);
    let jwt_secret = config.jwt_secret.clone();
    let running = subgraph_kit::server::start_subgraph(
        &config,
        MIGRATIONS,
        Some(handler),
        |wiring| {
            let renting = Arc::new(Renting {
                database: wiring.database.clone(),
                payments: PaymentClient::new(settings.payments.clone(), &jwt_secret),
                reconcile_after: settings.reconcile_after,
            });
            renting::spawn_reconciler(renting.clone(), wiring.background.clone(), wiring.shutdown.clone());
            schema_with(wiring, Some(renting))
        },
        shutdown,
    )
    .await?;
    Ok(running)
}

/// The schema without a payment client (for exporting the SDL).
pub fn schema(wiring: &subgraph_kit::server::Wiring) -> RentalSchema {
    schema_with(wiring, None)
}
