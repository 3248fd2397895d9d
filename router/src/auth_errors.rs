//! Router plugin `auth_errors`: rewrites the router's own JWT authentication failures
//! into the errors our subgraphs give for the same problem, so a client sees one code
//! (`UNAUTHENTICATED`) and one set of sentences wherever a token is rejected.
//!
//! Out of the box hive-router answers with its internal vocabulary: `JWT_LOOKUP_FAILED`,
//! `MISSING_JWT` (for an expired token!), `INVALID_JWT_HEADER`, `JWT_NOT_SUPPORTED`, with
//! messages such as `all jwk failed to decode token: [FailedToDecodeToken(Error(
//! ExpiredSignature))]`, and with 401 or 403 depending on the case.
//!
//! The `on_graphql_error` hook only hands us the rendered `GraphQLError` (message and
//! code), not the router's `JwtError`, so the cause is recovered from those two strings:
//! the code says which `JwtError` variant it was (`JwtError::error_code`), and the
//! message carries the `jsonwebtoken` error kind by its `Debug` name. If a hive-router
//! upgrade renames them, the error falls through to a generic sentence, never to the
//! raw router text.
//!
//! Limits: the hook runs for HTTP requests (POST, GET, and the streaming modes), but
//! hive-router's WebSocket server builds its JWT error messages without calling it, so
//! subscriptions over graphql-transport-ws still get the router's own error and
//! `4403` close.

use hive_router::{
    GraphQLError,
    http::StatusCode,
    plugins::{
        hooks::{
            on_graphql_error::{OnGraphQLErrorHookPayload, OnGraphQLErrorHookResult},
            on_plugin_init::{OnPluginInitPayload, OnPluginInitResult},
        },
        plugin_trait::RouterPlugin,
    },
};
use subgraph_kit::{ErrorCode, auth::AuthError};

#[derive(Default)]
pub struct AuthErrors;

impl RouterPlugin for AuthErrors {
    /// The key under `plugins:` in router.config.yaml.
    fn plugin_name() -> &'static str {
        "auth_errors"
    }

    /// Nothing to configure.
    type Config = ();

    fn on_plugin_init(payload: OnPluginInitPayload<Self>) -> OnPluginInitResult<Self> {
        payload.initialize_plugin_with_defaults()
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

        // A fresh error: same shape as the router's (message + extensions.code), no data.
        payload.error =
            GraphQLError::from_message_and_code(auth_error.to_string(), ErrorCode::Unauthenticated.as_str());
        // "Who are you?" is 401; the router answers 403 (or 400) for bad tokens. When it
        // has already accepted a streaming response (SSE, multipart) the status is 200
        // and the error travels inside the stream; changing it then would break the
        // stream's contract, so only an error status is replaced.
        if payload.status_code.is_client_error() {
            payload.status_code = StatusCode::UNAUTHORIZED;
        }
        payload.proceed()
    }
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
    fn other_errors_pass_through() {
        assert_eq!(translate("BAD_USER_INPUT", "first must be between 1 and 100"), None);
        assert_eq!(translate("GRAPHQL_PARSE_FAILED", "Failed to parse"), None);
    }
}
