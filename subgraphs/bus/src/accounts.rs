//! Each service's own broker user: what it may declare, publish and read. A service may
//! configure only its own queues (and the server-named queues of its live listeners),
//! publish only to the events exchange and its own dead-letter exchange, and, on the
//! events exchange, publish only the event types it produces and bind only those it
//! reads (topic permissions: the routing key is the event type). The same rules are in
//! the Kubernetes overlays (deploy/k8s: the topology operator's Permission and
//! TopicPermission), which `deploy/check` holds to the contract's table.

use std::process::Command;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use subgraph_kit::config::Secret;

/// What one service does on the events exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub service: &'static str,
    /// The event types it publishes (it is their producer).
    pub publishes: Vec<&'static str>,
    /// The event types it binds a queue to: its inbox, and what its live listeners hear.
    pub reads: Vec<&'static str>,
}

/// A user to provision: its name, its password and what it may do.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: String,
    pub password: Secret,
    pub grant: Grant,
}

/// The user `service` logs in as, for a deployment whose users are named `<prefix>_…`
/// (`water` in production and `make run`; `test` and `cluster` in the tests).
pub fn broker_user(prefix: &str, service: &str) -> String {
    format!("{prefix}_{service}")
}

/// The `configure`, `write` and `read` permissions (regular expressions over exchange and
/// queue names) of `service` in namespaces matching `namespace` (itself a regular
/// expression: `water`, or `test_[0-9a-f]+` for every test's namespace).
pub fn permissions(namespace: &str, service: &str) -> (String, String, String) {
    let own = format!(r"^{namespace}\.{service}(\.dead)?$");
    // Server-named queues, exclusive to the connection that made them: a live listener's.
    let listeners = r"^amq\.gen-.*$";
    let configure = format!("{own}|{listeners}");
    let exchange_or_own = format!(r"^{namespace}\.events$|{own}|{listeners}");
    (configure, exchange_or_own.clone(), exchange_or_own)
}

/// A topic permission's pattern: exactly these routing keys.
pub fn routing_keys(types: &[&str]) -> String {
    let escaped: Vec<String> = types.iter().map(|event_type| event_type.replace('.', r"\.")).collect();
    format!("^({})$", escaped.join("|"))
}

/// RabbitMQ definitions (the format `rabbitmqctl import_definitions` and the management
/// API take) for `accounts` on vhost `/`: users, permissions over namespaces matching
/// `namespace`, and topic permissions on each exchange of `exchanges` (topic permissions
/// name an exchange exactly, so each namespace's exchange is listed).
pub fn definitions(accounts: &[Account], namespace: &str, exchanges: &[String]) -> Value {
    let users: Vec<Value> = accounts
        .iter()
        .map(|account| json!({ "name": account.user, "password": account.password.expose(), "tags": "" }))
        .collect();
    let permissions: Vec<Value> = accounts
        .iter()
        .map(|account| {
            let (configure, write, read) = permissions(namespace, account.grant.service);
            json!({ "user": account.user, "vhost": "/", "configure": configure, "write": write, "read": read })
        })
        .collect();
    let topic_permissions: Vec<Value> = accounts
        .iter()
        .flat_map(|account| {
            exchanges.iter().map(move |exchange| {
                json!({
                    "user": account.user,
                    "vhost": "/",
                    "exchange": exchange,
                    "write": routing_keys(&account.grant.publishes),
                    "read": routing_keys(&account.grant.reads),
                })
            })
        })
        .collect();
    json!({ "users": users, "permissions": permissions, "topic_permissions": topic_permissions })
}

/// Imports `definitions` into the broker with `rabbitmqctl` (of `node`, or the local
/// default), then waits until the broker has applied them: the import is asynchronous.
pub async fn import(node: Option<&str>, definitions: &Value, check: &Account, amqp_url: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut command = Command::new("rabbitmqctl");
    if let Some(node) = node {
        command.args(["-n", node]);
    }
    // On standard input: a file would have to be readable by the broker's own user, and
    // it holds passwords.
    let mut child = command
        .args(["-q", "import_definitions"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running rabbitmqctl import_definitions")?;
    child.stdin.take().context("rabbitmqctl's input")?.write_all(&serde_json::to_vec(definitions)?)?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("rabbitmqctl import_definitions failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let url =
        subgraph_kit::config::with_password(&subgraph_kit::config::with_user(amqp_url, &check.user), &check.password);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await {
            Ok(connection) => {
                let _ = connection.close(200, "provisioned".into()).await;
                return Ok(());
            }
            Err(error) if std::time::Instant::now() > deadline => {
                bail!("{} cannot log in 10 s after the import: {error}", check.user)
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        regex::Regex::new(pattern).expect("a regular expression").is_match(name)
    }

    #[test]
    fn a_service_may_touch_only_its_own_names() {
        let (configure, write, read) = permissions("water", "rental");
        for own in ["water.rental", "water.rental.dead", "amq.gen-Xy1"] {
            assert!(matches(&configure, own) && matches(&write, own) && matches(&read, own), "{own}");
        }
        for theirs in ["water.payment", "water.payment.dead", "water.rentals", "xwater.rental", "water.events.x"] {
            assert!(!matches(&configure, theirs) && !matches(&write, theirs) && !matches(&read, theirs), "{theirs}");
        }
        assert!(!matches(&configure, "water.events"), "only provisioning makes the exchange");
        assert!(matches(&write, "water.events") && matches(&read, "water.events"));
        let (configure, ..) = permissions("test_[0-9a-f]+", "rental");
        assert!(matches(&configure, "test_0a1b.rental") && !matches(&configure, "test_0a1b.payment"));
    }

    #[test]
    fn a_topic_permission_names_exactly_the_given_event_types() {
        let pattern = routing_keys(&["rental.accepted", "rental.ended"]);
        assert!(matches(&pattern, "rental.accepted") && matches(&pattern, "rental.ended"));
        for other in ["rental.acceptedx", "rentalxaccepted", "invoice.paid", "rental.accepted.x", ""] {
            assert!(!matches(&pattern, other), "{other}");
        }
    }
}
