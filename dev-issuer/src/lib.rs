//! The development identity provider. `make run` and compose run it so that the
//! system verifies tokens exactly as in production (ES256, a JWKS, issuer and audience
//! checked) while a developer still gets working tokens with one command.
//!
//! It makes a P-256 key pair at first start (kept in a file, so tokens survive a
//! restart), serves the public half at `/.well-known/jwks.json` and hands out tokens
//! at `/token` to anyone who asks: it is a development tool, listening on 127.0.0.1 by
//! default, and it is not in the production image. It is the only holder of the
//! private key for user tokens.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use identity::{DEFAULT_AUDIENCE, DEV_CUSTOMER_ID, Identity, TokenIssuer};
use serde::Deserialize;
use uuid::Uuid;

/// The issuer name the development issuer signs as (`TOKEN_ISSUER` of every process).
pub const DEV_ISSUER: &str = "water-rental-dev";
/// Where it listens by default; `TOKEN_JWKS` is then `http://127.0.0.1:4010/.well-known/jwks.json`.
pub const DEFAULT_PORT: u16 = 4010;
/// The path of the JWKS it serves.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// How long the tokens it hands out stay valid unless asked otherwise: long, because
/// they are pasted into GraphiQL and scripts.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

/// Loads the key at `key_file`, making one there at first start.
pub fn issuer_from_key_file(key_file: &Path) -> anyhow::Result<TokenIssuer> {
    let pem = identity::token::load_or_create_private_key(key_file, true).map_err(anyhow::Error::msg)?;
    TokenIssuer::from_pem(&pem, DEV_ISSUER, DEFAULT_AUDIENCE).map_err(anyhow::Error::msg)
}

/// The routes: the JWKS, an OpenID discovery document, `/token`, and `/health`.
pub fn routes(issuer: TokenIssuer, public_url: String) -> Router {
    Router::new()
        .route(JWKS_PATH, get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/token", get(token))
        .route("/health", get(|| async { "ok" }))
        .with_state(Issuing { issuer, public_url })
}

/// Serves [`routes`] on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, issuer: TokenIssuer) -> std::io::Result<()> {
    let address: SocketAddr = listener.local_addr()?;
    axum::serve(listener, routes(issuer, format!("http://{address}"))).await
}

#[derive(Clone)]
struct Issuing {
    issuer: TokenIssuer,
    public_url: String,
}

async fn jwks(State(issuing): State<Issuing>) -> Json<serde_json::Value> {
    Json(serde_json::to_value(issuing.issuer.jwks()).expect("a JWKS serializes"))
}

async fn discovery(State(issuing): State<Issuing>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "issuer": issuing.issuer.issuer(),
        "jwks_uri": format!("{}{JWKS_PATH}", issuing.public_url),
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

#[derive(Deserialize)]
struct TokenRequest {
    /// `customer` (default) or `operator`.
    role: Option<String>,
    /// The customer id (a UUID) or the operator's name.
    subject: Option<String>,
    /// Validity in seconds.
    seconds: Option<u64>,
}

async fn token(State(issuing): State<Issuing>, Query(request): Query<TokenRequest>) -> Response {
    let identity = match identity_for(request.role.as_deref(), request.subject) {
        Ok(identity) => identity,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let valid_for = request.seconds.map(Duration::from_secs).unwrap_or(DEFAULT_VALIDITY);
    issuing.issuer.issue(&identity, valid_for).into_response()
}

/// The identity a token is asked for: `customer [id]` or `operator [name]`.
pub fn identity_for(role: Option<&str>, subject: Option<String>) -> Result<Identity, String> {
    match role.unwrap_or("customer") {
        "customer" => {
            let id = subject.unwrap_or_else(|| DEV_CUSTOMER_ID.to_owned());
            Uuid::parse_str(&id)
                .map(|customer_id| Identity::Customer { customer_id })
                .map_err(|_| format!("{id:?} is not a customer id (a UUID)"))
        }
        "operator" => Ok(Identity::Operator { subject: subject.unwrap_or_else(|| "dev-operator".into()) }),
        other => Err(format!("{other:?} is not a role: ask for customer or operator")),
    }
}
