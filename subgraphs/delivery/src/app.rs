//! Start-up: configuration, resources, background tasks and the schema, in one place.

use std::sync::Arc;

use event_bus::ConsumeEvents;
use subgraph_kit::config::ServiceConfig;
use subgraph_kit::{Foundation, RunningService};
use tokio_util::sync::CancellationToken;

use crate::graphql::{self, DeliverySchema, Resolvers};
use subgraph_kit::live::LiveHub;

use crate::service::live;
use crate::{DEFAULT_PORT, MIGRATIONS, SERVICE, events};

/// Everything delivery reads from the environment.
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

/// Creates and migrates the database if needed, then serves the subgraph, consumes its
/// events and listens for live status changes until `shutdown`.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<RunningService> {
    let mut foundation = Foundation::prepare(config.service, MIGRATIONS, &shutdown).await?;
    let calendar = foundation.config.calendar;
    foundation.consume(contracts::TOPOLOGY, events::DeliveryEvents { calendar });
    let hub = Arc::new(LiveHub::default());
    let stopping = foundation.lifecycle.stopping().clone();
    foundation.spawn(live::listen(hub.clone(), foundation.config.events.clone(), stopping.clone()));
    let resolvers =
        Resolvers::new(foundation.database.clone(), calendar, hub, stopping, foundation.open_streams.clone());
    Ok(foundation.serve(graphql::schema(Arc::new(resolvers))))
}

/// The schema with nothing behind it, for exporting its SDL.
pub fn detached_schema() -> DeliverySchema {
    let resolvers = Resolvers::new(
        subgraph_kit::Database::unconnected(),
        subgraph_kit::clock::Calendar::CALENDAR,
        Arc::default(),
        CancellationToken::new(),
        Arc::default(),
    );
    graphql::schema(Arc::new(resolvers))
}
