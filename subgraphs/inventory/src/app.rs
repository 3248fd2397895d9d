//! Start-up: configuration, resources, background tasks and the schema, in one place.

use std::sync::Arc;

use event_bus::ConsumeEvents;
use subgraph_kit::config::{ServiceConfig, env_parse};
use subgraph_kit::{Foundation, RunningService};
use tokio_util::sync::CancellationToken;

use crate::graphql::{self, InventorySchema, Resolvers};
use crate::{DEFAULT_PORT, MIGRATIONS, SERVICE, events, service};

/// Everything inventory reads from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// Seed the demo catalog at start (`DEMO_CATALOG=true`; `make run` sets it).
    pub demo_catalog: bool,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            service: ServiceConfig::from_env(SERVICE, DEFAULT_PORT)?,
            demo_catalog: env_parse("DEMO_CATALOG", false)?,
        })
    }

    /// The common configuration, and nothing seeded.
    pub fn new(service: ServiceConfig) -> Self {
        Self { service, demo_catalog: false }
    }
}

impl AsRef<ServiceConfig> for Config {
    fn as_ref(&self) -> &ServiceConfig {
        &self.service
    }
}

/// Creates and migrates the database if needed, then serves the subgraph and consumes
/// its events until `shutdown`.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<RunningService> {
    let mut foundation = Foundation::prepare(config.service, MIGRATIONS, &shutdown).await?;
    if config.demo_catalog {
        let added = service::seed_demo_catalog(&foundation.database)
            .await
            .map_err(|error| anyhow::anyhow!("seeding the demo catalog: {}", error.message))?;
        tracing::info!(products_added = added, "demo catalog seeded");
    }
    foundation.consume(contracts::TOPOLOGY, events::InventoryEvents);
    let schema = graphql::schema(Arc::new(Resolvers::new(foundation.database.clone())));
    Ok(foundation.serve(schema))
}

/// The schema with nothing behind it, for exporting its SDL.
pub fn detached_schema() -> InventorySchema {
    graphql::schema(Arc::new(Resolvers::new(subgraph_kit::Database::unconnected())))
}
