//! Configuration from the environment, with defaults that work on a developer machine
//! (PostgreSQL and RabbitMQ on their standard local ports).

use std::net::SocketAddr;

use anyhow::{Context, bail};

use crate::auth::DEV_JWT_SECRET;

/// Where a service listens, which database it owns and how it checks identity.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Short service name: `inventory`, `rental`, `payment` or `delivery`.
    pub service: &'static str,
    pub listen: SocketAddr,
    pub database: DatabaseConfig,
    pub jwt_secret: String,
    pub events: crate::events::EventsConfig,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Server URL without a database name, e.g. `postgres://postgres@127.0.0.1:5432`.
    pub server_url: String,
    /// The service's own database; created at start when missing.
    pub name: String,
    pub pool_size: usize,
}

impl DatabaseConfig {
    pub fn url(&self) -> String {
        database_url(&self.server_url, &self.name)
    }
}

/// The URL of database `name` on the server at `server_url`.
pub fn database_url(server_url: &str, name: &str) -> String {
    format!("{}/{}", server_url.trim_end_matches('/'), name)
}

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";

impl ServiceConfig {
    /// Reads `<SERVICE>_LISTEN`, `<SERVICE>_DATABASE`, `POSTGRES_URL`, `DB_POOL_SIZE`,
    /// `JWT_SECRET`, `AMQP_URL` and `EVENTS_NAMESPACE`; every one has a local default.
    pub fn from_env(service: &'static str, default_port: u16) -> anyhow::Result<Self> {
        let prefix = service.to_ascii_uppercase();
        let listen = env_or(&format!("{prefix}_LISTEN"), &format!("127.0.0.1:{default_port}"));
        let listen = listen.parse().with_context(|| format!("{prefix}_LISTEN={listen} is not a socket address"))?;
        let pool_size: usize =
            env_or("DB_POOL_SIZE", "16").parse().context("DB_POOL_SIZE must be a positive number")?;
        if pool_size == 0 {
            bail!("DB_POOL_SIZE must be at least 1");
        }
        Ok(Self {
            service,
            listen,
            database: DatabaseConfig {
                server_url: env_or("POSTGRES_URL", DEFAULT_POSTGRES_URL),
                name: env_or(&format!("{prefix}_DATABASE"), &format!("water_{service}")),
                pool_size,
            },
            jwt_secret: jwt_secret_from_env(),
            events: crate::events::EventsConfig::from_env(),
        })
    }
}

/// The shared signing secret for identity tokens. The default is for development only
/// and says so in its own text; `stack` and the services log a warning when it is used.
pub fn jwt_secret_from_env() -> String {
    env_or("JWT_SECRET", DEV_JWT_SECRET)
}

pub fn env_or(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => default.to_owned(),
    }
}
