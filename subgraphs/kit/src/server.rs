//! The HTTP side of a subgraph: GraphQL over POST/GET `/graphql`, graphql-transport-ws
//! on `/ws`, `/health` (the process is alive) and `/ready` (it takes work: its database
//! answers and it is not draining) on the service port; `/metrics` (Prometheus) on a
//! port of its own, which only Prometheus is let reach (docs/security.md).
//!
//! Identity is checked here, before any resolver runs: a request without a valid token
//! gets an UNAUTHENTICATED error and nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::{WebSocketProtocols, WsMessage};
use async_graphql::{Executor, Response};
use async_graphql_axum::rejection::GraphQLRejection;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::db::Database;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::{ScrapeHook, metrics};
use crate::shutdown::Lifecycle;
use identity::{AuthError, TokenVerifier};

/// How long a stopping service's socket must be quiet (no operation open, no message
/// either way) before it is closed: time for the `complete` messages to leave, and for a
/// `subscribe` already on its way to arrive and be answered rather than cut off.
const QUIET_BEFORE_CLOSE: Duration = Duration::from_millis(300);

#[derive(Clone)]
struct GraphqlState<E> {
    executor: E,
    verifier: TokenVerifier,
    lifecycle: Lifecycle,
}

/// What the routes serve besides the schema.
#[derive(Clone)]
pub struct Served {
    pub service: &'static str,
    pub verifier: TokenVerifier,
    /// The request pool (readiness, pool gauges).
    pub database: Database,
    /// The background pool (pool gauges).
    pub background: Database,
    pub lifecycle: Lifecycle,
    /// Run before each `/metrics` answer.
    pub scrape_hooks: Arc<[ScrapeHook]>,
}

#[derive(Clone)]
struct ProbeState {
    service: &'static str,
    database: Database,
    background: Database,
    lifecycle: Lifecycle,
    scrape_hooks: Arc<[ScrapeHook]>,
}

/// What every subgraph serves, on its two ports.
pub struct Routes {
    /// `/graphql`, `/ws`, `/health`, `/ready`: the service port.
    pub service: Router,
    /// `/metrics`: the metrics port.
    pub metrics: Router,
}

/// The routes every subgraph serves.
pub fn routes<E: Executor + Clone>(executor: E, served: Served) -> Routes {
    let Served { service, verifier, database, background, lifecycle, scrape_hooks } = served;
    let probe = ProbeState { service, database, background, lifecycle: lifecycle.clone(), scrape_hooks };
    let graphql = Router::new()
        .route("/graphql", get(graphql_http::<E>).post(graphql_http::<E>))
        .route("/ws", get(graphql_ws::<E>))
        .with_state(GraphqlState { executor, verifier, lifecycle: lifecycle.clone() });
    let probes = Router::new()
        .route("/health", get(|| async { Json(serde_json::json!({ "status": "alive" })) }))
        .route("/ready", get(ready))
        .with_state(probe.clone());
    Routes {
        service: graphql.merge(probes),
        metrics: Router::new().route("/metrics", get(prometheus)).with_state(probe),
    }
}

async fn graphql_http<E: Executor>(
    State(state): State<GraphqlState<E>>,
    headers: HeaderMap,
    request: Result<GraphQLRequest, GraphQLRejection>,
) -> HttpResponse {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    let identity = match state.verifier.verify_authorization(authorization).await {
        Ok(identity) => identity,
        Err(error) => return unauthenticated(error),
    };
    let request = match request {
        Ok(request) => request.into_inner(),
        Err(rejection) => return bad_request(rejection),
    };
    // The request continues the caller's trace (the router's, or rental's for payment).
    let span = tracing::info_span!("graphql request", otel.kind = "server");
    let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(&span, crate::telemetry::extract(&headers));
    let response = state.executor.execute(request.data(identity)).instrument(span).await;
    GraphQLResponse::from(response).into_response()
}

async fn graphql_ws<E: Executor>(
    State(state): State<GraphqlState<E>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> HttpResponse {
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|offered| offered.split(',').find_map(|name| name.trim().parse::<WebSocketProtocols>().ok()));
    let Some(protocol) = protocol else {
        let error = ApiError::bad_input("a GraphQL WebSocket needs the graphql-transport-ws subprotocol");
        return (StatusCode::BAD_REQUEST, Json(error_body(error))).into_response();
    };
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve_socket(socket, state, protocol))
}

/// One WebSocket connection. When the service stops, its subscription streams end
/// (each sends `complete`, so the client knows to subscribe again elsewhere); a
/// `subscribe` that still arrives is answered the same way (its current state, then
/// `complete`). The connection closes with 1001 (going away) only once it is quiet, so a
/// client never has an operation cut off without its `complete`.
async fn serve_socket<E: Executor>(socket: WebSocket, state: GraphqlState<E>, protocol: WebSocketProtocols) {
    let (mut sink, stream) = socket.split();
    let stopping = state.lifecycle.stopping().clone();
    let traffic = SocketTraffic::default();
    let incoming = traffic.clone();
    let watched = traffic.clone();
    let input = stream
        .take_while(|message| futures::future::ready(message.is_ok()))
        .filter_map(|message| {
            futures::future::ready(match message {
                Ok(Message::Text(text)) => Some(text.as_str().as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                _ => None,
            })
        })
        .inspect(move |bytes| incoming.saw(bytes))
        .take_until(async move {
            stopping.cancelled().await;
            watched.quiet_for(QUIET_BEFORE_CLOSE).await;
        });
    let verifier = state.verifier.clone();
    let output = async_graphql::http::WebSocket::new(state.executor.clone(), input, protocol).on_connection_init(
        move |payload| async move {
            let identity = verifier
                .verify_connection_init(&payload)
                .await
                .map_err(|error| ApiError::unauthenticated(error.to_string()).into_graphql())?;
            let mut data = async_graphql::Data::default();
            data.insert(identity);
            Ok(data)
        },
    );
    futures::pin_mut!(output);
    while let Some(message) = output.next().await {
        let message = match message {
            WsMessage::Text(text) => {
                traffic.saw(text.as_bytes());
                Message::Text(text.into())
            }
            WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame { code, reason: reason.into() })),
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
    if state.lifecycle.stopping().is_cancelled() {
        let goodbye = CloseFrame { code: 1001, reason: "the service is restarting; connect again".into() };
        let _ = sink.send(Message::Close(Some(goodbye))).await;
    }
}

/// What passes on one GraphQL WebSocket, as far as closing it goes: which operations are
/// open and when the last message went by. Both protocols async-graphql speaks count:
/// graphql-transport-ws (`subscribe`; `complete` either way, `error`) and the older
/// graphql-ws (`start`; `stop`, `complete`, `error`).
#[derive(Clone, Default)]
struct SocketTraffic {
    state: Arc<tokio::sync::watch::Sender<Traffic>>,
}

#[derive(Default)]
struct Traffic {
    open: std::collections::HashSet<String>,
    /// Counts every message, so a waiter can tell whether anything went by.
    messages: u64,
}

#[derive(serde::Deserialize)]
struct ProtocolMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
}

impl SocketTraffic {
    fn saw(&self, bytes: &[u8]) {
        let message = serde_json::from_slice::<ProtocolMessage>(bytes).ok();
        self.state.send_modify(|traffic| {
            traffic.messages += 1;
            let Some(ProtocolMessage { kind, id: Some(id) }) = message else { return };
            match kind.as_ref() {
                "subscribe" | "start" => {
                    traffic.open.insert(id.into_owned());
                }
                "complete" | "stop" | "error" => {
                    traffic.open.remove(id.as_ref());
                }
                _ => {}
            }
        });
    }

    /// Returns once no operation is open and no message has gone by for `quiet`.
    async fn quiet_for(&self, quiet: Duration) {
        let mut changes = self.state.subscribe();
        loop {
            let _ = changes.wait_for(|traffic| traffic.open.is_empty()).await;
            let seen = changes.borrow_and_update().messages;
            tokio::time::sleep(quiet).await;
            let traffic = changes.borrow_and_update();
            if traffic.open.is_empty() && traffic.messages == seen {
                return;
            }
        }
    }
}

async fn ready(State(probe): State<ProbeState>) -> HttpResponse {
    if probe.lifecycle.is_draining() {
        let body = serde_json::json!({ "status": "draining", "reason": "the service is shutting down" });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    if probe.database.is_reachable().await {
        // The service's name too: whoever waits for a process to be ready can tell that
        // the answer comes from the process it started, not from another on that port.
        Json(serde_json::json!({ "status": "ready", "service": probe.service })).into_response()
    } else {
        let body = serde_json::json!({ "status": "unavailable", "reason": "the database does not answer" });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// Refreshes the gauges that are read at scrape time, then renders everything.
async fn prometheus(State(probe): State<ProbeState>) -> HttpResponse {
    let metrics = metrics();
    for (pool, database) in [("requests", &probe.database), ("background", &probe.background)] {
        let state = database.pool_state();
        metrics.pool_connections.with_label_values(&[probe.service, pool, "in_use"]).set(state.in_use as i64);
        metrics.pool_connections.with_label_values(&[probe.service, pool, "idle"]).set(state.idle as i64);
        metrics.pool_waiting.with_label_values(&[probe.service, pool]).set(state.waiting as i64);
    }
    for hook in probe.scrape_hooks.iter() {
        // A hook that cannot answer quickly leaves its gauges as they were.
        let _ = tokio::time::timeout(Duration::from_millis(500), hook()).await;
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render()).into_response()
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

/// Binds the configured address, with the address in the error when it is taken.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}"))
}
