//! The four subgraphs, started together in this process: the fastest way to a whole
//! stack, for the end-to-end tests and the benchmarks.

use subgraph_kit::config::{DatabaseConfig, EventsConfig};
use subgraph_kit::{RunningService, ServiceConfig};
use tokio_util::sync::CancellationToken;

/// The running subgraphs, each on its own port with its own database.
pub struct Subgraphs {
    pub inventory: RunningService,
    pub rental: RunningService,
    pub payment: RunningService,
    pub delivery: RunningService,
}

impl Subgraphs {
    /// Starts each subgraph with the configuration `config_for` gives its name; rental
    /// takes its own settings from `rental` and calls payment wherever it started.
    pub async fn start(
        config_for: impl Fn(&'static str) -> anyhow::Result<ServiceConfig>,
        rental: &rental::Config,
        dunning: &payment::domain::DunningSchedule,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        // Payment first: rental calls it directly, at the address it actually got.
        let payment_config =
            payment::Config { dunning: dunning.clone(), ..payment::Config::new(config_for(payment::SERVICE)?) };
        let payment = payment::start(payment_config, shutdown.clone()).await?;
        let mut rental = rental.clone();
        rental.service = config_for(rental::SERVICE)?;
        rental.payments.url = payment.url();
        Ok(Self {
            inventory: inventory::start(inventory::Config::new(config_for(inventory::SERVICE)?), shutdown.clone())
                .await?,
            rental: rental::start(rental, shutdown.clone()).await?,
            payment,
            delivery: delivery::start(delivery::Config::new(config_for(delivery::SERVICE)?), shutdown).await?,
        })
    }

    /// Each subgraph's name and GraphQL URL, as the router needs them.
    pub fn urls(&self) -> Vec<(&'static str, String)> {
        self.all().into_iter().map(|service| (service.name, service.url())).collect()
    }

    pub fn all(&self) -> [&RunningService; 4] {
        [&self.inventory, &self.rental, &self.payment, &self.delivery]
    }

    /// Waits until every subgraph has stopped (after the shutdown token is cancelled).
    pub async fn stopped(self) {
        for service in [self.inventory, self.rental, self.payment, self.delivery] {
            service.stopped().await;
        }
    }
}

/// A service configuration listening on `listen` with the given database and broker
/// namespace, and everything else as the environment (or its defaults) says.
pub fn service_config(
    service: &'static str,
    listen: std::net::SocketAddr,
    database: DatabaseConfig,
    jwt_secret: &str,
    events: EventsConfig,
) -> anyhow::Result<ServiceConfig> {
    let mut config = ServiceConfig::from_env(service, 0)?;
    config.listen = listen;
    config.database = database;
    config.jwt_secret = jwt_secret.to_owned();
    config.events = events;
    Ok(config)
}
