//! The skeleton every subgraph's `app.rs` builds on: the one place where a service's
//! resources are opened, its background tasks started and its schema served.
//!
//! ```text
//! Foundation::prepare(config, migrations, shutdown)   database created, migrated; port bound
//!     .consume(topology, handler)                    event bus: relay + consumer
//!     .spawn(task)                                   background tasks (watch `stopping`)
//!     .serve(schema) -> RunningService               HTTP, WebSocket, probes, metrics
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use async_graphql::Executor;
use diesel_migrations::EmbeddedMigrations;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenVerifier;
use crate::config::ServiceConfig;
use crate::db::Database;
use crate::events::bus::BusStop;
use crate::events::{EventBus, EventHandler, Subscription};
use crate::server::{bind, routes};
use crate::shutdown::Lifecycle;

/// Connections of the pool for background work (relay, consumer, reconcilers), so it
/// never competes with requests and its statements are not counted as theirs.
const BACKGROUND_POOL_SIZE: usize = 10;

/// A service's resources, ready to be wired.
pub struct Foundation {
    pub config: ServiceConfig,
    /// The pool that serves requests.
    pub database: Database,
    /// The pool for background work; it shares the request pool's commit signal.
    pub background: Database,
    pub lifecycle: Lifecycle,
    /// Live subscription streams open in this service right now (a service with
    /// subscriptions counts them here).
    pub open_streams: Arc<AtomicUsize>,
    listener: TcpListener,
    bus_stop: BusStop,
    bus: Option<EventBus>,
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
        let database = Database::connect(&config.database, migrations).await?;
        let background = database.sibling(BACKGROUND_POOL_SIZE)?;
        let listener = bind(config.listen).await?;
        let lifecycle = Lifecycle::new(shutdown, config.shutdown.drain);
        let bus_stop = BusStop { consuming: lifecycle.stopping().clone(), relaying: CancellationToken::new() };
        Ok(Self {
            config,
            database,
            background,
            lifecycle,
            open_streams: Arc::default(),
            listener,
            bus_stop,
            bus: None,
            tasks: Vec::new(),
        })
    }

    /// Starts the event bus: declares `topology`, relays this service's outbox, and
    /// consumes its inbox with `handler`.
    pub fn consume<H: EventHandler>(&mut self, topology: &'static [Subscription], handler: H) {
        let bus =
            EventBus::start(self.config.events.clone(), topology, self.background.clone(), handler, self.bus_stop.clone());
        self.bus = Some(bus);
    }

    /// Runs a background task; it should end when `lifecycle.stopping()` is cancelled.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Serves `schema` until the service stops, then drains in order: no new
    /// connections, in-flight requests and consumer batches finish (for at most the
    /// shutdown timeout), the relay publishes what they committed, background tasks end.
    pub fn serve<E: Executor + Clone>(self, schema: E) -> RunningService {
        let Foundation { config, database, background, lifecycle, open_streams, listener, bus_stop, bus, tasks } = self;
        let service = config.service;
        let address = listener.local_addr().expect("a bound listener has an address");
        let app = routes(
            service,
            schema,
            TokenVerifier::new(&config.jwt_secret),
            database.clone(),
            background.clone(),
            lifecycle.clone(),
        );
        let stopping = lifecycle.stopping().clone();
        let timeout = config.shutdown.timeout;
        let bus_connected = bus.as_ref().map(EventBus::connection);
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stopping.clone().cancelled_owned());
            let deadline = async {
                stopping.cancelled().await;
                tokio::time::sleep(timeout).await;
            };
            tokio::select! {
                result = serve => if let Err(error) = result {
                    tracing::error!(service, %error, "server stopped with an error");
                },
                () = deadline => tracing::warn!(service, "requests still open after the shutdown timeout; closing them"),
            }
            // Requests are done: what they committed can be published, then the bus ends.
            bus_stop.relaying.cancel();
            if let Some(bus) = bus {
                if tokio::time::timeout(timeout, bus.stopped()).await.is_err() {
                    tracing::warn!(service, "the event bus did not stop within the shutdown timeout");
                }
            }
            for task in tasks {
                let _ = tokio::time::timeout(timeout, task).await;
            }
        });
        tracing::info!(service, %address, "listening");
        RunningService { name: service, address, database, lifecycle, open_streams, bus_connected, task }
    }
}

/// A service listening on a port, until its lifecycle stops it.
pub struct RunningService {
    pub name: &'static str,
    pub address: SocketAddr,
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
        format!("http://{}/graphql", self.address)
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
/// SIGTERM or Ctrl-C, then drain and exit.
pub async fn run_until_signal<C, F, Fut>(
    service: &'static str,
    config: impl FnOnce() -> anyhow::Result<C>,
    start: F,
) -> anyhow::Result<()>
where
    C: AsRef<ServiceConfig>,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<RunningService>>,
{
    let config = config()?;
    let _telemetry = crate::telemetry::init(service, &config.as_ref().telemetry)?;
    crate::auth::warn_if_dev_secret(&config.as_ref().jwt_secret);
    let shutdown = crate::shutdown::on_signal();
    let running = start(config, shutdown).await?;
    running.stopped().await;
    tracing::info!(service, "stopped");
    Ok(())
}
