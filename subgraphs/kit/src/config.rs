//! Every configuration struct, and the one place that reads them from the environment.
//! A leaf: nothing else in the kit is imported here. Defaults work on a developer
//! machine (PostgreSQL and RabbitMQ on their standard local ports).

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use identity::{JwksSource, TokenSettings};

use crate::clock::Calendar;

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// What every subgraph needs: where it listens, which database it owns, how it checks
/// identity, where the broker is, how it shuts down and what it logs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Short service name: `inventory`, `rental`, `payment` or `delivery`.
    pub service: &'static str,
    pub listen: SocketAddr,
    /// Where `/metrics` is served (`<SERVICE>_METRICS_LISTEN`): a port of its own, so the
    /// service port carries only what callers need (`/graphql`, `/ws`, the probes).
    pub metrics_listen: SocketAddr,
    /// TLS on the service port (`<SERVICE>_TLS_CERT_FILE` and `<SERVICE>_TLS_KEY_FILE`,
    /// both or neither); none serves plain HTTP.
    pub tls: Option<TlsFiles>,
    pub database: DatabaseConfig,
    /// How callers' tokens are checked (`TOKEN_*`); no default: see docs/security.md.
    pub tokens: TokenSettings,
    /// The public keys of the services allowed to call this one (`SERVICE_CALLERS_JWKS`,
    /// a file or URL); none means no service may.
    pub service_callers: Option<JwksSource>,
    pub events: EventsConfig,
    pub shutdown: ShutdownConfig,
    pub telemetry: TelemetryConfig,
    /// How long a month is (`MONTH_SECONDS`; calendar months when unset).
    pub calendar: Calendar,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Server URL without a database name or password, naming the service's own role,
    /// e.g. `postgres://water_rental@127.0.0.1:5432`.
    pub server_url: String,
    /// The role's password (`POSTGRES_PASSWORD_FILE`): read from a file, never part of
    /// a URL anyone configures or sees. None where the server trusts local connections.
    pub password: Option<Secret>,
    /// The CA that signs the server's certificate (`POSTGRES_CA_FILE`): every connection
    /// is then TLS, verified against it alone for the URL's host. None is plain text.
    pub ca_file: Option<std::path::PathBuf>,
    /// The service's own database; created at start when missing.
    pub name: String,
    /// Connections of the pool that serves requests (`DB_POOL_SIZE`).
    pub pool_size: usize,
    /// Connections of the pool for background work: the relay, the consumer, the
    /// schedulers (`DB_BACKGROUND_POOL_SIZE`). It never competes with requests, and its
    /// statements are not counted as theirs. A replica opens both pools.
    pub background_pool_size: usize,
    /// Whether the service runs its pending migrations when it starts
    /// (`DB_MIGRATE_ON_START`, true); false leaves them to `<service> migrate`.
    pub migrate_on_start: bool,
    /// Limits of a migration run: how long it waits for a lock, and how long one
    /// statement may take (`MIGRATION_LOCK_TIMEOUT_MS`, `MIGRATION_STATEMENT_TIMEOUT_MS`).
    pub migration_lock_timeout: Duration,
    pub migration_statement_timeout: Duration,
}

impl DatabaseConfig {
    /// The URL the service connects with: the server URL, the password (when there is
    /// one) and the database. It holds the secret: connect with it, never print it.
    pub fn url(&self) -> String {
        database_url(&self.server_url_with_password(), &self.name)
    }

    /// The server URL with the password, for the maintenance connection that checks
    /// the database exists. It holds the secret, as [`DatabaseConfig::url`] does.
    pub fn server_url_with_password(&self) -> String {
        with_password_if_any(&self.server_url, self.password.as_ref())
    }
}

/// A password or key read from a file: its `Debug` shows no content, so a configuration
/// logged whole leaks nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself, for the one place that hands it to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret in the file named by `variable`, without its final line break; an
    /// unset or blank variable is none. A file that cannot be read, or is empty, stops
    /// the process with a sentence naming the variable.
    pub fn from_file_named_by(variable: &str) -> anyhow::Result<Option<Self>> {
        let Some(path) = std::env::var(variable).ok().filter(|value| !value.trim().is_empty()) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("{variable}={path} cannot be read"))?;
        let secret = text.trim_end_matches(['\n', '\r']);
        if secret.is_empty() {
            bail!("{variable}={path} is empty");
        }
        Ok(Some(Self(secret.to_owned())))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(..)")
    }
}

/// `url` (`scheme://user@host…`) with `password` added to its user, percent-encoded.
pub fn with_password(url: &str, password: &Secret) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| Some((scheme, rest.split_once('@')?))) {
        Some((scheme, (user, host))) => {
            let user = user.split_once(':').map_or(user, |(user, _)| user);
            format!("{scheme}://{user}:{}@{host}", percent_encode(password.expose()))
        }
        None => url.to_owned(),
    }
}

/// `url` with `password` when there is one, as it is without.
fn with_password_if_any(url: &str, password: Option<&Secret>) -> String {
    password.map_or_else(|| url.to_owned(), |password| with_password(url, password))
}

/// `url` with `user` as its user and no password (`postgres://host` becomes
/// `postgres://user@host`): how a provisioning step tells a service its role.
pub fn with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

/// The user a URL names, if any.
pub fn user_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let (userinfo, _) = rest.split_once('@')?;
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    (!user.is_empty()).then_some(user)
}

/// `url` with its password, if any, left out: for messages.
pub fn without_password(url: &str) -> String {
    match user_of(url) {
        Some(user) if has_password(url) => with_user(url, user),
        _ => url.to_owned(),
    }
}

/// Whether a URL carries a password (`scheme://user:password@host`).
pub fn has_password(url: &str) -> bool {
    url.split_once("://").and_then(|(_, rest)| rest.split_once('@')).is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Everything but unreserved characters as `%XX`, for a password inside a URL.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(byte).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The URL of database `name` on the server at `server_url`.
pub fn database_url(server_url: &str, name: &str) -> String {
    format!("{}/{}", server_url.trim_end_matches('/'), name)
}

/// Where the broker is and which names this deployment uses.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// The broker, and the service's own user on it, without a password.
    pub amqp_url: String,
    /// That user's password (`AMQP_PASSWORD_FILE`); none keeps whatever `amqp_url` says.
    pub amqp_password: Option<Secret>,
    /// The CA that signs the broker's certificate (`AMQP_CA_FILE`), for an `amqps` URL:
    /// trusted alone, for the URL's host. None with a plain `amqp` URL.
    pub amqp_ca_file: Option<std::path::PathBuf>,
    /// Prefix of every exchange and queue name; tests use a fresh one each, so they
    /// share nothing.
    pub namespace: String,
    /// Deliveries of one message the broker allows before it dead-letters it. Our
    /// consumers never spend attempts on their own infrastructure failures (they hold
    /// the message and back off), so this only stops a message that keeps killing
    /// its consumer mid-way.
    pub delivery_limit: i64,
    /// How often a message whose handling fails for a reason other than an outage is
    /// tried, in the consumer, before it goes to the dead-letter queue.
    pub handler_attempts: u32,
}

impl EventsConfig {
    /// The broker at `amqp_url` (its user and password, if any, in the URL) for namespace
    /// `namespace`, with the default limits: how provisioning and cleanup address it.
    pub fn at(amqp_url: &str, namespace: &str) -> Self {
        Self {
            amqp_url: amqp_url.to_owned(),
            amqp_password: None,
            amqp_ca_file: None,
            namespace: namespace.to_owned(),
            delivery_limit: 10,
            handler_attempts: 5,
        }
    }

    /// The URL to connect with: `amqp_url` with the password. It holds the secret:
    /// connect with it, never print it.
    pub fn connection_url(&self) -> String {
        with_password_if_any(&self.amqp_url, self.amqp_password.as_ref())
    }

    /// The topic exchange every service publishes to.
    pub fn exchange(&self) -> String {
        format!("{}.events", self.namespace)
    }

    /// The queue a service consumes from.
    pub fn queue(&self, service: &str) -> String {
        format!("{}.{service}", self.namespace)
    }

    /// Where a service's undeliverable messages end up, for an operator to inspect.
    pub fn dead_letter_queue(&self, service: &str) -> String {
        format!("{}.{service}.dead", self.namespace)
    }

    /// The exchange a service's consumer moves poison through, into its dead-letter
    /// queue (a fanout of its own, named as the queue).
    pub fn dead_letter_exchange(&self, service: &str) -> String {
        self.dead_letter_queue(service)
    }
}

/// How a process stops on SIGTERM (docs/operations.md, "Drain").
#[derive(Debug, Clone, Copy)]
pub struct ShutdownConfig {
    /// How long the process keeps serving, while reporting not ready, so load
    /// balancers stop sending it new work.
    pub drain: Duration,
    /// How long in-flight requests, consumer batches and subscriptions may take to
    /// finish after the drain window.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; coloured only on a terminal.
    Text,
    /// One JSON object per line, with `trace_id` and `span_id`.
    Json,
}

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// An `EnvFilter` directive, e.g. `info,lapin=warn`.
    pub log_filter: String,
    pub log_format: LogFormat,
    /// Where to send traces (OTLP over HTTP, `<endpoint>/v1/traces`); none means tracing stays in-process.
    pub otlp_endpoint: Option<String>,
}

impl ServiceConfig {
    /// Reads `<SERVICE>_LISTEN`, `<SERVICE>_METRICS_LISTEN`, `<SERVICE>_TLS_*_FILE`, `<SERVICE>_DATABASE`, `POSTGRES_URL`, `POSTGRES_PASSWORD_FILE`, `POSTGRES_CA_FILE`, `DB_POOL_SIZE`,
    /// `DB_BACKGROUND_POOL_SIZE`,
    /// `TOKEN_*`, `SERVICE_CALLERS_JWKS`, `AMQP_URL`, `AMQP_PASSWORD_FILE`, `AMQP_CA_FILE`, `EVENTS_NAMESPACE`, `DRAIN_SECONDS`,
    /// `SHUTDOWN_TIMEOUT_SECONDS`, `RUST_LOG`, `LOG_FORMAT`, `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// and `MONTH_SECONDS`; every one but the token issuer and its keys has a local default.
    pub fn from_env(service: &'static str, default_port: u16) -> anyhow::Result<Self> {
        let tokens = TokenSettings::from_env().map_err(anyhow::Error::msg)?;
        Self::from_env_with_tokens(service, default_port, tokens)
    }

    /// As [`ServiceConfig::from_env`], with the token settings given (tests make their
    /// own keys).
    pub fn from_env_with_tokens(
        service: &'static str,
        default_port: u16,
        tokens: TokenSettings,
    ) -> anyhow::Result<Self> {
        let prefix = service.to_ascii_uppercase();
        let listen = env_or(&format!("{prefix}_LISTEN"), &format!("127.0.0.1:{default_port}"));
        let listen = listen.parse().with_context(|| format!("{prefix}_LISTEN={listen} is not a socket address"))?;
        let metrics_listen =
            env_or(&format!("{prefix}_METRICS_LISTEN"), &format!("127.0.0.1:{}", default_metrics_port(default_port)));
        let metrics_listen = metrics_listen
            .parse()
            .with_context(|| format!("{prefix}_METRICS_LISTEN={metrics_listen} is not a socket address"))?;
        Ok(Self {
            service,
            listen,
            metrics_listen,
            tls: tls_from_env(&prefix)?,
            database: database_from_env(service)?,
            tokens,
            service_callers: std::env::var("SERVICE_CALLERS_JWKS")
                .ok()
                .filter(|value| !value.trim().is_empty())
                .map(|value| JwksSource::parse(&value)),
            events: events_from_env()?,
            shutdown: ShutdownConfig {
                drain: Duration::from_secs(env_parse("DRAIN_SECONDS", 0)?),
                timeout: Duration::from_secs(env_parse("SHUTDOWN_TIMEOUT_SECONDS", 10)?),
            },
            telemetry: telemetry_from_env()?,
            calendar: calendar_from_env()?,
        })
    }
}

/// `<PREFIX>_TLS_CERT_FILE` and `<PREFIX>_TLS_KEY_FILE`: both, or neither (plain HTTP).
pub fn tls_from_env(prefix: &str) -> anyhow::Result<Option<TlsFiles>> {
    let file =
        |name: String| std::env::var(&name).ok().filter(|value| !value.trim().is_empty()).map(|value| (name, value));
    match (file(format!("{prefix}_TLS_CERT_FILE")), file(format!("{prefix}_TLS_KEY_FILE"))) {
        (None, None) => Ok(None),
        (Some((_, cert)), Some((_, key))) => Ok(Some(TlsFiles { cert: cert.into(), key: key.into() })),
        (Some((set, _)), None) | (None, Some((set, _))) => {
            bail!("{set} is set without its pair: TLS needs both {prefix}_TLS_CERT_FILE and {prefix}_TLS_KEY_FILE")
        }
    }
}

/// A service's metrics port when `<SERVICE>_METRICS_LISTEN` is unset: its own port plus
/// 5464, so 9465 to 9468 for the four services (4001 to 4004), beside the router's 9464,
/// and none of them taken twice on one machine (`make run`). A service on port 0 (a
/// test's) gets 0, any free port, too.
pub fn default_metrics_port(service_port: u16) -> u16 {
    if service_port == 0 { 0 } else { service_port.saturating_add(5464) }
}

/// The service's database settings: `POSTGRES_URL` (the service's own role, no
/// password), `POSTGRES_PASSWORD_FILE`, `POSTGRES_CA_FILE`, `<SERVICE>_DATABASE`,
/// `DB_POOL_SIZE`, `DB_BACKGROUND_POOL_SIZE`, `DB_MIGRATE_ON_START`,
/// `MIGRATION_LOCK_TIMEOUT_MS` and `MIGRATION_STATEMENT_TIMEOUT_MS` (all a migration
/// run needs).
pub fn database_from_env(service: &str) -> anyhow::Result<DatabaseConfig> {
    let pool_size: usize = env_parse("DB_POOL_SIZE", 16)?;
    let background_pool_size: usize = env_parse("DB_BACKGROUND_POOL_SIZE", 10)?;
    if pool_size == 0 || background_pool_size == 0 {
        bail!("DB_POOL_SIZE and DB_BACKGROUND_POOL_SIZE must each be at least 1");
    }
    let prefix = service.to_ascii_uppercase();
    let server_url = env_or("POSTGRES_URL", DEFAULT_POSTGRES_URL);
    let password = password_for("POSTGRES_URL", &server_url, "POSTGRES_PASSWORD_FILE")?;
    Ok(DatabaseConfig {
        server_url,
        password,
        ca_file: env_path("POSTGRES_CA_FILE"),
        name: env_or(&format!("{prefix}_DATABASE"), &format!("water_{service}")),
        pool_size,
        background_pool_size,
        migrate_on_start: env_parse("DB_MIGRATE_ON_START", true)?,
        migration_lock_timeout: env_millis("MIGRATION_LOCK_TIMEOUT_MS", 10_000)?,
        migration_statement_timeout: env_millis("MIGRATION_STATEMENT_TIMEOUT_MS", 300_000)?,
    })
}

/// The password in the file `file_variable` names, for the user that `url` (the value of
/// `url_variable`) names. A URL that holds a password as well, or names no user, stops
/// the process: the password has one home, the file.
fn password_for(url_variable: &str, url: &str, file_variable: &str) -> anyhow::Result<Option<Secret>> {
    let password = Secret::from_file_named_by(file_variable)?;
    if password.is_some() {
        if has_password(url) {
            bail!("{url_variable} holds a password as well as {file_variable}: take it out of the URL");
        }
        if user_of(url).is_none() {
            bail!(
                "{file_variable} is set but {url_variable} names no user: scheme://<the service's own user>@host:port"
            );
        }
    }
    Ok(password)
}

/// Calendar months, or months of `MONTH_SECONDS` seconds (3 or more) for tests and
/// demos. Every service of one deployment must use the same setting.
pub fn calendar_from_env() -> anyhow::Result<Calendar> {
    match std::env::var("MONTH_SECONDS") {
        Ok(text) if !text.trim().is_empty() => {
            let seconds: u32 =
                text.trim().parse().map_err(|_| anyhow::anyhow!("MONTH_SECONDS={text} is not a number of seconds"))?;
            if seconds < crate::clock::MIN_MONTH_SECONDS {
                bail!(
                    "MONTH_SECONDS must be at least {} (a day is a thirtieth of a month), got {seconds}",
                    crate::clock::MIN_MONTH_SECONDS
                );
            }
            Ok(Calendar::short(seconds))
        }
        _ => Ok(Calendar::CALENDAR),
    }
}

/// The broker settings from `AMQP_URL`, `AMQP_PASSWORD_FILE`, `AMQP_CA_FILE` and
/// `EVENTS_NAMESPACE`.
pub fn events_from_env() -> anyhow::Result<EventsConfig> {
    let amqp_url = env_or("AMQP_URL", DEFAULT_AMQP_URL);
    let amqp_password = password_for("AMQP_URL", &amqp_url, "AMQP_PASSWORD_FILE")?;
    let amqp_ca_file = env_path("AMQP_CA_FILE");
    match (amqp_url.starts_with("amqps://"), &amqp_ca_file) {
        (true, None) => bail!("AMQP_URL is amqps: set AMQP_CA_FILE to the CA that signs the broker's certificate"),
        (false, Some(ca)) => bail!("AMQP_CA_FILE={} is set but AMQP_URL is plain amqp: use amqps", ca.display()),
        _ => {}
    }
    Ok(EventsConfig {
        amqp_password,
        amqp_ca_file,
        ..EventsConfig::at(&amqp_url, &env_or("EVENTS_NAMESPACE", "water"))
    })
}

/// Logging and tracing settings from `RUST_LOG`, `LOG_FORMAT` and
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn telemetry_from_env() -> anyhow::Result<TelemetryConfig> {
    let log_format = match env_or("LOG_FORMAT", "text").as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => bail!("LOG_FORMAT must be text or json, not {other:?}"),
    };
    Ok(TelemetryConfig {
        log_filter: env_or("RUST_LOG", "info,lapin=warn"),
        log_format,
        otlp_endpoint: std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|value| !value.trim().is_empty()),
    })
}

/// An environment variable, or `default` when it is unset or blank.
pub fn env_or(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => default.to_owned(),
    }
}

/// A file named by an environment variable; none when it is unset or blank.
pub fn env_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var(name).ok().filter(|path| !path.trim().is_empty()).map(Into::into)
}

/// An environment variable parsed as `T`, or `default` when unset; a value that does
/// not parse is an error naming the variable.
pub fn env_parse<T: FromStr + ToString>(name: &str, default: T) -> anyhow::Result<T> {
    let text = env_or(name, &default.to_string());
    text.trim().parse().map_err(|_| anyhow::anyhow!("{name}={text} is not valid"))
}

/// A duration in milliseconds from the environment.
pub fn env_millis(name: &str, default_ms: u64) -> anyhow::Result<Duration> {
    Ok(Duration::from_millis(env_parse(name, default_ms)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_goes_into_the_url_encoded_and_comes_out_for_messages() {
        let secret = Secret::new("p@ss:w/rd");
        let url = with_password("postgres://water_rental@db:5432", &secret);
        assert_eq!(url, "postgres://water_rental:p%40ss%3Aw%2Frd@db:5432");
        assert!(has_password(&url));
        assert_eq!(user_of(&url), Some("water_rental"));
        assert_eq!(without_password(&url), "postgres://water_rental@db:5432");
        assert_eq!(format!("{secret:?}"), "Secret(..)");
    }

    #[test]
    fn a_role_replaces_whoever_the_url_named() {
        assert_eq!(
            with_user("postgres://postgres:pw@127.0.0.1:5432", "water_payment"),
            "postgres://water_payment@127.0.0.1:5432"
        );
        assert_eq!(with_user("postgres://127.0.0.1:5432", "water_payment"), "postgres://water_payment@127.0.0.1:5432");
        assert_eq!(user_of("postgres://127.0.0.1:5432"), None);
        assert!(!has_password("postgres://water_payment@127.0.0.1:5432"));
    }
}
