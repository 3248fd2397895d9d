//! Start-up: configuration, resources, background tasks and the schema, in one place.

use std::sync::Arc;
use std::time::Duration;

use event_bus::ConsumeEvents;
use subgraph_kit::clock::Calendar;
use subgraph_kit::config::{ServiceConfig, env_millis, env_or, env_parse};
use subgraph_kit::live::LiveHub;
use subgraph_kit::{Foundation, RunningService};
use tokio_util::sync::CancellationToken;

use crate::graphql::{self, RentalSchema, Resolvers};
use crate::service::breaker::BreakerConfig;
use crate::service::payments::{PaymentClient, PaymentSettings};
use crate::service::renting::{Renting, reconcile_until};
use crate::service::{activity, contract};
use crate::storage::history::HistoryProjection;
use crate::{DEFAULT_PORT, MIGRATIONS, SERVICE, events};

/// Everything rental reads from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub payments: PaymentSettings,
    /// A rent request left unfinished this long has its charge called off.
    pub reconcile_after: Duration,
}

impl Config {
    /// The common settings, plus `PAYMENT_URL`, `PAYMENT_CA_FILE` (for an https URL),
    /// `PAYMENT_TIMEOUT_MS` (2000),
    /// `PAYMENT_BREAKER_FAILURES` (5), `PAYMENT_BREAKER_OPEN_MS` (5000),
    /// `RENT_RECONCILE_AFTER_MS` (30000), and rental's own key for calling payment,
    /// `SERVICE_KEY_FILE` (required; with `SERVICE_KEY_CREATE=true` a missing file is
    /// made, for development).
    pub fn from_env() -> anyhow::Result<Self> {
        let key_file =
            std::env::var("SERVICE_KEY_FILE").ok().filter(|path| !path.trim().is_empty()).ok_or_else(|| {
                anyhow::anyhow!(
                    "SERVICE_KEY_FILE is not set: rental signs its calls to payment with a P-256 key of its own \
                 (`dev-issuer new-key <file>` makes one; payment trusts its public half, docs/security.md)"
                )
            })?;
        let pem = identity::token::load_or_create_private_key(
            std::path::Path::new(&key_file),
            env_parse("SERVICE_KEY_CREATE", false)?,
        )
        .map_err(anyhow::Error::msg)?;
        let credential = identity::TokenIssuer::from_pem(&pem, SERVICE, "payment")
            .map_err(|error| anyhow::anyhow!("SERVICE_KEY_FILE={key_file}: {error}"))?;
        Self::from_env_with(ServiceConfig::from_env(SERVICE, DEFAULT_PORT)?, credential)
    }

    /// Rental's own settings from the environment, around the given common settings
    /// and key (tests make their own keys).
    pub fn from_env_with(service: ServiceConfig, credential: identity::TokenIssuer) -> anyhow::Result<Self> {
        let failures: u32 = env_parse("PAYMENT_BREAKER_FAILURES", 5)?;
        Ok(Self {
            service,
            payments: PaymentSettings {
                url: env_or("PAYMENT_URL", "http://127.0.0.1:4003/graphql"),
                timeout: env_millis("PAYMENT_TIMEOUT_MS", 2000)?,
                breaker: BreakerConfig {
                    failure_threshold: failures.max(1),
                    open_for: env_millis("PAYMENT_BREAKER_OPEN_MS", 5000)?,
                },
                credential,
                ca_file: subgraph_kit::config::env_path("PAYMENT_CA_FILE"),
            },
            reconcile_after: env_millis("RENT_RECONCILE_AFTER_MS", 30_000)?,
        })
    }
}

impl AsRef<ServiceConfig> for Config {
    fn as_ref(&self) -> &ServiceConfig {
        &self.service
    }
}

/// Creates and migrates the database if needed, then serves the subgraph, consumes its
/// events, reconciles unfinished rent requests, runs the contract clock and listens for
/// rentals' activity until `shutdown`.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<RunningService> {
    let mut foundation = Foundation::prepare(config.service, MIGRATIONS, &shutdown).await?;
    foundation.project_with(Arc::new(HistoryProjection));
    let calendar = foundation.config.calendar;
    foundation.consume(contracts::TOPOLOGY, events::RentalEvents { calendar });
    let renting = Arc::new(Renting {
        database: foundation.database.clone(),
        payments: PaymentClient::new(config.payments)?,
        reconcile_after: config.reconcile_after,
    });
    let stopping = foundation.lifecycle.stopping().clone();
    foundation.spawn(reconcile_until(renting.clone(), foundation.background.clone(), stopping.clone()));
    foundation.spawn(contract::run_clock_until(foundation.background.clone(), calendar, stopping.clone()));
    let hub = Arc::new(LiveHub::default());
    foundation.spawn(activity::listen_until(hub.clone(), foundation.config.database.clone(), stopping.clone()));
    let resolvers =
        Resolvers::new(foundation.database.clone(), calendar, renting, hub, stopping, foundation.open_streams.clone());
    Ok(foundation.serve(graphql::schema(Arc::new(resolvers))))
}

/// The schema with nothing behind it, for exporting its SDL.
pub fn detached_schema() -> RentalSchema {
    let database = subgraph_kit::Database::unconnected();
    let settings = PaymentSettings {
        url: "http://127.0.0.1:1/unused".into(),
        timeout: Duration::from_secs(1),
        breaker: BreakerConfig { failure_threshold: 1, open_for: Duration::from_secs(1) },
        credential: identity::TokenIssuer::generate(SERVICE, "payment"),
        ca_file: None,
    };
    let renting = Arc::new(Renting {
        database: database.clone(),
        payments: PaymentClient::new(settings).expect("a plain URL and no CA"),
        reconcile_after: Duration::from_secs(30),
    });
    let resolvers =
        Resolvers::new(database, Calendar::CALENDAR, renting, Arc::default(), CancellationToken::new(), Arc::default());
    graphql::schema(Arc::new(resolvers))
}
