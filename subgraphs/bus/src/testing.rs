//! For tests: a broker namespace of its own per test.

use anyhow::Context;

/// A broker namespace of its own for one test: exchange and queues named
/// `test_<uuid>.…`, deleted when this value is dropped.
pub struct TestEvents {
    pub config: subgraph_kit::config::EventsConfig,
    services: Vec<String>,
}

impl TestEvents {
    /// `services` are the consuming services whose queues the test creates, so they
    /// can be deleted at the end.
    pub fn new(services: &[&str]) -> Self {
        let mut config = subgraph_kit::config::events_from_env();
        config.namespace = format!("test_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        config.delivery_limit = 3;
        config.handler_attempts = 3;
        Self { config, services: services.iter().map(|service| (*service).to_owned()).collect() }
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
        let connection = lapin::Connection::connect(&self.config.amqp_url, Default::default()).await?;
        let channel = connection.create_channel().await?;
        let options = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        let declared = channel.queue_declare(queue.into(), options, Default::default()).await?;
        let _ = connection.close(200, "done".into()).await;
        Ok(declared.message_count())
    }

    async fn delete(config: &subgraph_kit::config::EventsConfig, services: &[String]) -> anyhow::Result<()> {
        let connection = lapin::Connection::connect(&config.amqp_url, Default::default()).await?;
        let channel = connection.create_channel().await?;
        for service in services {
            for queue in [config.queue(service), config.dead_letter_queue(service)] {
                let _ = channel.queue_delete(queue.as_str().into(), Default::default()).await;
            }
        }
        let _ = channel.exchange_delete(config.exchange().as_str().into(), Default::default()).await;
        let _ = connection.close(200, "done".into()).await;
        Ok(())
    }
}

impl Drop for TestEvents {
    fn drop(&mut self) {
        let config = self.config.clone();
        let services = std::mem::take(&mut self.services);
        // A broker that does not answer must fail the test, not hang it at the end.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                match tokio::time::timeout(std::time::Duration::from_secs(10), Self::delete(&config, &services)).await {
                    Ok(deleted) => deleted,
                    Err(_) => {
                        anyhow::bail!("the broker did not answer within 10 s; queues of {} are left", config.namespace)
                    }
                }
            })
        })
        .join();
    }
}
