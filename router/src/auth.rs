//! Router plugin `auth`: every request is authenticated the way the subgraphs do it,
//! with the same verifier (`identity::TokenVerifier`: the provider's JWKS from a URL or
//! a file, read again on rotation; issuer, audience, algorithms and claims as the
//! `TOKEN_*` variables say), so a client sees one code (`UNAUTHENTICATED`), one set of
//! sentences and HTTP 401 wherever a token is refused: POST, GET, SSE, and each
//! subscription over WebSocket.
//!
//! - `on_plugin_init` reads the `TOKEN_*` settings; without an issuer and a JWKS the
//!   router does not start (there is no built-in key).
//! - `on_graphql_params` verifies the `Authorization` header (for WebSocket clients,
//!   the one in `connection_init`, which the router presents as the request's headers).
//!   A refusal ends the request with 401 and our error: as JSON for HTTP (SSE included:
//!   the router would otherwise accept the stream and send the error inside it with
//!   200), as `next` + `complete` over WebSocket. An accepted identity is left in the
//!   request's context (`rate_limits::Caller`), so `rate_limits` counts per client.
//!
//! The router's own `jwt` section is off: one verifier, the subgraphs', decides
//! everywhere, and a difference between two implementations cannot become a gap.
//!
//! Limit: hive-router 0.2.19 acknowledges every WebSocket `connection_init` without a
//! hook; only a patched router could close the socket with 4401/4403 there. Each
//! subscription is refused instead, and the socket stays usable.

use hive_router::{
    GraphQLError,
    http::StatusCode,
    plugins::{
        hooks::{
            on_graphql_params::{OnGraphQLParamsStartHookPayload, OnGraphQLParamsStartHookResult},
            on_plugin_init::{OnPluginInitPayload, OnPluginInitResult},
        },
        plugin_trait::{RouterPlugin, StartHookPayload},
    },
};
use identity::{AuthError, ErrorCode, JwksSource, TokenSettings, TokenVerifier};

use crate::rate_limits::Caller;

pub struct Auth {
    verifier: TokenVerifier,
}

#[hive_router::async_trait]
impl RouterPlugin for Auth {
    /// The key under `plugins:` in router.config.yaml.
    fn plugin_name() -> &'static str {
        "auth"
    }

    type Config = ();

    fn on_plugin_init(payload: OnPluginInitPayload<Self>) -> OnPluginInitResult<Self> {
        let settings = TokenSettings::from_env()?;
        // A JWKS file must be there now; a URL is read at the first request (the
        // provider may start after the router) and again on rotation.
        if let JwksSource::File(path) = &settings.jwks {
            std::fs::metadata(path).map_err(|error| format!("TOKEN_JWKS={}: {error}", path.display()))?;
        }
        payload.initialize_plugin(Auth { verifier: TokenVerifier::new(settings) })
    }

    async fn on_graphql_params<'exec>(
        &'exec self,
        payload: OnGraphQLParamsStartHookPayload<'exec>,
    ) -> OnGraphQLParamsStartHookResult<'exec> {
        let headers = payload.router_http_request.headers;
        let authorization = headers.get("authorization").and_then(|value| value.to_str().ok());
        match self.verifier.verify_authorization(authorization).await {
            Ok(identity) => {
                // For `rate_limits`, which counts per client. Over WebSocket the context
                // is the connection's; each subscribe is verified, and sets it, again.
                payload.context.insert(Caller(identity));
                payload.proceed()
            }
            Err(refused) => payload.end_with_graphql_error(unauthenticated(&refused), StatusCode::UNAUTHORIZED),
        }
    }
}

/// Our error for a refused token: the same code and sentence as the subgraphs give.
fn unauthenticated(refused: &AuthError) -> GraphQLError {
    GraphQLError::from_message_and_code(refused.to_string(), ErrorCode::Unauthenticated.as_str())
}
