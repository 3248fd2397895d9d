//! Each service's own accounts, for `make run` and the process clusters: a PostgreSQL
//! role owning only its database, and a RabbitMQ user that may touch only its own
//! queues and publish only its own events, their passwords in files only that service
//! is told about. Production makes the same with CloudNativePG's managed roles and the
//! RabbitMQ topology operator (deploy/k8s).

use std::path::{Path, PathBuf};

use anyhow::Context;
use subgraph_kit::config::{EventsConfig, Secret, with_user};
use subgraph_kit::db::{provision_database, service_role};

/// Where an account's password is kept under `dir`.
fn secret_path(dir: &Path, account: &str, what: &str) -> PathBuf {
    dir.join("secrets").join(format!("{account}.{what}.password"))
}

/// The secret in `path`, or a new random one written there (readable by this user only)
/// when there is none yet, so a restart keeps the same passwords.
pub fn development_secret(path: &Path) -> anyhow::Result<Secret> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let text = text.trim_end();
        if !text.is_empty() {
            return Ok(Secret::new(text));
        }
    }
    // Two random UUIDs: 244 random bits, in characters no URL or shell minds.
    write_secret(path, Secret::new(format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())))
}

/// Writes `secret` to `path`, readable by this user only, in a private directory.
fn write_secret(path: &Path, secret: Secret) -> anyhow::Result<Secret> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        crate::identities::private_dir(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(secret.expose().as_bytes())?;
    Ok(secret)
}

/// Provisions `service`'s role and its database `database` on the server at
/// `postgres_url` (whose role may create both), with a password kept under `dir`, and
/// returns the variables that make the service log in as that role:
/// `POSTGRES_URL` (the role, no password) and `POSTGRES_PASSWORD_FILE`.
pub async fn provision_postgres(
    postgres_url: &str,
    service: &str,
    database: &str,
    dir: &Path,
) -> anyhow::Result<Vec<(String, String)>> {
    let role = service_role(service);
    let path = secret_path(dir, &role, "postgres");
    let password = development_secret(&path)?;
    provision_database(postgres_url, &role, database, Some(&password))
        .await
        .with_context(|| format!("provisioning {service}'s role {role} and database {database}"))?;
    Ok(vec![
        ("POSTGRES_URL".into(), with_user(postgres_url, &role)),
        ("POSTGRES_PASSWORD_FILE".into(), path.display().to_string()),
    ])
}

/// How the broker users' passwords are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passwords {
    /// Random, kept under the directory so a restart keeps them (`make run`).
    Random,
    /// `<user>-password`: for test clusters that share users on one broker and must not
    /// change a password another cluster's services are using.
    Fixed,
}

/// A service's broker user, as provisioned: its name and the file holding its password.
#[derive(Debug, Clone)]
pub struct BrokerAccount {
    pub service: &'static str,
    pub user: String,
    pub password_file: PathBuf,
}

impl BrokerAccount {
    /// The variables that make the service log in as this user at `url` (the broker,
    /// without a user): `AMQP_URL` (the user, no password), `AMQP_PASSWORD_FILE`, and
    /// `AMQP_CA_FILE` when the URL is `amqps` with `ca`.
    pub fn env(&self, url: &str, ca: Option<&Path>) -> Vec<(String, String)> {
        let mut env = vec![
            ("AMQP_URL".to_owned(), with_user(url, &self.user)),
            ("AMQP_PASSWORD_FILE".to_owned(), self.password_file.display().to_string()),
        ];
        env.extend(ca.map(|ca| ("AMQP_CA_FILE".to_owned(), ca.display().to_string())));
        env
    }
}

/// Provisions the broker for namespace `namespace`, as production's topology operator
/// does: the whole topology, declared by `amqp_url`'s user (an administrator), and a
/// user per service (`<prefix>_<service>`, imported with `rabbitmqctl` on `node`) that may
/// touch only its own queues in namespaces matching `namespaces`, and publish only its own
/// events on this namespace's exchange. Each password is in a file under `dir`.
pub async fn provision_broker(
    amqp_url: &str,
    node: Option<&str>,
    namespace: &str,
    namespaces: &str,
    prefix: &str,
    passwords: Passwords,
    dir: &Path,
) -> anyhow::Result<Vec<BrokerAccount>> {
    let administrator = EventsConfig::at(amqp_url, namespace);
    event_bus::broker::provision_topology(&administrator, contracts::TOPOLOGY).await?;
    let mut accounts = Vec::new();
    let mut provisioned = Vec::new();
    for grant in contracts::grants() {
        let user = event_bus::accounts::broker_user(prefix, grant.service);
        let password_file = secret_path(dir, &user, "amqp");
        let password = match passwords {
            Passwords::Random => development_secret(&password_file)?,
            Passwords::Fixed => write_secret(&password_file, Secret::new(format!("{user}-password")))?,
        };
        provisioned.push(BrokerAccount { service: grant.service, user: user.clone(), password_file });
        accounts.push(event_bus::accounts::Account { user, password, grant });
    }
    let definitions = event_bus::accounts::definitions(&accounts, namespaces, &[administrator.exchange()]);
    event_bus::accounts::import(node, &definitions, &accounts[0], amqp_url)
        .await
        .context("making each service's broker user")?;
    Ok(provisioned)
}
