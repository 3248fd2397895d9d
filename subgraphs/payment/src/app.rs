//! Start-up: configuration, resources, background tasks and the schema, in one place.

use std::sync::Arc;

use event_bus::ConsumeEvents;
use subgraph_kit::config::{ServiceConfig, env_or};
use subgraph_kit::{Foundation, RunningService};
use tokio_util::sync::CancellationToken;

use crate::domain::DunningSchedule;
use crate::graphql::{self, PaymentSchema, Resolvers};
use crate::service::billing::{Billing, collect_until};
use crate::{DEFAULT_PORT, MIGRATIONS, SERVICE, events};

/// Everything payment reads from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// When a declined invoice is tried again, in days after its first failure.
    pub dunning: DunningSchedule,
}

impl Config {
    /// The common settings, plus `DUNNING_RETRY_DAYS` (`1,3,7`).
    pub fn from_env() -> anyhow::Result<Self> {
        let dunning = DunningSchedule::parse(&env_or("DUNNING_RETRY_DAYS", "1,3,7"))
            .map_err(|error| anyhow::anyhow!("DUNNING_RETRY_DAYS: {error}"))?;
        let service = ServiceConfig::from_env(SERVICE, DEFAULT_PORT)?;
        if service.service_callers.is_none() {
            anyhow::bail!(
                "SERVICE_CALLERS_JWKS is not set: payment takes charges only from rental, and must know the public \
                 half of rental's key (a JWKS file or URL; docs/security.md)"
            );
        }
        Ok(Self { service, dunning })
    }

    pub fn new(service: ServiceConfig) -> Self {
        Self { service, dunning: DunningSchedule::default() }
    }
}

impl AsRef<ServiceConfig> for Config {
    fn as_ref(&self) -> &ServiceConfig {
        &self.service
    }
}

/// Creates and migrates the database if needed, then serves the subgraph, consumes its
/// events and charges due invoices until `shutdown`.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<RunningService> {
    let mut foundation = Foundation::prepare(config.service, MIGRATIONS, &shutdown).await?;
    foundation.consume(contracts::TOPOLOGY, events::PaymentEvents);
    let billing = Arc::new(Billing {
        database: foundation.database.clone(),
        calendar: foundation.config.calendar,
        schedule: config.dunning,
    });
    let stopping = foundation.lifecycle.stopping().clone();
    foundation.spawn(collect_until(billing.clone(), foundation.background.clone(), stopping));
    let schema = graphql::schema(Arc::new(Resolvers::new(foundation.database.clone(), billing)));
    Ok(foundation.serve(schema))
}

/// The schema with nothing behind it, for exporting its SDL.
pub fn detached_schema() -> PaymentSchema {
    let database = subgraph_kit::Database::unconnected();
    let billing = Arc::new(Billing {
        database: database.clone(),
        calendar: subgraph_kit::clock::Calendar::CALENDAR,
        schedule: DunningSchedule::default(),
    });
    graphql::schema(Arc::new(Resolvers::new(database, billing)))
}
