//! Verifying a caller's token: what the router and every subgraph do with the
//! `Authorization` header, with the same code and the same sentences.
//!
//! A user token (customer or operator) must be signed by a key of the identity
//! provider's JWKS with an accepted algorithm, name the configured issuer and audience,
//! be within its validity, and carry a role the configuration maps to ours. A service
//! that takes calls from other services (payment, from rental) also trusts those
//! services' own keys, and only for tokens addressed to it; no user token can pass as
//! a service and no service key can pass as a user.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::keys::{JwksSource, KeySet, TrustedKey};
use crate::token::{AuthError, DEFAULT_AUDIENCE, Identity};

/// How user tokens are checked. From the environment with [`TokenSettings::from_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// The `iss` every token must carry (`TOKEN_ISSUER`).
    pub issuer: String,
    /// The `aud` every token must carry (`TOKEN_AUDIENCE`, default `water-rental`).
    pub audience: String,
    /// The provider's public keys (`TOKEN_JWKS`: a URL or a file).
    pub jwks: JwksSource,
    /// The signature algorithms accepted (`TOKEN_ALGORITHMS`, default `ES256,RS256`);
    /// symmetric ones (HS*) and `none` are refused even if asked for.
    pub algorithms: Vec<Algorithm>,
    /// The claim holding a customer's id, a UUID (`TOKEN_CUSTOMER_CLAIM`, default `sub`).
    pub customer_claim: String,
    /// The claim holding the role, a string or a list of strings; a dotted path reaches
    /// into objects, e.g. Keycloak's `realm_access.roles` (`TOKEN_ROLE_CLAIM`, default `role`).
    pub role_claim: String,
    /// The role values that make a caller a customer or an operator
    /// (`TOKEN_CUSTOMER_ROLE`, `TOKEN_OPERATOR_ROLE`; default `customer`, `operator`).
    pub customer_role: String,
    pub operator_role: String,
    /// How old the held keys may get before they are read again (`TOKEN_JWKS_REFRESH_SECONDS`, 300).
    pub refresh: Duration,
}

/// What to set when tokens cannot be checked: said at start instead of starting.
const HOW_TO_CONFIGURE: &str = "set TOKEN_ISSUER (the identity provider's issuer) and TOKEN_JWKS (its JWKS URL, \
     or a JWKS file); `make run` and compose start a development issuer and set both (docs/security.md)";

impl TokenSettings {
    /// Settings for tokens of `issuer` at `jwks`, with every other value at its default.
    pub fn new(issuer: &str, jwks: JwksSource) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            jwks,
            algorithms: vec![Algorithm::ES256, Algorithm::RS256],
            customer_claim: "sub".into(),
            role_claim: "role".into(),
            customer_role: "customer".into(),
            operator_role: "operator".into(),
            refresh: Duration::from_secs(300),
        }
    }

    /// Reads the `TOKEN_*` variables. There is no default issuer or key: without them
    /// the process must not start, and the error says what to set.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().map(|value| value.trim().to_owned()).filter(|v| !v.is_empty());
        let (Some(issuer), Some(jwks)) = (var("TOKEN_ISSUER"), var("TOKEN_JWKS")) else {
            return Err(format!("tokens cannot be verified: {HOW_TO_CONFIGURE}"));
        };
        let mut settings = Self::new(&issuer, JwksSource::parse(&jwks));
        if let Some(audience) = var("TOKEN_AUDIENCE") {
            settings.audience = audience;
        }
        if let Some(algorithms) = var("TOKEN_ALGORITHMS") {
            settings.algorithms = parse_algorithms(&algorithms)?;
        }
        for (name, field) in [
            ("TOKEN_CUSTOMER_CLAIM", &mut settings.customer_claim),
            ("TOKEN_ROLE_CLAIM", &mut settings.role_claim),
            ("TOKEN_CUSTOMER_ROLE", &mut settings.customer_role),
            ("TOKEN_OPERATOR_ROLE", &mut settings.operator_role),
        ] {
            if let Some(value) = var(name) {
                *field = value;
            }
        }
        if let Some(seconds) = var("TOKEN_JWKS_REFRESH_SECONDS") {
            let seconds: u64 = seconds.parse().ok().filter(|seconds| *seconds >= 1).ok_or_else(|| {
                format!("TOKEN_JWKS_REFRESH_SECONDS={seconds} must be a whole number of seconds, 1 or more")
            })?;
            settings.refresh = Duration::from_secs(seconds);
        }
        Ok(settings)
    }
}

/// `ES256,RS256` → the algorithms; symmetric ones and unknown names are an error.
pub fn parse_algorithms(list: &str) -> Result<Vec<Algorithm>, String> {
    let mut algorithms = Vec::new();
    for name in list.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        let algorithm: Algorithm =
            name.parse().map_err(|_| format!("TOKEN_ALGORITHMS: {name} is not a JWS algorithm"))?;
        if matches!(algorithm, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(format!(
                "TOKEN_ALGORITHMS: {name} is symmetric (whoever can verify it can sign it); use ES256 or RS256"
            ));
        }
        algorithms.push(algorithm);
    }
    if algorithms.is_empty() {
        return Err("TOKEN_ALGORITHMS names no algorithm".into());
    }
    Ok(algorithms)
}

/// The keys of the services allowed to call this one, and this service's name, which
/// their tokens must name as audience (`SERVICE_CALLERS_JWKS`).
struct ServiceCallers {
    keys: KeySet,
    audience: String,
}

/// Verifies tokens; cheap to clone (the keys are shared).
#[derive(Clone)]
pub struct TokenVerifier {
    settings: Arc<TokenSettings>,
    users: Arc<KeySet>,
    services: Option<Arc<ServiceCallers>>,
}

impl TokenVerifier {
    pub fn new(settings: TokenSettings) -> Self {
        let users = Arc::new(KeySet::new(settings.jwks.clone(), settings.refresh));
        Self { settings: Arc::new(settings), users, services: None }
    }

    /// Also accepts tokens signed by the keys at `jwks` and addressed to `service`: the
    /// services allowed to call this one, and only them.
    pub fn with_service_callers(mut self, jwks: JwksSource, service: &str) -> Self {
        let keys = KeySet::new(jwks, self.settings.refresh);
        self.services = Some(Arc::new(ServiceCallers { keys, audience: service.to_owned() }));
        self
    }

    /// Reads every key set once: a process checks at start that it can verify at all.
    pub async fn load(&self) -> Result<(), String> {
        let users = self.users.load().await?;
        if users == 0 {
            return Err(format!("{} holds no key that can verify a signature", self.users.source()));
        }
        if let Some(services) = &self.services {
            services.keys.load().await?;
        }
        Ok(())
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// Verifies the value of an `Authorization` header (`Bearer <token>`).
    pub async fn verify_authorization(&self, header: Option<&str>) -> Result<Identity, AuthError> {
        let header = header.map(str::trim).filter(|value| !value.is_empty());
        let header = header.ok_or(AuthError::Missing)?;
        let (scheme, token) = header.split_once(' ').ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::NotBearer);
        }
        self.verify(token.trim()).await
    }

    /// Verifies the identity sent in a graphql-transport-ws `connection_init` payload.
    /// The router forwards headers there as `{"headers": {"authorization": ...}}`; clients
    /// that talk to a subgraph directly usually send `{"Authorization": ...}`. Both work.
    pub async fn verify_connection_init(&self, payload: &Value) -> Result<Identity, AuthError> {
        self.verify_authorization(authorization_in_payload(payload)).await
    }

    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid("it is not a well-formed JWT".into()))?;
        let kid = header.kid.as_deref();
        // A calling service's key is known by its id; anything else is a user token.
        if let (Some(services), Some(kid)) = (&self.services, kid)
            && services.keys.holds(kid)
            && let Some(key) = services.keys.find(Some(kid)).await
        {
            return self.verify_service(token, header.alg, &key, services);
        }
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "it is signed with {:?}, and this service accepts only {}",
                header.alg,
                self.settings
                    .algorithms
                    .iter()
                    .map(|algorithm| format!("{algorithm:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let Some(key) = self.users.find(kid).await else {
            // Perhaps a service whose key was rotated since it was last read.
            if let (Some(services), Some(kid)) = (&self.services, kid)
                && let Some(key) = services.keys.find(Some(kid)).await
            {
                return self.verify_service(token, header.alg, &key, services);
            }
            return Err(AuthError::Invalid("it is signed by a key this service does not trust".into()));
        };
        if !key.verifies(header.alg) {
            return Err(AuthError::Invalid("its algorithm does not fit its key".into()));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 5;
        let claims = decode(token, &key, &validation)?;
        self.user_identity(&claims)
    }

    fn verify_service(
        &self,
        token: &str,
        algorithm: Algorithm,
        key: &TrustedKey,
        services: &ServiceCallers,
    ) -> Result<Identity, AuthError> {
        if !key.verifies(algorithm) {
            return Err(AuthError::Invalid("its algorithm does not fit its key".into()));
        }
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&[&services.audience]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = 5;
        let claims = decode(token, key, &validation)?;
        let name = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        Ok(Identity::Service { name: name.to_owned() })
    }

    /// The caller a verified user token names, by the configured claims.
    fn user_identity(&self, claims: &Map<String, Value>) -> Result<Identity, AuthError> {
        let settings = &self.settings;
        let roles = match claim(claims, &settings.role_claim) {
            Some(Value::String(role)) => vec![role.as_str()],
            Some(Value::Array(roles)) => roles.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let subject = claims.get("sub").and_then(Value::as_str);
        if roles.contains(&settings.operator_role.as_str()) {
            let subject =
                subject.ok_or_else(|| AuthError::Invalid("an operator token must name its subject".into()))?;
            return Ok(Identity::Operator { subject: subject.to_owned() });
        }
        if roles.contains(&settings.customer_role.as_str()) {
            let id = claim(claims, &settings.customer_claim).and_then(Value::as_str);
            let customer_id = id.and_then(|id| Uuid::parse_str(id).ok()).ok_or_else(|| {
                AuthError::Invalid(format!(
                    "a customer token's {} claim must be a customer id",
                    settings.customer_claim
                ))
            })?;
            return Ok(Identity::Customer { customer_id });
        }
        Err(AuthError::Invalid(format!(
            "it does not name a role this service knows ({} or {}) in its {} claim",
            settings.customer_role, settings.operator_role, settings.role_claim
        )))
    }
}

fn decode(token: &str, key: &TrustedKey, validation: &Validation) -> Result<Map<String, Value>, AuthError> {
    jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation).map(|data| data.claims).map_err(|error| {
        let reason = match error.kind() {
            ErrorKind::ExpiredSignature => return AuthError::Expired,
            ErrorKind::InvalidSignature => "its signature does not match",
            ErrorKind::InvalidIssuer => "it was not issued by the identity provider this service trusts",
            ErrorKind::InvalidAudience => "it is not meant for this service (its audience)",
            ErrorKind::ImmatureSignature => "it is not valid yet",
            ErrorKind::MissingRequiredClaim(_) => "it lacks a required claim (exp, iss, aud)",
            ErrorKind::InvalidAlgorithm => "its algorithm does not fit its key",
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                "it is not a well-formed JWT"
            }
            _ => "it could not be verified",
        };
        AuthError::Invalid(reason.into())
    })
}

/// The value at a dotted `path` (`realm_access.roles`); a claim whose own name holds
/// dots (`https://example.com/role`) is found too.
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

fn authorization_in_payload(payload: &Value) -> Option<&str> {
    fn find(object: &Value) -> Option<&str> {
        object.as_object()?.iter().find(|(key, _)| key.eq_ignore_ascii_case("authorization"))?.1.as_str()
    }
    find(payload).or_else(|| payload.get("headers").and_then(find))
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::TokenIssuer;

    const ISSUER: &str = "https://issuer.test";

    /// A JWKS file of its own, removed at the end.
    struct JwksFile(std::path::PathBuf);

    impl JwksFile {
        fn new(keys: &[&TokenIssuer]) -> Self {
            let path = std::env::temp_dir().join(format!("identity-test-{}.json", Uuid::now_v7().simple()));
            let file = Self(path);
            file.publish(keys);
            file
        }

        fn publish(&self, keys: &[&TokenIssuer]) {
            let keys: Vec<_> = keys.iter().flat_map(|key| key.jwks().keys).collect();
            let staged = self.0.with_extension("next");
            std::fs::write(&staged, serde_json::to_vec(&json!({ "keys": keys })).unwrap()).unwrap();
            std::fs::rename(&staged, &self.0).unwrap();
        }

        fn source(&self) -> JwksSource {
            JwksSource::File(self.0.clone())
        }
    }

    impl Drop for JwksFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn provider() -> TokenIssuer {
        TokenIssuer::generate(ISSUER, DEFAULT_AUDIENCE)
    }

    async fn verifier(file: &JwksFile) -> TokenVerifier {
        let verifier = TokenVerifier::new(TokenSettings::new(ISSUER, file.source()));
        verifier.load().await.expect("keys load");
        verifier
    }

    fn invalid(result: Result<Identity, AuthError>) -> String {
        match result {
            Err(AuthError::Invalid(reason)) => reason,
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn customers_and_operators_round_trip() {
        let provider = provider();
        let file = JwksFile::new(&[&provider]);
        let verifier = verifier(&file).await;
        let customer = Identity::Customer { customer_id: Uuid::now_v7() };
        let token = provider.issue(&customer, Duration::from_secs(60));
        assert_eq!(verifier.verify_authorization(Some(&format!("Bearer {token}"))).await, Ok(customer));
        let operator = Identity::Operator { subject: "ops".into() };
        let token = provider.issue(&operator, Duration::from_secs(60));
        assert_eq!(verifier.verify(&token).await, Ok(operator));
        assert_eq!(verifier.verify_authorization(None).await, Err(AuthError::Missing));
        assert_eq!(verifier.verify_authorization(Some("Basic abc")).await, Err(AuthError::NotBearer));
    }

    #[tokio::test]
    async fn expired_foreign_and_misaddressed_tokens_are_refused_in_words() {
        let provider = provider();
        let file = JwksFile::new(&[&provider]);
        let verifier = verifier(&file).await;
        let operator = Identity::Operator { subject: "ops".into() };
        let now = Utc::now().timestamp();

        let expired = provider.issue_with_expiry(&operator, now - 7200, now - 3600);
        assert_eq!(verifier.verify(&expired).await, Err(AuthError::Expired));

        let other_issuer = provider.for_audience("https://elsewhere.test", DEFAULT_AUDIENCE);
        let reason = invalid(verifier.verify(&other_issuer.issue(&operator, Duration::from_secs(60))).await);
        assert!(reason.contains("not issued by the identity provider"), "{reason}");

        let other_audience = provider.for_audience(ISSUER, "another-app");
        let reason = invalid(verifier.verify(&other_audience.issue(&operator, Duration::from_secs(60))).await);
        assert!(reason.contains("audience"), "{reason}");

        let stranger = TokenIssuer::generate(ISSUER, DEFAULT_AUDIENCE).issue(&operator, Duration::from_secs(60));
        let reason = invalid(verifier.verify(&stranger).await);
        assert!(reason.contains("key this service does not trust"), "{reason}");

        let forged = TokenIssuer::generate(ISSUER, DEFAULT_AUDIENCE)
            .with_key_id(provider.key_id())
            .issue(&operator, Duration::from_secs(60));
        assert_eq!(invalid(verifier.verify(&forged).await), "its signature does not match");
    }

    #[tokio::test]
    async fn tampered_unsigned_and_symmetric_tokens_are_refused() {
        let provider = provider();
        let file = JwksFile::new(&[&provider]);
        let verifier = verifier(&file).await;
        let customer = provider.issue(&Identity::Customer { customer_id: Uuid::now_v7() }, Duration::from_secs(60));
        let parts: Vec<&str> = customer.split('.').collect();

        // The payload says operator now; the signature is the customer's.
        let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["role"] = json!("operator");
        let tampered =
            format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()), parts[2]);
        assert_eq!(invalid(verifier.verify(&tampered).await), "its signature does not match");

        // alg: none, no signature.
        let none = URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "kid": provider.key_id() }).to_string());
        let unsigned = format!("{none}.{}.", parts[1]);
        assert!(verifier.verify(&unsigned).await.is_err());

        // HS256 keyed with the public key (the classic confusion attack).
        let public = serde_json::to_vec(&provider.jwks()).unwrap();
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some(provider.key_id().to_owned());
        let confused =
            jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(&public)).unwrap();
        let reason = invalid(verifier.verify(&confused).await);
        assert!(reason.contains("accepts only ES256, RS256"), "{reason}");
    }

    #[tokio::test]
    async fn a_new_key_works_at_once_and_a_removed_key_stops_within_the_refresh() {
        let old = provider();
        let file = JwksFile::new(&[&old]);
        let mut settings = TokenSettings::new(ISSUER, file.source());
        settings.refresh = Duration::from_secs(1);
        let verifier = TokenVerifier::new(settings);
        verifier.load().await.unwrap();
        let operator = Identity::Operator { subject: "ops".into() };
        let old_token = old.issue(&operator, Duration::from_secs(600));
        assert!(verifier.verify(&old_token).await.is_ok());

        let new = provider();
        file.publish(&[&old, &new]);
        // Past the one-second pause between reads for unknown key ids.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(verifier.verify(&new.issue(&operator, Duration::from_secs(600))).await, Ok(operator.clone()));

        file.publish(&[&new]);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let reason = invalid(verifier.verify(&old_token).await);
        assert!(reason.contains("key this service does not trust"), "{reason}");
    }

    #[tokio::test]
    async fn roles_and_customer_ids_come_from_the_configured_claims() {
        let provider = provider();
        let file = JwksFile::new(&[&provider]);
        // Keycloak-style: roles in realm_access.roles, the customer id in its own claim.
        let mut settings = TokenSettings::new(ISSUER, file.source());
        settings.role_claim = "realm_access.roles".into();
        settings.operator_role = "water-operator".into();
        settings.customer_role = "water-customer".into();
        settings.customer_claim = "customer_id".into();
        let verifier = TokenVerifier::new(settings);
        let now = Utc::now().timestamp();
        let customer_id = Uuid::now_v7();
        let claims = |roles: Value| {
            json!({ "sub": "f:123:alice", "iss": ISSUER, "aud": [DEFAULT_AUDIENCE, "account"], "exp": now + 60,
                    "customer_id": customer_id, "realm_access": { "roles": roles } })
        };
        let customer = provider.sign(&claims(json!(["offline_access", "water-customer"])));
        assert_eq!(verifier.verify(&customer).await, Ok(Identity::Customer { customer_id }));
        let operator = provider.sign(&claims(json!(["water-operator"])));
        assert_eq!(verifier.verify(&operator).await, Ok(Identity::Operator { subject: "f:123:alice".into() }));
        let nobody = provider.sign(&claims(json!(["offline_access"])));
        assert!(invalid(verifier.verify(&nobody).await).contains("role this service knows"));
        // A user token that says "service" is no service.
        let service = provider.sign(
            &json!({ "sub": "rental", "role": "service", "iss": ISSUER, "aud": DEFAULT_AUDIENCE, "exp": now + 60 }),
        );
        assert!(invalid(verifier.verify(&service).await).contains("role this service knows"));
    }

    #[tokio::test]
    async fn only_a_trusted_services_key_makes_a_service_and_only_for_its_audience() {
        let provider = provider();
        let users = JwksFile::new(&[&provider]);
        let rental = TokenIssuer::generate("rental", "payment");
        let callers = JwksFile::new(&[&rental]);
        let payment = TokenVerifier::new(TokenSettings::new(ISSUER, users.source()))
            .with_service_callers(callers.source(), "payment");
        payment.load().await.unwrap();
        let service = Identity::Service { name: "rental".into() };
        let token = rental.issue(&service, Duration::from_secs(60));
        assert_eq!(payment.verify(&token).await, Ok(service.clone()));

        // Addressed to another service: refused.
        let elsewhere = rental.for_audience("rental", "inventory").issue(&service, Duration::from_secs(60));
        assert!(invalid(payment.verify(&elsewhere).await).contains("audience"));
        // A service without trusted callers does not know rental's key at all.
        let inventory = verifier(&users).await;
        assert!(invalid(inventory.verify(&token).await).contains("key this service does not trust"));
        // The user provider's key cannot sign as a service.
        let posing = provider.for_audience(ISSUER, "payment").issue(&service, Duration::from_secs(60));
        assert!(payment.verify(&posing).await.is_err());
    }

    #[test]
    fn symmetric_algorithms_cannot_be_configured() {
        assert!(parse_algorithms("ES256,HS256").unwrap_err().contains("symmetric"));
        assert_eq!(parse_algorithms("ES256, RS256").unwrap(), vec![Algorithm::ES256, Algorithm::RS256]);
        assert!(parse_algorithms("none").is_err());
    }
}
