//! A whole stack that shares nothing with any other: four fresh databases cloned from
//! their migrated templates, a broker namespace of its own, the subgraphs on free ports
//! and a router process, with keys of their own. The end-to-end tests start one per
//! test; the benchmarks start one per run.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use event_bus::testing::TestEvents;
use subgraph_kit::ServiceConfig;
use subgraph_kit::testing::TestDatabase;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Subgraphs;
use crate::in_process::service_config;
use stack::{RouterProcess, RouterSettings};

pub struct IsolatedOptions {
    /// Rental's own settings (payment timeouts, breaker, reconciler); its service
    /// configuration is replaced by the isolated one.
    pub rental: rental::Config,
    pub router_binary: PathBuf,
    /// The router's log level; its output goes to a file in the temporary folder.
    pub router_log_level: String,
    pub router_workers: Option<usize>,
    /// Connections per service pool.
    pub pool_size: usize,
    /// Connections of each service's background pool; `None` keeps the test default (4).
    pub background_pool_size: Option<usize>,
    /// How long a month is for every service (the tests of the contract shrink it).
    pub calendar: subgraph_kit::clock::Calendar,
    /// When payment retries a declined invoice.
    pub dunning: payment::domain::DunningSchedule,
    /// Payment serves TLS with a certificate of a test CA, which rental and the router
    /// are told to trust.
    pub payment_tls: bool,
    /// The broker users also get production's topic permissions on this stack's exchange
    /// (each publishes only its own events): one more `rabbitmqctl` call at start.
    pub topic_permissions: bool,
}

pub struct IsolatedStack {
    pub subgraphs: Subgraphs,
    pub router: RouterProcess,
    /// The stack's keys: tokens for its users are signed with `identities.users`.
    pub identities: std::sync::Arc<stack::Identities>,
    /// Each service's configuration, to restart one on its old address.
    pub configs: Vec<ServiceConfig>,
    pub events: TestEvents,
    pub shutdown: CancellationToken,
    /// Dropped last: the services must stop before their databases go.
    pub databases: Vec<TestDatabase>,
    /// The test CA and payment's certificate, when payment serves TLS.
    pub certificates: Option<crate::tls::TestCertificates>,
}

impl IsolatedStack {
    pub async fn start(options: IsolatedOptions) -> anyhow::Result<Self> {
        let identities = std::sync::Arc::new(stack::Identities::generate()?);
        let mut rental = options.rental.clone();
        rental.payments.credential = identities.rental.clone();
        let certificates = if options.payment_tls { Some(crate::tls::TestCertificates::new()?) } else { None };
        rental.payments.ca_file = certificates.as_ref().map(|certificates| certificates.ca.clone());
        let shutdown = CancellationToken::new();
        let mut databases = Vec::new();
        for (service, migrations, dir) in [
            (inventory::SERVICE, inventory::MIGRATIONS, inventory::MIGRATIONS_DIR),
            (rental::SERVICE, rental::MIGRATIONS, rental::MIGRATIONS_DIR),
            (payment::SERVICE, payment::MIGRATIONS, payment::MIGRATIONS_DIR),
            (delivery::SERVICE, delivery::MIGRATIONS, delivery::MIGRATIONS_DIR),
        ] {
            let mut database = TestDatabase::create(service, migrations, Path::new(dir)).await?;
            database.config.pool_size = options.pool_size;
            if let Some(size) = options.background_pool_size {
                database.config.background_pool_size = size;
            }
            databases.push(database);
        }
        let events = TestEvents::new(contracts::TOPOLOGY);
        // Each service on the broker as its own user, as in production.
        let mut accounts = events.accounts(&contracts::grants(), options.topic_permissions).await?;
        let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let services = [inventory::SERVICE, rental::SERVICE, payment::SERVICE, delivery::SERVICE];
        let configs = services
            .iter()
            .zip(&databases)
            .map(|(service, database)| {
                let own_events = accounts.remove(service).context("a broker user for every service")?;
                let mut config = service_config(service, any_port, database.config.clone(), &identities, own_events)?;
                config.calendar = options.calendar;
                if *service == payment::SERVICE
                    && let Some(certificates) = &certificates
                {
                    config.tls = Some(subgraph_kit::config::TlsFiles {
                        cert: certificates.cert.clone(),
                        key: certificates.key.clone(),
                    });
                }
                Ok(config)
            })
            .collect::<anyhow::Result<Vec<ServiceConfig>>>()?;
        let subgraphs = Subgraphs::start(
            |service| Ok(configs.iter().find(|config| config.service == service).expect("a config each").clone()),
            &rental,
            &options.dunning,
            shutdown.clone(),
        )
        .await?;
        let log_file = std::env::temp_dir().join(format!("water-rental-router-{}.log", Uuid::new_v4().simple()));
        let router = RouterProcess::spawn(RouterSettings {
            binary: options.router_binary,
            port: 0,
            host: Ipv4Addr::LOCALHOST,
            subgraph_urls: subgraphs.urls(),
            token_env: identities.env_for("router"),
            log_level: options.router_log_level,
            log_file: Some(log_file),
            workers: options.router_workers,
            extra_env: stack::relaxed_rate_limits()
                .into_iter()
                .chain(
                    certificates
                        .iter()
                        .map(|certificates| ("PAYMENT_CA_FILE".into(), certificates.ca.display().to_string())),
                )
                .collect(),
        })
        .await?;
        Ok(Self { subgraphs, router, identities, configs, events, shutdown, databases, certificates })
    }
}
