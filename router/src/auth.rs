//! Router plugin `auth`: every request is authenticated the way the subgraphs do it,
//! before the router's own JWT check, so a client sees one code (`UNAUTHENTICATED`),
//! one set of sentences and HTTP 401 wherever a token is refused: POST, GET, SSE, and
//! each subscription over WebSocket.
//!
//! - `on_graphql_params` verifies the `Authorization` header (for WebSocket clients,
//!   the one in `connection_init`, which the router presents as the request's headers)
//!   with the same verifier the subgraphs use, against the secret of the router's JWKS
//!   file. A refusal ends the request with 401 and our error: as JSON for HTTP (SSE
//!   included: the router would otherwise accept the stream and send the error inside
//!   it with 200), as `next` + `complete` over WebSocket.
//! - `on_graphql_error` still rewrites any JWT error of the router itself (it should no
//!   longer happen) into the same vocabulary, never the router's internal text.
//!
//! Limit: hive-router 0.2.19 acknowledges every WebSocket `connection_init` without a
//! hook; only a patched router could close the socket with 4401/4403 there. Each
//! subscription is refused instead, and the socket stays usable.

use hive_router::{
    GraphQLError,
    http::StatusCode,
    plugins::{
        hooks::{
            on_graphql_error::{OnGraphQLErrorHookPayload, OnGraphQLErrorHookResult},
            on_graphql_params::{OnGraphQLParamsStartHookPayload, OnGraphQLParamsStartHookResult},
            on_plugin_init::{OnPluginInitPayload, OnPluginInitResult},
        },
        plugin_trait::{RouterPlugin, StartHookPayload},
    },
};
use identity::{AuthError, ErrorCode, TokenVerifier};
use serde::Deserialize;

/// `plugins.auth.config` in router.config.yaml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The JWKS file the router's `jwt` section reads (the HS256 secret as an `oct` key).
    pub jwks_path: String,
}

pub struct Auth {
    verifier: TokenVerifier,
}

/// The HS256 secret in a JWKS document: the first `oct` key's `k`.
fn secret_from_jwks(document: &str) -> Result<String, String> {
    use base64::Engine;
    #[derive(Deserialize)]
    struct Key {
        kty: String,
        k: Option<String>,
    }
    #[derive(Deserialize)]
    struct Jwks {
        keys: Vec<Key>,
    }
    let jwks: Jwks = serde_json::from_str(document).map_err(|error| format!("not a JWKS document: {error}"))?;
    let key = jwks.keys.into_iter().find(|key| key.kty == "oct").and_then(|key| key.k).ok_or("no oct key")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key.trim_end_matches('='))
        .map_err(|error| format!("the oct key is not base64url: {error}"))?;
    String::from_utf8(bytes).map_err(|_| "the oct key is not a text secret".to_owned())
}

#[hive_router::async_trait]
impl RouterPlugin for Auth {
    /// The key under `plugins:` in router.config.yaml.
    fn plugin_name() -> &'static str {
        "auth"
    }

    type Config = AuthConfig;

    fn on_plugin_init(payload: OnPluginInitPayload<Self>) -> OnPluginInitResult<Self> {
        let config = payload.config()?;
        let document = std::fs::read_to_string(&config.jwks_path)
            .map_err(|error| format!("reading the JWKS file {}: {error}", config.jwks_path))?;
        let secret = secret_from_jwks(&document).map_err(|error| format!("{}: {error}", config.jwks_path))?;
        payload.initialize_plugin(Auth { verifier: TokenVerifier::new(&secret) })
    }

    async fn on_graphql_params<'exec>(
        &'exec self,
        payload: OnGraphQLParamsStartHookPayload<'exec>,
    ) -> OnGraphQLParamsStartHookResult<'exec> {
        let headers = payload.router_http_request.headers;
        let authorization = headers.get("authorization").and_then(|value| value.to_str().ok());
        match self.verifier.verify_authorization(authorization) {
            Ok(_) => payload.proceed(),
            Err(refused) => payload.end_with_graphql_error(unauthenticated(&refused), StatusCode::UNAUTHORIZED),
        }
    }

    fn on_graphql_error<'req>(
        &'req self,
        mut payload: OnGraphQLErrorHookPayload<'req>,
    ) -> OnGraphQLErrorHookResult<'req> {
        // Errors from subgraphs pass through this hook too; they carry the subgraph's
        // name and already speak our language, so only the router's own errors qualify.
        if payload.error.extensions.service_name.is_some() {
            return payload.proceed();
        }
        let Some(code) = payload.error.extensions.code.as_deref() else {
            return payload.proceed();
        };
        let Some(auth_error) = translate(code, &payload.error.message) else {
            return payload.proceed();
        };
        payload.error = unauthenticated(&auth_error);
        // "Who are you?" is 401; the router answers 403 (or 400) for bad tokens. When it
        // has already accepted a streaming response the status is 200 and the error
        // travels inside the stream; only an error status is replaced.
        if payload.status_code.is_client_error() {
            payload.status_code = StatusCode::UNAUTHORIZED;
        }
        payload.proceed()
    }
}

/// Our error for a refused token: the same code and sentence as the subgraphs give.
fn unauthenticated(refused: &AuthError) -> GraphQLError {
    GraphQLError::from_message_and_code(refused.to_string(), ErrorCode::Unauthenticated.as_str())
}

/// The subgraphs' `AuthError` for a router JWT error, or `None` if it is something else.
fn translate(code: &str, message: &str) -> Option<AuthError> {
    let invalid = |reason: &str| Some(AuthError::Invalid(reason.to_string()));
    match code {
        // `JwtError::LookupFailed`: no header at all, or one without the `Bearer` prefix
        // (or one that is not even text).
        "JWT_LOOKUP_FAILED" if message.contains("failed to locate the value") => Some(AuthError::Missing),
        "JWT_LOOKUP_FAILED" => Some(AuthError::NotBearer),
        // `JwtError::InvalidJwtHeader`: the token is not `header.payload.signature`.
        "INVALID_JWT_HEADER" => invalid("it is not a well-formed JWT"),
        // No key for the token's `kid`/`alg`, or an algorithm we do not accept.
        "JWT_NOT_SUPPORTED" | "JWK_ALGORITHM_NOT_SUPPORTED" => {
            invalid("it is not signed with a key or algorithm this service accepts")
        }
        // `JwtError::AllProvidersFailedToDecode` (reported as `MISSING_JWT`, although the
        // token is there) wraps one `FailedToDecodeToken` (`INVALID_JWT`) per key.
        "MISSING_JWT" | "INVALID_JWT" => Some(decode_failure(message)),
        _ => None,
    }
}

/// Why a well-formed token was refused, from the `jsonwebtoken` error kinds in `message`.
fn decode_failure(message: &str) -> AuthError {
    // `jsonwebtoken` checks the signature before the claims, so `ExpiredSignature` means
    // some key did verify the token: when several keys disagree, "expired" is the truth.
    if message.contains("ExpiredSignature") {
        AuthError::Expired
    } else if message.contains("InvalidSignature") {
        AuthError::Invalid("its signature does not match".to_string())
    } else if message.contains("InvalidIssuer") {
        AuthError::Invalid("it was not issued by this service".to_string())
    } else {
        AuthError::Invalid("it could not be verified".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_jwt_errors_become_the_subgraphs_auth_errors() {
        let missing = "jwt header lookup failed: failed to locate the value in the incoming request";
        assert_eq!(translate("JWT_LOOKUP_FAILED", missing), Some(AuthError::Missing));
        let prefix = "jwt header lookup failed: prefix does not match the found value";
        assert_eq!(translate("JWT_LOOKUP_FAILED", prefix), Some(AuthError::NotBearer));
        let expired = "all jwk failed to decode token: [FailedToDecodeToken(Error(ExpiredSignature))]";
        assert_eq!(translate("MISSING_JWT", expired), Some(AuthError::Expired));
        let forged = "all jwk failed to decode token: [FailedToDecodeToken(Error(InvalidSignature))]";
        assert_eq!(translate("MISSING_JWT", forged), Some(AuthError::Invalid("its signature does not match".into())));
        assert!(matches!(translate("INVALID_JWT_HEADER", "failed to parse"), Some(AuthError::Invalid(_))));
    }

    #[test]
    fn the_secret_comes_from_the_jwks_file() {
        let document = r#"{"keys":[{"kty":"oct","alg":"HS256","use":"sig","k":"c2VjcmV0"}]}"#;
        assert_eq!(secret_from_jwks(document), Ok("secret".to_owned()));
        assert!(secret_from_jwks(r#"{"keys":[]}"#).is_err());
    }

    #[test]
    fn other_errors_pass_through() {
        assert_eq!(translate("BAD_USER_INPUT", "first must be between 1 and 100"), None);
        assert_eq!(translate("GRAPHQL_PARSE_FAILED", "Failed to parse"), None);
    }
}
