//! For tests: a broker namespace of its own per test, provisioned as production's is,
//! and each service's own user on it.

use std::collections::HashMap;

use anyhow::Context;
use subgraph_kit::config::{EventsConfig, Secret, with_user};
use tokio::sync::OnceCell;

use crate::Subscription;
use crate::accounts::{Account, Grant, broker_user, definitions, import};

/// The tests' broker users are `test_<service>`, allowed on every test namespace.
const USER_PREFIX: &str = "test";
const NAMESPACES: &str = "test_[0-9a-f]+";

/// A broker namespace of its own for one test: exchange and queues named
/// `test_<uuid>.…`, deleted when this value is dropped. `config` is the administrator's
/// (`AMQP_URL`); [`TestEvents::accounts`] gives each service its own user.
pub struct TestEvents {
    pub config: EventsConfig,
    services: Vec<String>,
}

impl TestEvents {
    /// A fresh namespace with `topology` declared in it by the administrator, as
    /// provisioning does before any service starts.
    pub fn new(topology: &'static [Subscription]) -> Self {
        let mut config = subgraph_kit::config::events_from_env().expect("the broker settings");
        config.namespace = format!("test_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        config.delivery_limit = 3;
        config.handler_attempts = 3;
        let declaring = config.clone();
        if let Err(error) = on_own_runtime(async move { crate::broker::provision_topology(&declaring, topology).await })
        {
            panic!("{error:#}");
        }
        Self { config, services: topology.iter().map(|subscription| subscription.service.to_owned()).collect() }
    }

    /// Each service's settings on this namespace, logging in as its own user
    /// (`test_<service>`: configure, write and read permissions as in production). The
    /// users are made once per test process; with `topics`, this namespace's exchange
    /// also gets production's topic permissions (one more `rabbitmqctl` call).
    pub async fn accounts(
        &self,
        grants: &[Grant],
        topics: bool,
    ) -> anyhow::Result<HashMap<&'static str, EventsConfig>> {
        static PROVISIONED: OnceCell<()> = OnceCell::const_new();
        let accounts: Vec<Account> = grants.iter().map(test_account).collect();
        let first = accounts.first().context("no grants")?;
        PROVISIONED
            .get_or_try_init(|| async {
                import(None, &definitions(&accounts, NAMESPACES, &[]), first, &self.config.connection_url()).await
            })
            .await?;
        if topics {
            let exchanges = [self.config.exchange()];
            import(None, &definitions(&accounts, NAMESPACES, &exchanges), first, &self.config.connection_url()).await?;
        }
        Ok(accounts
            .into_iter()
            .map(|account| {
                let config = EventsConfig {
                    amqp_url: with_user(&self.config.amqp_url, &account.user),
                    amqp_password: Some(account.password),
                    ..self.config.clone()
                };
                (account.grant.service, config)
            })
            .collect())
    }

    /// Closes every broker connection of this namespace from the broker's side, as a
    /// broker restart or a network cut would.
    pub fn close_connections(&self) -> anyhow::Result<usize> {
        let listed = std::process::Command::new("rabbitmqctl")
            .args(["-q", "list_connections", "pid", "client_properties"])
            .output()
            .context("running rabbitmqctl list_connections")?;
        let listing = String::from_utf8_lossy(&listed.stdout);
        let mut closed = 0;
        for line in listing.lines().filter(|line| line.contains(&self.config.namespace)) {
            let Some(pid) = line.split_whitespace().next() else { continue };
            let status = std::process::Command::new("rabbitmqctl")
                .args(["-q", "close_connection", pid, "closed by a fault-injection test"])
                .status()?;
            if status.success() {
                closed += 1;
            }
        }
        Ok(closed)
    }

    /// How many messages wait in a queue of this namespace.
    pub async fn queue_length(&self, queue: &str) -> anyhow::Result<u32> {
        let connection = lapin::Connection::connect(&self.config.connection_url(), Default::default()).await?;
        let channel = connection.create_channel().await?;
        let options = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        let declared = channel.queue_declare(queue.into(), options, Default::default()).await?;
        let _ = connection.close(200, "done".into()).await;
        Ok(declared.message_count())
    }
}

impl Drop for TestEvents {
    fn drop(&mut self) {
        let config = self.config.clone();
        let services = std::mem::take(&mut self.services);
        // A broker that does not answer must fail the test, not hang it at the end.
        let _ = on_own_runtime(async move {
            let services: Vec<&str> = services.iter().map(String::as_str).collect();
            let removed = crate::broker::remove_topology(&config, &services);
            match tokio::time::timeout(std::time::Duration::from_secs(10), removed).await {
                Ok(deleted) => deleted,
                Err(_) => {
                    anyhow::bail!("the broker did not answer within 10 s; queues of {} are left", config.namespace)
                }
            }
        });
    }
}

/// The test user of a service, with a fixed password: every test process on a machine
/// provisions the same users, and must not change a password another is using.
fn test_account(grant: &Grant) -> Account {
    let user = broker_user(USER_PREFIX, grant.service);
    Account { password: Secret::new(format!("{user}-password")), user, grant: grant.clone() }
}

/// Runs `work` on a runtime of its own, on a thread of its own: for a constructor or a
/// `Drop` that may be called inside or outside a runtime.
fn on_own_runtime<T: Send + 'static>(
    work: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(work)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the broker task panicked"))?
}
