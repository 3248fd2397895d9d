//! Who is calling, and the signed tokens that say so.
//!
//! Tokens are JWTs signed with an asymmetric key (ES256 by default; RS256 and the other
//! ECDSA and RSA algorithms by configuration): the identity provider holds the private
//! key, every process verifies with its public keys (a JWKS, see [`crate::verify`]).
//! Customers' subject is their customer id; operators are staff. A service calling
//! another (rental → payment) signs with a key of its own that only the called
//! service trusts (see [`crate::verify::TokenVerifier::with_service_callers`]).

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The customer the launcher and the dev-token command mint tokens for by default, so
/// the examples in the README line up.
pub const DEV_CUSTOMER_ID: &str = "0192f1a4-0000-7000-8000-00000000c0de";

/// The audience our tokens are for, unless `TOKEN_AUDIENCE` says otherwise.
pub const DEFAULT_AUDIENCE: &str = "water-rental";

/// The role names a token carries when the provider is configured with the defaults.
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
    Customer {
        customer_id: Uuid,
    },
    Operator {
        subject: String,
    },
    /// Another service of ours, proven by its own key (never by a user token).
    Service {
        name: String,
    },
}

impl Identity {
    /// Staff see everything; a customer sees only their own; a service (rental's key, at
    /// payment) sees no customer's things: it may call the operations made for it
    /// (payment's charges) and read or change nothing else, so a stolen rental key does
    /// not open every payment and invoice.
    pub fn may_see_customer(&self, customer_id: Uuid) -> bool {
        match self {
            Identity::Customer { customer_id: own } => *own == customer_id,
            Identity::Operator { .. } => true,
            Identity::Service { .. } => false,
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

#[derive(Debug, Serialize)]
struct IssuedClaims<'a> {
    sub: String,
    role: Role,
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

/// Signs tokens with one ES256 (P-256) key: the development issuer's, a test's, or a
/// service's own key for calls to another service. Its public half, as a JWKS, is what
/// verifiers trust; the private half never leaves the process that signs.
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    jwk: Jwk,
    issuer: String,
    audience: String,
}

impl TokenIssuer {
    /// An issuer with a key made now, e.g. for a test.
    pub fn generate(issuer: &str, audience: &str) -> Self {
        Self::from_pem(&new_private_key_pem(), issuer, audience).expect("a key made here is a valid P-256 key")
    }

    /// An issuer with the P-256 private key in `pem` (PKCS#8, `BEGIN PRIVATE KEY`).
    pub fn from_pem(pem: &str, issuer: &str, audience: &str) -> Result<Self, String> {
        let key = EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|error| format!("not a PKCS#8 P-256 private key in PEM: {error}"))?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)
            .map_err(|error| format!("not a P-256 private key: {error}"))?;
        // The key id is the key's own thumbprint (RFC 7638): stable, and a new key gets a
        // new one, so verifiers tell keys apart during a rotation.
        jwk.common.key_id = Some(jwk.thumbprint(ThumbprintHash::SHA256).map_err(|error| error.to_string())?);
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
        Ok(Self { key, jwk, issuer: issuer.to_owned(), audience: audience.to_owned() })
    }

    /// The same key, signing for another issuer name or audience.
    pub fn for_audience(&self, issuer: &str, audience: &str) -> Self {
        Self { issuer: issuer.to_owned(), audience: audience.to_owned(), ..self.clone() }
    }

    /// The same key under another key id: a forger's key claiming to be a trusted one
    /// (tests of the verifier).
    pub fn with_key_id(&self, key_id: &str) -> Self {
        let mut forged = self.clone();
        forged.jwk.common.key_id = Some(key_id.to_owned());
        forged
    }

    pub fn key_id(&self) -> &str {
        self.jwk.common.key_id.as_deref().unwrap_or_default()
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The public key as a JWKS document (what a verifier is given).
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: vec![self.jwk.clone()] }
    }

    pub fn issue(&self, identity: &Identity, valid_for: Duration) -> String {
        let now = Utc::now().timestamp();
        self.issue_with_expiry(identity, now, now + valid_for.as_secs() as i64)
    }

    /// Signs a token with explicit times, e.g. an already expired one for a test.
    pub fn issue_with_expiry(&self, identity: &Identity, issued_at: i64, expires_at: i64) -> String {
        let (sub, role) = identity.subject_and_role();
        let claims =
            IssuedClaims { sub, role, iss: &self.issuer, aud: &self.audience, iat: issued_at, exp: expires_at };
        self.sign(&claims)
    }

    /// Signs any claims with this key (tests of odd or hostile tokens).
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = self.jwk.common.key_id.clone();
        jsonwebtoken::encode(&header, claims, &self.key).expect("ES256 signing with a valid key cannot fail")
    }
}

/// Names the key, never shows it.
impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("key_id", &self.key_id())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// A new P-256 private key in PKCS#8 PEM.
pub fn new_private_key_pem() -> String {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    secret.to_pkcs8_pem(LineEnding::LF).expect("a P-256 key encodes as PKCS#8").to_string()
}

/// Reads a P-256 private key from `path`; when the file does not exist and `create` is
/// set, makes one and writes it there first, readable by its owner only.
pub fn load_or_create_private_key(path: &std::path::Path, create: bool) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(pem) => Ok(pem),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && create => {
            let pem = new_private_key_pem();
            if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|error| format!("creating {}: {error}", parent.display()))?;
            }
            write_private(path, &pem).map_err(|error| format!("writing {}: {error}", path.display()))?;
            Ok(pem)
        }
        Err(error) => Err(format!("reading the private key {}: {error}", path.display())),
    }
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())
}
