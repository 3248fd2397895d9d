//! Start-up: configuration, resources, background tasks and the schema, in one place.

use std::sync::Arc;

use event_bus::ConsumeEvents;
use subgraph_kit::config::ServiceConfig;
use subgraph_kit::{Foundation, RunningService};
use tokio_util::sync::CancellationToken;

use crate::graphql::{self, PaymentSchema, Resolvers};
use crate::{DEFAULT_PORT, MIGRATIONS, SERVICE, events};

/// Everything payment reads from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self::new(ServiceConfig::from_env(SERVICE, DEFAULT_PORT)?))
    }

    pub fn new(service: ServiceConfig) -> Self {
        Self { service }
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
    foundation.consume(contracts::TOPOLOGY, events::PaymentEvents);
    let schema = graphql::schema(Arc::new(Resolvers::new(foundation.database.clone())));
    Ok(foundation.serve(schema))
}

/// The schema with nothing behind it, for exporting its SDL.
pub fn detached_schema() -> PaymentSchema {
    graphql::schema(Arc::new(Resolvers::new(subgraph_kit::Database::unconnected())))
}
