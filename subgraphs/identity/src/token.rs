//! Signed JWTs (HS256) carrying a subject and a role.
//!
//! The router checks every token, and every subgraph checks it again, so a subgraph
//! reached directly is no back door. Customers' subject is their customer id; operators
//! are staff; `service` tokens let one service call another (rental → payment).

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The signing secret used when `JWT_SECRET` is not set. It is public (it is in this
/// repository), so anything signed with it proves nothing outside a developer machine.
pub const DEV_JWT_SECRET: &str = "dev-only-insecure-jwt-secret-never-use-in-production";

/// The shared signing secret for identity tokens, from `JWT_SECRET`. The default is
/// for development only and says so in its own text; every process logs a warning
/// when it is used.
pub fn jwt_secret_from_env() -> String {
    match std::env::var("JWT_SECRET") {
        Ok(secret) if !secret.trim().is_empty() => secret,
        _ => DEV_JWT_SECRET.to_owned(),
    }
}

/// The customer the launcher and the dev-token command mint tokens for by default, so
/// the examples in the README line up.
pub const DEV_CUSTOMER_ID: &str = "0192f1a4-0000-7000-8000-00000000c0de";

/// Logs loudly when the public development secret is in use.
pub fn warn_if_dev_secret(secret: &str) {
    if secret == DEV_JWT_SECRET {
        tracing::warn!("JWT_SECRET is not set: using the public development secret; never do this in production");
    }
}

/// Issuer written into and required from every token.
pub const ISSUER: &str = "water-rental";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Operator,
    Service,
}

/// Who is calling, established from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Customer { customer_id: Uuid },
    Operator { subject: String },
    Service { name: String },
}

impl Identity {
    /// Staff and trusted services see everything; a customer sees only their own.
    pub fn may_see_customer(&self, customer_id: Uuid) -> bool {
        match self {
            Identity::Customer { customer_id: own } => *own == customer_id,
            Identity::Operator { .. } | Identity::Service { .. } => true,
        }
    }

    pub fn is_operator(&self) -> bool {
        matches!(self, Identity::Operator { .. })
    }

    pub fn customer_id(&self) -> Option<Uuid> {
        match self {
            Identity::Customer { customer_id } => Some(*customer_id),
            _ => None,
        }
    }

    fn subject_and_role(&self) -> (String, Role) {
        match self {
            Identity::Customer { customer_id } => (customer_id.to_string(), Role::Customer),
            Identity::Operator { subject } => (subject.clone(), Role::Operator),
            Identity::Service { name } => (name.clone(), Role::Service),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iss: String,
    iat: i64,
    exp: i64,
}

/// Why a request carries no usable identity. Each message tells the caller what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send an 'Authorization: Bearer <token>' header")]
    Missing,
    #[error("the Authorization header must have the form 'Bearer <token>'")]
    NotBearer,
    #[error("the token has expired: get a new one")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

/// Verifies tokens signed with the shared secret.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        Self { key: DecodingKey::from_secret(secret.as_bytes()), validation }
    }

    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    AuthError::Invalid("its signature does not match".into())
                }
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                    AuthError::Invalid("it was not issued by this service".into())
                }
                // The claims do not fit: an unknown role, a missing subject.
                jsonwebtoken::errors::ErrorKind::Json(_) | jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => {
                    AuthError::Invalid(
                        "it does not name a role this service knows (customer, operator or service) and a subject"
                            .into(),
                    )
                }
                jsonwebtoken::errors::ErrorKind::InvalidToken
                | jsonwebtoken::errors::ErrorKind::Base64(_)
                | jsonwebtoken::errors::ErrorKind::Utf8(_) => AuthError::Invalid("it is not a well-formed JWT".into()),
                _ => AuthError::Invalid("it could not be verified".into()),
            })?;
        let claims = data.claims;
        match claims.role {
            Role::Customer => {
                let customer_id = Uuid::parse_str(&claims.sub)
                    .map_err(|_| AuthError::Invalid("a customer token's subject must be a customer id".into()))?;
                Ok(Identity::Customer { customer_id })
            }
            Role::Operator => Ok(Identity::Operator { subject: claims.sub }),
            Role::Service => Ok(Identity::Service { name: claims.sub }),
        }
    }

    /// Verifies the value of an `Authorization` header (`Bearer <token>`).
    pub fn verify_authorization(&self, header: Option<&str>) -> Result<Identity, AuthError> {
        let header = header.map(str::trim).filter(|value| !value.is_empty());
        let header = header.ok_or(AuthError::Missing)?;
        let (scheme, token) = header.split_once(' ').ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::NotBearer);
        }
        self.verify(token.trim())
    }

    /// Verifies the identity sent in a graphql-transport-ws `connection_init` payload.
    /// The router forwards headers there as `{"headers": {"authorization": ...}}`; clients
    /// that talk to a subgraph directly usually send `{"Authorization": ...}`. Both work.
    pub fn verify_connection_init(&self, payload: &serde_json::Value) -> Result<Identity, AuthError> {
        self.verify_authorization(authorization_in_payload(payload))
    }
}

fn authorization_in_payload(payload: &serde_json::Value) -> Option<&str> {
    fn find(object: &serde_json::Value) -> Option<&str> {
        object.as_object()?.iter().find(|(key, _)| key.eq_ignore_ascii_case("authorization"))?.1.as_str()
    }
    find(payload).or_else(|| payload.get("headers").and_then(find))
}

/// Signs tokens. Used by the dev-token command, the launcher, tests, and services that
/// call each other.
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
}

impl TokenIssuer {
    pub fn new(secret: &str) -> Self {
        Self { key: EncodingKey::from_secret(secret.as_bytes()) }
    }

    pub fn issue(&self, identity: &Identity, valid_for: Duration) -> String {
        let now = Utc::now().timestamp();
        self.issue_with_expiry(identity, now, now + valid_for.as_secs() as i64)
    }

    /// Signs a token with explicit times, e.g. an already expired one for a test.
    pub fn issue_with_expiry(&self, identity: &Identity, issued_at: i64, expires_at: i64) -> String {
        let (sub, role) = identity.subject_and_role();
        let claims = Claims { sub, role, iss: ISSUER.to_owned(), iat: issued_at, exp: expires_at };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .expect("HS256 signing with a byte secret cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (TokenIssuer, TokenVerifier) {
        (TokenIssuer::new("test-secret"), TokenVerifier::new("test-secret"))
    }

    #[test]
    fn a_customer_token_round_trips() {
        let (issuer, verifier) = pair();
        let identity = Identity::Customer { customer_id: Uuid::now_v7() };
        let token = issuer.issue(&identity, Duration::from_secs(60));
        assert_eq!(verifier.verify_authorization(Some(&format!("Bearer {token}"))), Ok(identity));
    }

    #[test]
    fn expired_forged_and_missing_tokens_are_refused() {
        let (issuer, verifier) = pair();
        let operator = Identity::Operator { subject: "ops".into() };
        let now = Utc::now().timestamp();
        let expired = issuer.issue_with_expiry(&operator, now - 7200, now - 3600);
        assert_eq!(verifier.verify(&expired), Err(AuthError::Expired));

        let forged = TokenIssuer::new("another-secret").issue(&operator, Duration::from_secs(60));
        assert!(matches!(verifier.verify(&forged), Err(AuthError::Invalid(_))));

        assert_eq!(verifier.verify_authorization(None), Err(AuthError::Missing));
        assert_eq!(verifier.verify_authorization(Some("Basic abc")), Err(AuthError::NotBearer));
    }

    #[test]
    fn a_signed_token_with_an_unknown_role_is_refused_in_words() {
        #[derive(Serialize)]
        struct Odd {
            sub: &'static str,
            role: &'static str,
            iss: &'static str,
            exp: i64,
        }
        let claims = Odd { sub: "x", role: "admin", iss: ISSUER, exp: Utc::now().timestamp() + 60 };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"test-secret"))
                .expect("signed");
        let (_, verifier) = pair();
        let refused = verifier.verify(&token).unwrap_err().to_string();
        assert!(refused.contains("role this service knows"), "{refused}");
        assert!(!refused.contains("variant"), "no serde internals: {refused}");
    }

    #[test]
    fn connection_init_payloads_in_both_shapes_are_read() {
        let (issuer, verifier) = pair();
        let operator = Identity::Operator { subject: "ops".into() };
        let bearer = format!("Bearer {}", issuer.issue(&operator, Duration::from_secs(60)));
        let flat = serde_json::json!({ "Authorization": bearer });
        let nested = serde_json::json!({ "headers": { "authorization": bearer } });
        assert_eq!(verifier.verify_connection_init(&flat), Ok(operator.clone()));
        assert_eq!(verifier.verify_connection_init(&nested), Ok(operator));
        assert_eq!(verifier.verify_connection_init(&serde_json::json!({})), Err(AuthError::Missing));
    }
}
