//! Each service's own accounts, for `make run` and the process clusters: a PostgreSQL
//! role owning only its database, and a RabbitMQ user that may touch only its own
//! queues and publish only its own events, their passwords in files only that service
//! is told about. Production makes the same with CloudNativePG's managed roles and the
//! RabbitMQ topology operator (deploy/k8s).

use std::path::{Path, PathBuf};

use anyhow::Context;
use subgraph_kit::config::{Secret, with_user};
use subgraph_kit::db::{provision_database, service_role};

/// Where an account's password is kept under `dir`.
fn secret_path(dir: &Path, account: &str, what: &str) -> PathBuf {
    dir.join("secrets").join(format!("{account}.{what}.password"))
}

/// The secret in `path`, or a new random one written there (readable by this user only)
/// when there is none yet, so a restart keeps the same passwords.
pub fn development_secret(path: &Path) -> anyhow::Result<Secret> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(text) = std::fs::read_to_string(path) {
        let text = text.trim_end();
        if !text.is_empty() {
            return Ok(Secret::new(text));
        }
    }
    if let Some(dir) = path.parent() {
        crate::identities::private_dir(dir)?;
    }
    // Two random UUIDs: 244 random bits, in characters no URL or shell minds.
    let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    Ok(Secret::new(secret))
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

/// Provisions the broker for namespace `namespace`, as production's topology operator
/// does: the whole topology, declared by `amqp_url`'s user (an administrator), and a
/// user per service (`<prefix>_<service>`, imported with `rabbitmqctl` on `node`) that may
/// touch only its own queues in namespaces matching `namespaces`, and publish only its own
/// events on this namespace's exchange. Returns, by service, the variables that make it
/// log in as its user: `AMQP_URL` (the user, no password) and `AMQP_PASSWORD_FILE`.
pub async fn provision_broker(
    amqp_url: &str,
    node: Option<&str>,
    namespace: &str,
    namespaces: &str,
    prefix: &str,
    passwords: Passwords,
    dir: &Path,
) -> anyhow::Result<Vec<(&'static str, Vec<(String, String)>)>> {
    let mut config = subgraph_kit::config::events_from_env()?;
    config.amqp_url = amqp_url.to_owned();
    config.amqp_password = None;
    config.namespace = namespace.to_owned();
    let link = event_bus::broker::Link::open(&config, "provisioning").await?;
    let declared = async {
        let channel = link.channel().await?;
        anyhow::Ok(event_bus::broker::declare_topology(&channel, &config, contracts::TOPOLOGY).await?)
    }
    .await;
    link.close("provisioned").await;
    declared.with_context(|| format!("declaring the topology of {namespace}"))?;

    let mut accounts = Vec::new();
    let mut env = Vec::new();
    for grant in contracts::grants() {
        let user = event_bus::accounts::broker_user(prefix, grant.service);
        let path = secret_path(dir, &user, "amqp");
        let password = match passwords {
            Passwords::Random => development_secret(&path)?,
            Passwords::Fixed => {
                let password = Secret::new(format!("{user}-password"));
                if let Some(parent) = path.parent() {
                    crate::identities::private_dir(parent)?;
                }
                std::fs::write(&path, password.expose()).with_context(|| format!("writing {}", path.display()))?;
                password
            }
        };
        env.push((
            grant.service,
            vec![
                ("AMQP_URL".to_owned(), with_user(amqp_url, &user)),
                ("AMQP_PASSWORD_FILE".to_owned(), path.display().to_string()),
            ],
        ));
        accounts.push(event_bus::accounts::Account { user, password, grant });
    }
    let definitions = event_bus::accounts::definitions(&accounts, namespaces, &[config.exchange()]);
    event_bus::accounts::import(node, &definitions, &accounts[0], amqp_url)
        .await
        .context("making each service's broker user")?;
    Ok(env)
}
