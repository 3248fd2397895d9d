//! The HTTP side of a subgraph: GraphQL over POST/GET `/graphql`, graphql-transport-ws
//! on `/ws`, `/health` (the process is alive) and `/ready` (its database answers).
//!
//! Identity is checked here, before any resolver runs: a request without a valid token
//! gets an UNAUTHENTICATED error and nothing else.

use std::net::SocketAddr;
use std::time::Duration;

use async_graphql::{Executor, Response};
use async_graphql_axum::rejection::GraphQLRejection;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::auth::{AuthError, TokenVerifier};
use crate::db::Database;
use crate::error::{ApiError, ErrorCode};
use crate::events::outbox::RelayWaker;
use crate::events::{EventBus, EventHandler};

/// How long open connections (WebSocket subscriptions above all) may take to finish
/// after a shutdown signal before they are cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct GraphqlState<E> {
    executor: E,
    verifier: TokenVerifier,
}

/// The routes every subgraph serves.
pub fn routes<E: Executor + Clone>(executor: E, verifier: TokenVerifier, database: Database) -> Router {
    let graphql = Router::new()
        .route("/graphql", get(graphql_http::<E>).post(graphql_http::<E>))
        .route("/ws", get(graphql_ws::<E>))
        .with_state(GraphqlState { executor, verifier });
    let probes = Router::new()
        .route("/health", get(|| async { Json(serde_json::json!({ "status": "alive" })) }))
        .route("/ready", get(ready))
        .with_state(database);
    graphql.merge(probes)
}

async fn graphql_http<E: Executor>(
    State(state): State<GraphqlState<E>>,
    headers: HeaderMap,
    request: Result<GraphQLRequest, GraphQLRejection>,
) -> HttpResponse {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    let identity = match state.verifier.verify_authorization(authorization) {
        Ok(identity) => identity,
        Err(error) => return unauthenticated(error),
    };
    let request = match request {
        Ok(request) => request.into_inner(),
        Err(rejection) => return bad_request(rejection),
    };
    GraphQLResponse::from(state.executor.execute(request.data(identity)).await).into_response()
}

async fn graphql_ws<E: Executor>(
    State(state): State<GraphqlState<E>>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> HttpResponse {
    upgrade.protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| {
        let verifier = state.verifier.clone();
        GraphQLWebSocket::new(socket, state.executor, protocol)
            .on_connection_init(move |payload| async move {
                let identity = verifier
                    .verify_connection_init(&payload)
                    .map_err(|error| ApiError::unauthenticated(error.to_string()).into_graphql())?;
                let mut data = async_graphql::Data::default();
                data.insert(identity);
                Ok(data)
            })
            .serve()
    })
}

async fn ready(State(database): State<Database>) -> HttpResponse {
    if database.is_reachable().await {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        let body = serde_json::json!({ "status": "unavailable", "reason": "the database does not answer" });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

fn unauthenticated(error: AuthError) -> HttpResponse {
    let body = error_body(ApiError::unauthenticated(error.to_string()));
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], Json(body)).into_response()
}

fn bad_request(rejection: GraphQLRejection) -> HttpResponse {
    let message = format!("the request is not a valid GraphQL request: {}", rejection.0);
    (StatusCode::BAD_REQUEST, Json(error_body(ApiError::bad_input(message)))).into_response()
}

/// A GraphQL response with no data and one error, as JSON.
fn error_body(error: ApiError) -> serde_json::Value {
    debug_assert!(error.code != ErrorCode::Internal);
    serde_json::to_value(Response::from_errors(vec![error.into_graphql().into_server_error(Default::default())]))
        .expect("a GraphQL response always serializes")
}

/// A service listening on a port, stopped by its cancellation token.
pub struct RunningService {
    pub name: &'static str,
    pub address: SocketAddr,
    /// The service's database, for tests and the launcher (seeding, counting statements).
    pub database: Database,
    pub bus: EventBus,
    pub wiring: Wiring,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningService {
    /// Serves `app` on `listener` until `shutdown` is cancelled, then drains open
    /// connections for at most [`SHUTDOWN_GRACE`].
    pub fn spawn(wiring: Wiring, listener: TcpListener, app: Router, bus: EventBus) -> Self {
        let name = wiring.config.service;
        let database = wiring.database.clone();
        let shutdown = wiring.shutdown.clone();
        let address = listener.local_addr().expect("a bound listener has an address");
        let drained = shutdown.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(drained.clone().cancelled_owned());
            let deadline = async {
                drained.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            };
            tokio::select! {
                result = serve => if let Err(error) = result {
                    tracing::error!(service = name, %error, "server stopped with an error");
                },
                () = deadline => tracing::warn!(service = name, "connections still open after the grace period; closing them"),
            }
        });
        tracing::info!(service = name, %address, "listening");
        Self { name, address, database, bus, wiring, shutdown, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/graphql", self.address)
    }

    /// Waits until the service has stopped (after its token is cancelled).
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::error!(service = self.name, %error, "server task failed");
        }
        self.bus.stopped().await;
    }

    /// Signals shutdown and waits for it to finish.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.stopped().await;
    }
}

/// Binds the configured address, with the address in the error when it is taken.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}"))
}

const BACKGROUND_POOL_SIZE: usize = 10;

/// What a subgraph's schema and background tasks are built from.
#[derive(Clone)]
pub struct Wiring {
    pub config: crate::ServiceConfig,
    /// The pool that serves requests.
    pub database: Database,
    /// A small pool of its own for background work (event relay and consumer,
    /// reconcilers), so it never competes with requests for connections and its
    /// statements are not counted as theirs.
    pub background: Database,
    /// Wake after committing outbox rows, so the events leave at once.
    pub relay: RelayWaker,
    /// Cancelled when this service stops.
    pub shutdown: CancellationToken,
    /// Subscription streams open in this service right now.
    pub active_subscriptions: Arc<std::sync::atomic::AtomicUsize>,
}

impl Wiring {
    /// Wiring with nothing behind it: for exporting the schema, which needs the
    /// schema's types but no database or broker.
    pub fn detached(service: &'static str) -> Self {
        let config = crate::ServiceConfig::from_env(service, 0).expect("default configuration is valid");
        Self {
            config,
            database: Database::unconnected(),
            background: Database::unconnected(),
            relay: RelayWaker::default(),
            shutdown: CancellationToken::new(),
            active_subscriptions: Arc::default(),
        }
    }
}

/// Starts a subgraph: database created and migrated, event bus connected (consuming
/// what `handler` subscribes to), and the schema served. Stopping it (or cancelling
/// `shutdown`) stops all of it.
pub async fn start_subgraph<E: Executor + Clone>(
    config: &crate::ServiceConfig,
    migrations: diesel_migrations::EmbeddedMigrations,
    handler: Option<Arc<dyn EventHandler>>,
    schema: impl FnOnce(&Wiring) -> E,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningService> {
    let database = Database::connect(&config.database, migrations).await?;
    let background = Database::open_pool(&config.database.url(), BACKGROUND_POOL_SIZE)?;
    let listener = bind(config.listen).await?;
    // A token of its own, so one service can be stopped while the others run on.
    let own = shutdown.child_token();
    let bus = EventBus::start(
        config.events.clone(),
        config.service,
        crate::events::catalog::SUBSCRIPTIONS,
        background.clone(),
        handler,
        own.clone(),
    );
    let wiring = Wiring {
        config: config.clone(),
        database: database.clone(),
        background,
        relay: bus.waker(),
        shutdown: own.clone(),
        active_subscriptions: Arc::default(),
    };
    let app = routes(schema(&wiring), TokenVerifier::new(&config.jwt_secret), database);
    Ok(RunningService::spawn(wiring, listener, app, bus))
}

/// The body of every subgraph binary: configuration from the environment, tracing,
/// start, and run until SIGTERM or Ctrl-C.
pub async fn run_until_signal<F, Fut>(service: &'static str, default_port: u16, start: F) -> anyhow::Result<()>
where
    F: FnOnce(crate::ServiceConfig, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<RunningService>>,
{
    crate::telemetry::init();
    let config = crate::ServiceConfig::from_env(service, default_port)?;
    crate::auth::warn_if_dev_secret(&config.jwt_secret);
    let shutdown = crate::shutdown::on_signal();
    let running = start(config, shutdown).await?;
    running.stopped().await;
    tracing::info!(service, "stopped");
    Ok(())
}
