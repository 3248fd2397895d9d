//! The keys one running system uses, and what each process is told about them:
//!
//! - the user-token issuer: the development issuer's key (`make run`) or a test's own;
//!   every process verifies with its public half (`TOKEN_ISSUER`, `TOKEN_JWKS`);
//! - rental's own key for calling payment (`SERVICE_KEY_FILE`, rental only), whose
//!   public half payment alone trusts (`SERVICE_CALLERS_JWKS`, payment only).
//!
//! A test gets fresh keys in a private temporary directory, removed when it is dropped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use identity::{DEFAULT_AUDIENCE, Identity, JwksSource, TokenIssuer, TokenSettings};

/// The issuer name of the keys tests make.
pub const TEST_ISSUER: &str = "water-rental-test";

pub struct Identities {
    /// Signs user tokens (customers, operators).
    pub users: TokenIssuer,
    /// Rental's own key, for its calls to payment.
    pub rental: TokenIssuer,
    users_jwks: JwksSource,
    rental_key_file: PathBuf,
    callers_jwks_file: PathBuf,
    /// How often verifiers read the user keys again (tests of rotation shorten it).
    pub refresh: Duration,
    /// A temporary directory to remove on drop.
    temporary: Option<PathBuf>,
}

impl Identities {
    /// Fresh keys for a test, in a private temporary directory.
    pub fn generate() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("water-rental-keys-{}", uuid::Uuid::new_v4().simple()));
        private_dir(&dir)?;
        let users = TokenIssuer::generate(TEST_ISSUER, DEFAULT_AUDIENCE);
        let users_file = dir.join("users.jwks.json");
        write_jwks(&users_file, &[&users])?;
        let mut identities = Self::with_rental_key(users, JwksSource::File(users_file), &dir)?;
        identities.temporary = Some(dir);
        Ok(identities)
    }

    /// The development system's keys: `users` is the development issuer (serving its
    /// JWKS at `users_jwks`); rental's key is kept in `dir` across restarts.
    pub fn development(users: TokenIssuer, users_jwks: JwksSource, dir: &Path) -> anyhow::Result<Self> {
        private_dir(dir)?;
        Self::with_rental_key(users, users_jwks, dir)
    }

    fn with_rental_key(users: TokenIssuer, users_jwks: JwksSource, dir: &Path) -> anyhow::Result<Self> {
        let rental_key_file = dir.join("rental-service-key.pem");
        let pem = identity::token::load_or_create_private_key(&rental_key_file, true).map_err(anyhow::Error::msg)?;
        let rental = TokenIssuer::from_pem(&pem, rental::SERVICE, payment::SERVICE).map_err(anyhow::Error::msg)?;
        let callers_jwks_file = dir.join("payment-callers.jwks.json");
        write_jwks(&callers_jwks_file, &[&rental])?;
        Ok(Self {
            users,
            rental,
            users_jwks,
            rental_key_file,
            callers_jwks_file,
            refresh: Duration::from_secs(300),
            temporary: None,
        })
    }

    /// A user token valid for ten minutes.
    pub fn token(&self, identity: &Identity) -> String {
        self.users.issue(identity, Duration::from_secs(600))
    }

    /// How every process checks user tokens.
    pub fn token_settings(&self) -> TokenSettings {
        let mut settings = TokenSettings::new(self.users.issuer(), self.users_jwks.clone());
        settings.refresh = self.refresh;
        settings
    }

    /// The JWKS payment trusts for calls from other services (rental's public key).
    pub fn service_callers(&self) -> JwksSource {
        JwksSource::File(self.callers_jwks_file.clone())
    }

    /// The file with rental's private key.
    pub fn rental_key_file(&self) -> &Path {
        &self.rental_key_file
    }

    /// The variables about tokens and keys that `service` (a subgraph, or `router`)
    /// gets, and no more: only rental gets its key, only payment the callers' keys.
    pub fn env_for(&self, service: &str) -> Vec<(String, String)> {
        let mut env = vec![
            ("TOKEN_ISSUER".to_owned(), self.users.issuer().to_owned()),
            ("TOKEN_JWKS".to_owned(), self.users_jwks.to_string()),
            ("TOKEN_JWKS_REFRESH_SECONDS".to_owned(), self.refresh.as_secs().max(1).to_string()),
        ];
        if service == rental::SERVICE {
            env.push(("SERVICE_KEY_FILE".to_owned(), self.rental_key_file.display().to_string()));
        }
        if service == payment::SERVICE {
            env.push(("SERVICE_CALLERS_JWKS".to_owned(), self.callers_jwks_file.display().to_string()));
        }
        env
    }

    /// Rewrites the user JWKS file (tests of key rotation): the verifiers trust exactly
    /// `keys` from their next read.
    pub fn publish_user_keys(&self, keys: &[&TokenIssuer]) -> anyhow::Result<()> {
        let JwksSource::File(path) = &self.users_jwks else {
            anyhow::bail!("the user keys are served by the development issuer, not a file");
        };
        let staged = path.with_extension("next");
        let _ = std::fs::remove_file(&staged);
        write_jwks(&staged, keys)?;
        std::fs::rename(&staged, path).context("replacing the JWKS file")?;
        Ok(())
    }
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("users", &self.users)
            .field("users_jwks", &self.users_jwks)
            .field("rental", &self.rental)
            .finish_non_exhaustive()
    }
}

impl Drop for Identities {
    fn drop(&mut self) {
        if let Some(dir) = &self.temporary {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub(crate) fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}

fn write_jwks(path: &Path, keys: &[&TokenIssuer]) -> anyhow::Result<()> {
    let document = serde_json::json!({
        "keys": keys.iter().flat_map(|key| serde_json::to_value(key.jwks()).expect("a JWKS serializes")["keys"].as_array().cloned().unwrap_or_default()).collect::<Vec<_>>()
    });
    std::fs::write(path, serde_json::to_vec_pretty(&document)?).with_context(|| format!("writing {}", path.display()))
}
