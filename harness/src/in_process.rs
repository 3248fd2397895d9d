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
    identities: &stack::Identities,
    events: EventsConfig,
) -> anyhow::Result<ServiceConfig> {
    let mut config = ServiceConfig::from_env_with_tokens(service, 0, identities.token_settings())?;
    config.listen = listen;
    config.metrics_listen = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
    config.database = database;
    // Only payment takes calls from another service (rental's, signed with its key).
    config.service_callers = (service == payment::SERVICE).then(|| identities.service_callers());
    config.events = events;
    Ok(config)
}

/// Rental's settings from the environment (payment timeouts, breaker, reconciler),
/// with placeholders for what each stack sets itself: its service configuration and
/// its key for calling payment.
pub fn rental_settings() -> anyhow::Result<rental::Config> {
    let placeholder = identity::TokenSettings::new(
        stack::identities::TEST_ISSUER,
        identity::JwksSource::File("replaced-by-each-stack".into()),
    );
    let service = ServiceConfig::from_env_with_tokens(rental::SERVICE, 0, placeholder)?;
    rental::Config::from_env_with(service, identity::TokenIssuer::generate(rental::SERVICE, payment::SERVICE))
}
