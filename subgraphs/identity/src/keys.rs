//! The public keys a verifier trusts: a JWKS read from a URL (the identity provider's)
//! or a file, kept in memory and read again
//!
//! - when it is older than the refresh interval, so a key the provider removed stops
//!   working within that interval, and
//! - when a token names a key id it does not hold (at most once a second), so a token
//!   signed by a key the provider just added is accepted at once, without a restart.
//!
//! A read that fails keeps the keys already held (the provider may be briefly down);
//! symmetric (`oct`) keys and encryption keys are never used to verify.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Where a JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// An `http://` or `https://` URL, e.g. the provider's `jwks_uri`.
    Url(String),
    /// A file: a mounted secret or config map, or one a test writes.
    File(PathBuf),
}

impl JwksSource {
    /// A URL when `value` starts with `http://` or `https://`, a file path otherwise.
    pub fn parse(value: &str) -> Self {
        let value = value.trim();
        if value.starts_with("http://") || value.starts_with("https://") {
            Self::Url(value.to_owned())
        } else {
            Self::File(PathBuf::from(value))
        }
    }
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(url) => f.write_str(url),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One verification key and what it may verify.
#[derive(Clone)]
pub struct TrustedKey {
    pub key: Arc<DecodingKey>,
    /// The algorithm the JWKS pins for the key, if it does.
    pub algorithm: Option<Algorithm>,
    /// The algorithms the key's type can verify at all (EC P-256: ES256; RSA: RS*/PS*).
    pub fits: fn(Algorithm) -> bool,
}

impl TrustedKey {
    pub fn verifies(&self, algorithm: Algorithm) -> bool {
        (self.fits)(algorithm) && self.algorithm.is_none_or(|pinned| pinned == algorithm)
    }
}

#[derive(Default)]
struct Held {
    by_id: HashMap<String, TrustedKey>,
    /// Keys without an id, for tokens without one (a provider with a single key).
    anonymous: Vec<TrustedKey>,
    read_at: Option<Instant>,
    tried_at: Option<Instant>,
}

/// A JWKS kept in memory; see the module documentation.
pub struct KeySet {
    source: JwksSource,
    refresh: Duration,
    held: std::sync::RwLock<Arc<Held>>,
    reading: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

/// How soon after a read an unknown key id may cause another.
const MIN_REREAD: Duration = Duration::from_secs(1);

impl KeySet {
    pub fn new(source: JwksSource, refresh: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client with a timeout builds");
        Self { source, refresh, held: Default::default(), reading: Default::default(), http }
    }

    pub fn source(&self) -> &JwksSource {
        &self.source
    }

    /// Reads the keys now; an error says what is wrong with the source.
    pub async fn load(&self) -> Result<usize, String> {
        let _reading = self.reading.lock().await;
        self.read().await
    }

    /// The key with id `kid` (or a key without id, for a token without one).
    pub async fn find(&self, kid: Option<&str>) -> Option<TrustedKey> {
        let held = self.held();
        let stale = held.read_at.is_none_or(|at| at.elapsed() >= self.refresh);
        if !stale && let Some(key) = lookup(&held, kid) {
            return Some(key);
        }
        self.reread(stale).await;
        lookup(&self.held(), kid)
    }

    /// Whether a key with id `kid` is held now, without reading anything.
    pub fn holds(&self, kid: &str) -> bool {
        self.held().by_id.contains_key(kid)
    }

    fn held(&self) -> Arc<Held> {
        self.held.read().expect("key set lock").clone()
    }

    /// Reads again unless another caller just did (or, for an unknown key id, unless
    /// the last try was under a second ago).
    async fn reread(&self, stale: bool) {
        let _reading = self.reading.lock().await;
        let held = self.held();
        let fresh = held.read_at.is_some_and(|at| at.elapsed() < self.refresh);
        let just_tried = held.tried_at.is_some_and(|at| at.elapsed() < MIN_REREAD);
        if (stale && fresh) || just_tried {
            return;
        }
        if let Err(error) = self.read().await {
            tracing::warn!(source = %self.source, %error, "could not read the token keys; keeping the ones held");
        }
    }

    async fn read(&self) -> Result<usize, String> {
        let result = self.fetch().await.and_then(|document| {
            serde_json::from_str::<JwkSet>(&document)
                .map_err(|error| format!("{} is not a JWKS document: {error}", self.source))
        });
        let mut held = self.held.write().expect("key set lock");
        let mut next = Held { tried_at: Some(Instant::now()), ..Default::default() };
        match result {
            Ok(set) => {
                for jwk in &set.keys {
                    let Some(key) = trusted(jwk) else { continue };
                    match &jwk.common.key_id {
                        Some(kid) => {
                            next.by_id.insert(kid.clone(), key);
                        }
                        None => next.anonymous.push(key),
                    }
                }
                next.read_at = Some(Instant::now());
                let count = next.by_id.len() + next.anonymous.len();
                *held = Arc::new(next);
                Ok(count)
            }
            Err(error) => {
                next.by_id = held.by_id.clone();
                next.anonymous = held.anonymous.clone();
                next.read_at = held.read_at;
                *held = Arc::new(next);
                Err(error)
            }
        }
    }

    async fn fetch(&self) -> Result<String, String> {
        match &self.source {
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|error| format!("reading the JWKS file {}: {error}", path.display())),
            JwksSource::Url(url) => {
                let response =
                    self.http.get(url).send().await.map_err(|error| format!("fetching the JWKS {url}: {error}"))?;
                if !response.status().is_success() {
                    return Err(format!("fetching the JWKS {url}: HTTP {}", response.status()));
                }
                response.text().await.map_err(|error| format!("reading the JWKS {url}: {error}"))
            }
        }
    }
}

fn lookup(held: &Held, kid: Option<&str>) -> Option<TrustedKey> {
    match kid {
        Some(kid) => held.by_id.get(kid).cloned(),
        None => match held.anonymous.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        },
    }
}

/// A JWK as a verification key, or `None` for keys that must never verify a token: a
/// symmetric secret (whoever verifies could sign), an encryption key, an unknown type.
fn trusted(jwk: &Jwk) -> Option<TrustedKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let fits: fn(Algorithm) -> bool = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => |algorithm| algorithm == Algorithm::ES256,
            EllipticCurve::P384 => |algorithm| algorithm == Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::RSA(_) => |algorithm| {
            matches!(
                algorithm,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            )
        },
        AlgorithmParameters::OctetKeyPair(_) => |algorithm| algorithm == Algorithm::EdDSA,
        // Symmetric secrets and anything newer than this code: never.
        _ => return None,
    };
    let algorithm = jwk.common.key_algorithm.and_then(|algorithm| algorithm.to_string().parse::<Algorithm>().ok());
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(TrustedKey { key: Arc::new(key), algorithm, fits })
}
