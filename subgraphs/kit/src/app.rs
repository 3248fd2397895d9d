//! The skeleton every subgraph's `app.rs` builds on: the one place where a service's
//! resources are opened, its background tasks started and its schema served.
//!
//! ```text
//! Foundation::prepare(config, migrations, shutdown)   database created, migrated; port bound
//!     .consume(topology, handler)                    event bus: relay + consumer (`event-bus`)
//!     .spawn(task)                                   background tasks (watch `stopping`)
//!     .serve(schema) -> RunningService               HTTP, WebSocket, probes, metrics
//! ```
//!
//! The event bus is a crate of its own (`event-bus`); it plugs in here as a
//! [`Pipeline`], so this crate needs no broker client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use async_graphql::Executor;
use diesel_migrations::EmbeddedMigrations;
use futures::future::BoxFuture;
use identity::TokenVerifier;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ServiceConfig;
use crate::db::Database;
use crate::metrics::ScrapeHook;
use crate::server::{Routes, Served, bind, routes};
use crate::shutdown::Lifecycle;

/// What carries a service's events beside its server (the `event-bus` crate's bus), as
/// the skeleton sees it: whether it is connected, and when it has stopped. It stops
/// consuming when the lifecycle stops, and publishes what is left once
/// [`Foundation::requests_done`] is cancelled.
pub trait Pipeline: Send + 'static {
    fn connection(&self) -> watch::Receiver<bool>;
    fn stopped(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A service's resources, ready to be wired.
pub struct Foundation {
    pub config: ServiceConfig,
    /// Checks every caller's token (loaded at start).
    pub verifier: TokenVerifier,
    /// The pool that serves requests.
    pub database: Database,
    /// The pool for background work; it shares the request pool's commit signal.
    pub background: Database,
    pub lifecycle: Lifecycle,
    /// Live subscription streams open in this service right now (a service with
    /// subscriptions counts them here).
    pub open_streams: Arc<AtomicUsize>,
    listener: TcpListener,
    /// TLS on the service port, when configured.
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics_listener: TcpListener,
    requests_done: CancellationToken,
    pipeline: Option<Box<dyn Pipeline>>,
    scrape_hooks: Vec<ScrapeHook>,
    tasks: Vec<JoinHandle<()>>,
}

impl Foundation {
    /// Creates and migrates the service's database if needed, opens both pools and
    /// binds the port. The service drains when `shutdown` is cancelled.
    pub async fn prepare(
        config: ServiceConfig,
        migrations: EmbeddedMigrations,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        // Tokens must be verifiable before anything else: a service that cannot check who
        // calls must not start.
        let mut verifier = TokenVerifier::new(config.tokens.clone());
        if let Some(callers) = &config.service_callers {
            verifier = verifier.with_service_callers(callers.clone(), config.service);
        }
        verifier.load().await.map_err(|error| anyhow::anyhow!("the token keys: {error}"))?;
        let database = Database::connect(&config.database, migrations).await?;
        let background = database.sibling(config.database.background_pool_size)?;
        let listener = bind(config.listen).await?;
        let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        let metrics_listener = bind(config.metrics_listen).await?;
        let lifecycle = Lifecycle::new(shutdown, config.shutdown.drain);
        Ok(Self {
            config,
            verifier,
            database,
            background,
            lifecycle,
            open_streams: Arc::default(),
            listener,
            tls,
            metrics_listener,
            requests_done: CancellationToken::new(),
            pipeline: None,
            scrape_hooks: Vec::new(),
            tasks: Vec::new(),
        })
    }

    /// Cancelled once the last request has finished (or the shutdown deadline passed):
    /// from then on nothing more is committed, so the event pipeline can publish what
    /// is left and stop.
    pub fn requests_done(&self) -> CancellationToken {
        self.requests_done.clone()
    }

    /// Makes every transaction of both pools project `projection` before it commits
    /// (see [`crate::db::Projection`]). Call before anything else uses the pools.
    pub fn project_with(&mut self, projection: Arc<dyn crate::db::Projection>) {
        self.database = self.database.clone().with_projection(projection.clone());
        self.background = self.background.clone().with_projection(projection);
    }

    /// Runs `pipeline` (the event bus) beside the server; `serve` stops it last.
    pub fn attach_pipeline(&mut self, pipeline: Box<dyn Pipeline>) {
        self.pipeline = Some(pipeline);
    }

    /// Runs `hook` before each `/metrics` answer, to refresh gauges read at scrape time.
    pub fn on_scrape(&mut self, hook: ScrapeHook) {
        self.scrape_hooks.push(hook);
    }

    /// Runs a background task; it should end when `lifecycle.stopping()` is cancelled.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Serves `schema` until the service stops, then drains in order: no new
    /// connections, in-flight requests and consumer batches finish, the relay publishes
    /// what they committed, background tasks end. All of it shares one deadline, the
    /// shutdown timeout counted from the moment the service stops (so the pod's grace
    /// period is drain window + shutdown timeout, whatever is still running).
    pub fn serve<E: Executor + Clone>(self, schema: E) -> RunningService {
        let Foundation {
            config,
            verifier,
            database,
            background,
            lifecycle,
            open_streams,
            listener,
            tls,
            metrics_listener,
            requests_done,
            pipeline,
            scrape_hooks,
            tasks,
        } = self;
        let service = config.service;
        let address = listener.local_addr().expect("a bound listener has an address");
        let metrics_address = metrics_listener.local_addr().expect("a bound listener has an address");
        let Routes { service: app, metrics: metrics_app } = routes(
            schema,
            Served {
                service,
                verifier,
                database: database.clone(),
                background: background.clone(),
                lifecycle: lifecycle.clone(),
                scrape_hooks: scrape_hooks.into(),
            },
        );
        let stopping = lifecycle.stopping().clone();
        let timeout = config.shutdown.timeout;
        let bus_connected = pipeline.as_ref().map(|pipeline| pipeline.connection());
        // Metrics stay readable through the drain, until the last request has finished.
        let metrics_task = tokio::spawn(
            axum::serve(metrics_listener, metrics_app)
                .with_graceful_shutdown(requests_done.clone().cancelled_owned())
                .into_future(),
        );
        let scheme = if tls.is_some() { "https" } else { "http" };
        let graceful = stopping.clone().cancelled_owned();
        let serve: futures::future::BoxFuture<'static, std::io::Result<()>> = match tls {
            Some(acceptor) => {
                let listener =
                    crate::tls::TlsListener::new(listener, acceptor).expect("a bound listener has an address");
                Box::pin(axum::serve(listener, app).with_graceful_shutdown(graceful).into_future())
            }
            None => Box::pin(axum::serve(listener, app).with_graceful_shutdown(graceful).into_future()),
        };
        let task = tokio::spawn(async move {
            let mut serve = serve;
            let served = tokio::select! {
                result = &mut serve => Some(result),
                () = stopping.cancelled() => None,
            };
            let deadline = Instant::now() + timeout;
            let served = match served {
                Some(result) => Some(result),
                None => tokio::time::timeout_at(deadline, serve).await.ok(),
            };
            match served {
                Some(Err(error)) => tracing::error!(service, %error, "server stopped with an error"),
                Some(Ok(())) => {}
                None => tracing::warn!(service, "requests still open at the shutdown deadline; closing them"),
            }
            // Requests are done: what they committed can be published, then the bus ends.
            requests_done.cancel();
            if let Ok(Ok(Err(error))) = tokio::time::timeout_at(deadline, metrics_task).await {
                tracing::error!(service, %error, "the metrics server stopped with an error");
            }
            if let Some(pipeline) = pipeline
                && tokio::time::timeout_at(deadline, pipeline.stopped()).await.is_err()
            {
                tracing::warn!(service, "the event bus had not stopped at the shutdown deadline");
            }
            for task in tasks {
                let _ = tokio::time::timeout_at(deadline, task).await;
            }
        });
        tracing::info!(service, %address, scheme, %metrics_address, "listening");
        RunningService {
            name: service,
            address,
            scheme,
            metrics_address,
            database,
            lifecycle,
            open_streams,
            bus_connected,
            task,
        }
    }
}

/// A service listening on a port, until its lifecycle stops it.
pub struct RunningService {
    pub name: &'static str,
    pub address: SocketAddr,
    /// `https` when the service port serves TLS, else `http`.
    pub scheme: &'static str,
    /// Where `/metrics` is (never the service port).
    pub metrics_address: SocketAddr,
    /// The service's request pool, for tests and tools (seeding, counting statements).
    pub database: Database,
    pub lifecycle: Lifecycle,
    /// Live subscription streams open right now.
    pub open_streams: Arc<AtomicUsize>,
    bus_connected: Option<tokio::sync::watch::Receiver<bool>>,
    task: JoinHandle<()>,
}

impl RunningService {
    pub fn url(&self) -> String {
        format!("{}://{}/graphql", self.scheme, self.address)
    }

    /// Waits until the service's event bus is connected, up to `limit`.
    pub async fn bus_connected(&self, limit: std::time::Duration) -> bool {
        let Some(connected) = &self.bus_connected else { return false };
        let mut connected = connected.clone();
        tokio::time::timeout(limit, connected.wait_for(|up| *up)).await.is_ok_and(|result| result.is_ok())
    }

    /// Waits until the service has stopped (after its lifecycle was told to drain).
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::error!(service = self.name, %error, "server task failed");
        }
    }

    /// Drains, stops, and waits for it.
    pub async fn stop(self) {
        self.lifecycle.drain();
        self.stopped().await;
    }
}

/// The body of every subgraph binary: tracing, configuration, start, and run until
/// SIGTERM or Ctrl-C, then drain and exit. `<service> migrate` instead creates the
/// database if needed, runs the pending migrations (within `MIGRATION_LOCK_TIMEOUT_MS`
/// and `MIGRATION_STATEMENT_TIMEOUT_MS`) and exits: it needs only the database
/// settings.
pub async fn run_until_signal<C, F, Fut>(
    service: &'static str,
    migrations: EmbeddedMigrations,
    config: impl FnOnce() -> anyhow::Result<C>,
    start: F,
) -> anyhow::Result<()>
where
    C: AsRef<ServiceConfig>,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<RunningService>>,
{
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("migrate") => {
            let _telemetry = crate::telemetry::init(service, &crate::config::telemetry_from_env()?)?;
            let database = crate::config::database_from_env(service)?;
            crate::db::migrate(&database, migrations).await?;
            tracing::info!(service, database = %database.name, "migrations applied");
            return Ok(());
        }
        Some(other) => anyhow::bail!("unknown command {other:?}: run `{service}` to serve, or `{service} migrate`"),
    }
    let config = config()?;
    let _telemetry = crate::telemetry::init(service, &config.as_ref().telemetry)?;
    let shutdown = crate::shutdown::on_signal();
    let running = start(config, shutdown).await?;
    running.stopped().await;
    tracing::info!(service, "stopped");
    Ok(())
}
