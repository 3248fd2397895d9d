//! The system as production runs it, for tests and benchmarks that break it on
//! purpose: every subgraph replica its own OS process from its binary, the router its
//! own process, and, when a test must be free to crash them, a private PostgreSQL
//! cluster and a private RabbitMQ node of its own (never the machine's shared
//! servers, which other tests use).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use subgraph_kit::Database;
use subgraph_kit::db::service_role;
use uuid::Uuid;

use crate::balancer::Balancer;
use stack::binaries::binary;
use stack::processes::{Output, ProcessSpec, ServiceProcess, SubgraphEnv};
use stack::router_process::free_port;
use stack::{RouterProcess, RouterSettings};

const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Runs `program` as `user` when this process is root (PostgreSQL and RabbitMQ refuse
/// to run as root), or as ourselves otherwise.
fn as_user(user: &str, program: &str) -> Command {
    if unsafe { libc::geteuid() } == 0 {
        let mut command = Command::new("runuser");
        command.args(["-u", user, "--", program]);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A folder owned by `user`, created fresh.
fn own_dir(path: &Path, user: &str) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(path);
    std::fs::create_dir_all(path)?;
    if unsafe { libc::geteuid() } == 0 {
        run(Command::new("chown").args(["-R", &format!("{user}:{user}")]).arg(path), "chown")?;
    }
    Ok(())
}

/// A PostgreSQL 15 cluster of its own, in a temporary folder, on a free port; it is
/// stopped and deleted when this value is dropped.
pub struct PrivatePostgres {
    control: PostgresControl,
}

/// What can be done to a private PostgreSQL, from any thread (the commands block).
#[derive(Debug, Clone)]
pub struct PostgresControl {
    dir: PathBuf,
    pub port: u16,
}

impl std::ops::Deref for PrivatePostgres {
    type Target = PostgresControl;

    fn deref(&self) -> &PostgresControl {
        &self.control
    }
}

impl PrivatePostgres {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(None)
    }

    /// A server that serves TLS with the certificate `cert` and its key, and accepts
    /// every role but its administrator (`postgres`, which provisions) only over TLS, as a
    /// production server configured for it would.
    pub fn start_with_tls(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        Self::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("water-pg-{}", Uuid::new_v4().simple()));
        own_dir(&dir, "postgres")?;
        let data = dir.join("data");
        run(
            as_user("postgres", &format!("{POSTGRES_BIN}/initdb"))
                .args(["-D"])
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres"]),
            "initdb",
        )?;
        if let Some((cert, key)) = tls {
            for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
                std::fs::copy(from, data.join(to)).with_context(|| format!("copying {}", from.display()))?;
                if unsafe { libc::geteuid() } == 0 {
                    run(Command::new("chown").arg("postgres:postgres").arg(data.join(to)), "chown")?;
                }
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600))?;
            let mut settings = std::fs::read_to_string(data.join("postgresql.conf"))?;
            settings.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            std::fs::write(data.join("postgresql.conf"), settings)?;
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhostssl all all 127.0.0.1/32 trust\n",
            )?;
        }
        let control = PostgresControl { dir, port: free_port(Ipv4Addr::LOCALHOST)? };
        control.resume()?;
        Ok(Self { control })
    }

    pub fn control(&self) -> PostgresControl {
        self.control.clone()
    }
}

impl PostgresControl {
    /// The server URL, without a database name.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    fn pg_ctl(&self) -> Command {
        let mut command = as_user("postgres", &format!("{POSTGRES_BIN}/pg_ctl"));
        command.arg("-D").arg(self.dir.join("data"));
        command
    }

    /// Starts (or starts again) the server and waits until it accepts connections.
    pub fn resume(&self) -> anyhow::Result<()> {
        let options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300", self.port, self.dir.display());
        run(
            self.pg_ctl().args(["-o", &options, "-l"]).arg(self.dir.join("log")).args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        )
    }

    /// Stops it the way a crash does: no checkpoint, connections cut (`-m immediate`).
    pub fn crash(&self) -> anyhow::Result<()> {
        run(self.pg_ctl().args(["-m", "immediate", "-w", "stop"]), "pg_ctl stop")
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.control.pg_ctl().args(["-m", "immediate", "-w", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.control.dir);
    }
}

/// A RabbitMQ node of its own, in a temporary folder, on free ports; it is stopped and
/// deleted when this value is dropped.
pub struct PrivateRabbit {
    control: RabbitControl,
}

/// What can be done to a private RabbitMQ node, from any thread (the commands block).
#[derive(Debug, Clone)]
pub struct RabbitControl {
    dir: PathBuf,
    pub node: String,
    pub port: u16,
    /// The AMQPS port, when the node serves TLS.
    pub tls_port: Option<u16>,
    dist_port: u16,
}

impl std::ops::Deref for PrivateRabbit {
    type Target = RabbitControl;

    fn deref(&self) -> &RabbitControl {
        &self.control
    }
}

impl PrivateRabbit {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(None)
    }

    /// A node that also serves AMQPS with the certificate `cert` and its key (its
    /// `tls_port`); the plain port stays, for the administrator that provisions it.
    pub fn start_with_tls(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        Self::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> anyhow::Result<Self> {
        let id = Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("water-mq-{}", &id[..12]));
        std::fs::create_dir_all(&dir)?;
        for folder in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.join(folder))?;
        }
        let tls_port = tls.map(|_| free_port(Ipv4Addr::LOCALHOST)).transpose()?;
        let mut settings = String::new();
        if let (Some((cert, key)), Some(port)) = (tls, tls_port) {
            std::fs::copy(cert, dir.join("server.pem"))?;
            std::fs::copy(key, dir.join("server-key.pem"))?;
            settings = format!(
                "listeners.ssl.default = 127.0.0.1:{port}\nssl_options.certfile = {}\nssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n",
                dir.join("server.pem").display(),
                dir.join("server-key.pem").display(),
            );
        }
        std::fs::write(dir.join("rabbitmq.conf"), settings)?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        std::fs::write(dir.join("rabbitmq-env.conf"), "")?;
        if unsafe { libc::geteuid() } == 0 {
            run(Command::new("chown").args(["-R", "rabbitmq:rabbitmq"]).arg(&dir), "chown")?;
        }
        let control = RabbitControl {
            node: format!("water{}@localhost", &id[..8]),
            dir,
            port: free_port(Ipv4Addr::LOCALHOST)?,
            tls_port,
            dist_port: free_port(Ipv4Addr::LOCALHOST)?,
        };
        control.resume()?;
        Ok(Self { control })
    }

    pub fn control(&self) -> RabbitControl {
        self.control.clone()
    }
}

impl RabbitControl {
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts (or starts again, with its data) the node and waits until it serves.
    pub fn resume(&self) -> anyhow::Result<()> {
        let dir = &self.dir;
        let mut command = as_user("rabbitmq", "env");
        command
            .arg("HOME=/var/lib/rabbitmq")
            .arg(format!("RABBITMQ_NODENAME={}", self.node))
            .arg(format!("RABBITMQ_NODE_PORT={}", self.port))
            .arg(format!("RABBITMQ_DIST_PORT={}", self.dist_port))
            .arg(format!("RABBITMQ_MNESIA_BASE={}", dir.join("mnesia").display()))
            .arg(format!("RABBITMQ_LOG_BASE={}", dir.join("log").display()))
            .arg(format!("RABBITMQ_CONFIG_FILE={}", dir.join("rabbitmq.conf").display()))
            .arg(format!("RABBITMQ_ENABLED_PLUGINS_FILE={}", dir.join("enabled_plugins").display()))
            .arg(format!("RABBITMQ_CONF_ENV_FILE={}", dir.join("rabbitmq-env.conf").display()))
            .args(["rabbitmq-server", "-detached"]);
        run(&mut command, "rabbitmq-server")?;
        // The node registers with epmd a moment after it forks.
        let started = Instant::now();
        loop {
            let awaited = self.ctl(&["await_startup", "--timeout", "60"]);
            if awaited.is_ok() {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(90) {
                return awaited;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Stops the node (every connection drops; durable queues keep their messages).
    pub fn stop(&self) -> anyhow::Result<()> {
        self.ctl(&["stop"])
    }

    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        run(Command::new("rabbitmqctl").args(["-q", "-n", &self.node]).args(args), "rabbitmqctl")
    }

    /// `rabbitmqctl list_queues name messages` (ready and unacknowledged) for queues
    /// whose name starts with `prefix`.
    pub fn queue_depths(&self, prefix: &str) -> anyhow::Result<Vec<(String, u64)>> {
        queue_depths(Some(&self.node), prefix)
    }
}

/// Messages (ready and unacknowledged) in each queue whose name starts with `prefix`,
/// on RabbitMQ node `node`, or on the machine's own broker when `None`.
pub fn queue_depths(node: Option<&str>, prefix: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let mut command = Command::new("rabbitmqctl");
    command.arg("-q");
    if let Some(node) = node {
        command.args(["-n", node]);
    }
    let output = command.args(["list_queues", "name", "messages", "--no-table-headers"]).output()?;
    if !output.status.success() {
        bail!("rabbitmqctl list_queues failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            let messages = fields.next()?.parse().ok()?;
            name.starts_with(prefix).then(|| (name.to_owned(), messages))
        })
        .collect())
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let _ = self.control.ctl(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.control.dir);
    }
}

/// What a process stack is made of.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Server URL of PostgreSQL (without a database name).
    pub postgres_url: String,
    /// The broker, as its administrator (the cluster declares its topology and makes
    /// each service's user with it).
    pub amqp_url: String,
    /// The RabbitMQ node `rabbitmqctl` should address: a private one's name, or `None`
    /// for the machine's own.
    pub broker_node: Option<String>,
    /// The services connect over AMQPS instead: the broker's `amqps://host:port/%2f` and
    /// the CA to trust (`AMQP_CA_FILE`); `amqp_url` stays the administrator's.
    pub amqps: Option<(String, PathBuf)>,
    /// Subgraph replicas of each service (each its own process and port).
    pub replicas: usize,
    /// Extra environment for every subgraph process.
    pub env: Vec<(String, String)>,
    /// Extra environment for the router.
    pub router_env: Vec<(String, String)>,
    /// The router's log level.
    pub router_log_level: String,
    /// Where the processes write their logs.
    pub log_dir: PathBuf,
}

/// One service's replicas.
pub struct Replicas {
    pub name: &'static str,
    pub processes: Vec<ServiceProcess>,
}

/// The four subgraphs as processes (one or more replicas each) and a router in front.
pub struct ProcessCluster {
    pub spec: ClusterSpec,
    pub namespace: String,
    /// The cluster's keys: tokens for its users are signed with `identities.users`.
    pub identities: std::sync::Arc<stack::Identities>,
    pub databases: Vec<(&'static str, String)>,
    pub services: Vec<Replicas>,
    pub router: Option<RouterProcess>,
    /// HAProxy in front of the replicas, when started with [`ProcessCluster::start_balanced`].
    pub balancer: Option<Balancer>,
}

pub const SERVICES: [&str; 4] = [inventory::SERVICE, payment::SERVICE, rental::SERVICE, delivery::SERVICE];
const START_LIMIT: Duration = Duration::from_secs(60);

impl ProcessCluster {
    /// Starts every replica (payment first: rental calls it) and the router. The
    /// databases and the broker namespace are fresh: nothing is shared with another
    /// cluster on the same servers. The router (and rental, for payment) talk to replica
    /// 0 of each service directly.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Self> {
        Self::start_with(spec, false).await
    }

    /// As [`ProcessCluster::start`], with a [`Balancer`] (HAProxy) in front of each
    /// service's replicas: the router and rental's `PAYMENT_URL` point at it, as they
    /// would point at a Kubernetes Service. Returns once HAProxy sees every replica up.
    pub async fn start_balanced(spec: ClusterSpec) -> anyhow::Result<Self> {
        Self::start_with(spec, true).await
    }

    async fn start_with(spec: ClusterSpec, balanced: bool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&spec.log_dir)?;
        let id = Uuid::new_v4().simple().to_string()[..10].to_owned();
        let namespace = format!("cluster_{id}");
        let identities = std::sync::Arc::new(stack::Identities::generate()?);
        let databases: Vec<(&'static str, String)> =
            SERVICES.iter().map(|service| (*service, format!("c{id}_{service}"))).collect();
        // Each service logs in as its own role, owner of its database only, as in
        // production; the server trusts local connections, so no password.
        for (service, name) in &databases {
            subgraph_kit::db::provision_database(&spec.postgres_url, &service_role(service), name, None).await?;
        }
        // And into RabbitMQ as a user of its own (`cluster_<service>`, shared by every
        // cluster on the broker, so with fixed passwords).
        let broker_accounts = stack::accounts::provision_broker(
            &spec.amqp_url,
            spec.broker_node.as_deref(),
            &namespace,
            "cluster_[0-9a-f]+",
            "cluster",
            stack::accounts::Passwords::Fixed,
            &spec.log_dir,
        )
        .await?;
        let (services_url, ca) = match &spec.amqps {
            Some((amqps_url, ca)) => (amqps_url.as_str(), Some(ca.as_path())),
            None => (spec.amqp_url.as_str(), None),
        };
        let broker_accounts =
            broker_accounts.iter().map(|account| (account.service, account.env(services_url, ca))).collect();
        let env = SubgraphEnv {
            postgres_url: spec.postgres_url.clone(),
            databases: databases.iter().map(|(service, name)| ((*service).to_owned(), name.clone())).collect(),
            amqp_url: spec.amqp_url.clone(),
            broker_accounts,
            namespace: namespace.clone(),
            identities: identities.clone(),
            extra: spec.env.clone(),
        };
        // Every replica's address is known before any starts, so that the balancer can
        // be configured with all of them first.
        let mut addresses = Vec::new();
        for service in SERVICES {
            let mut replicas = Vec::new();
            for _ in 0..spec.replicas {
                replicas.push(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(Ipv4Addr::LOCALHOST)?)));
            }
            addresses.push((service, replicas));
        }
        let balancer =
            if balanced { Some(Balancer::start(&addresses, &spec.log_dir.join("haproxy.log")).await?) } else { None };
        let mut cluster = Self { spec, namespace, identities, databases, services: Vec::new(), router: None, balancer };
        for (service, replicas) in addresses {
            let mut processes = Vec::new();
            for (replica, address) in replicas.into_iter().enumerate() {
                // The balancer needs the service addresses up front; this one only the process.
                let metrics_address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(Ipv4Addr::LOCALHOST)?));
                let mut variables = env.for_service(service, address, metrics_address);
                if service == rental::SERVICE {
                    let payment_url = match &cluster.balancer {
                        Some(balancer) => balancer.url(payment::SERVICE)?,
                        None => cluster.url_of(payment::SERVICE, replica)?,
                    };
                    variables.push(("PAYMENT_URL".into(), payment_url));
                }
                let spec = ProcessSpec {
                    name: format!("{service}-{replica}"),
                    binary: binary(service)?,
                    env: variables,
                    env_remove: Vec::new(),
                    address,
                    metrics_address,
                    ready_path: "/ready".into(),
                    output: Output::File(cluster.spec.log_dir.join(format!("{service}-{replica}.log"))),
                };
                processes.push(ServiceProcess::spawn(spec, START_LIMIT).await?);
            }
            cluster.services.push(Replicas { name: service, processes });
        }
        let router = RouterProcess::spawn(RouterSettings {
            binary: binary("router")?,
            port: 0,
            host: Ipv4Addr::LOCALHOST,
            subgraph_urls: SERVICES
                .iter()
                .map(|service| Ok((*service, cluster.service_url(service)?)))
                .collect::<anyhow::Result<_>>()?,
            token_env: cluster.identities.env_for("router"),
            log_level: cluster.spec.router_log_level.clone(),
            log_file: Some(cluster.spec.log_dir.join("router.log")),
            workers: Some(1),
            extra_env: stack::relaxed_rate_limits()
                .into_iter()
                .chain(cluster.spec.router_env.iter().cloned())
                .collect(),
        })
        .await?;
        cluster.router = Some(router);
        if let Some(balancer) = &cluster.balancer {
            balancer.wait_all_up(START_LIMIT).await?;
        }
        Ok(cluster)
    }

    /// Where the router reaches `service`: the balancer when there is one, replica 0
    /// otherwise.
    pub fn service_url(&self, service: &str) -> anyhow::Result<String> {
        match &self.balancer {
            Some(balancer) => balancer.url(service),
            None => self.url_of(service, 0),
        }
    }

    /// Restarts every replica of every service, one after the other, as a rolling
    /// update does: SIGTERM, wait for it to drain and exit (its exit status must be
    /// success), start it again on the same address, wait until it is ready and, with a
    /// balancer, until the balancer sends it requests again. Calls `restarted` after
    /// each one, with the service, the replica and how long it took.
    pub async fn rolling_restart(
        &mut self,
        stop_limit: Duration,
        mut restarted: impl FnMut(&str, usize, Duration),
    ) -> anyhow::Result<()> {
        for service in SERVICES {
            for replica in 0..self.spec.replicas {
                let started = Instant::now();
                let status = self.replica(service, replica).terminate(stop_limit).await?;
                if !status.success() {
                    bail!(
                        "{service}-{replica} exited with {status} after SIGTERM{}",
                        self.replica(service, replica).log_tail()
                    );
                }
                self.replica(service, replica).restart(START_LIMIT).await?;
                if let Some(balancer) = &self.balancer {
                    balancer.wait_for(service, replica, true, START_LIMIT).await?;
                }
                restarted(service, replica, started.elapsed());
            }
        }
        Ok(())
    }

    /// The GraphQL URL of a replica.
    pub fn url_of(&self, service: &str, replica: usize) -> anyhow::Result<String> {
        Ok(self.process_of(service, replica)?.url())
    }

    /// Where replica `replica` of `service` serves `/metrics`.
    pub fn metrics_address_of(&self, service: &str, replica: usize) -> anyhow::Result<SocketAddr> {
        Ok(self.process_of(service, replica)?.spec.metrics_address)
    }

    fn process_of(&self, service: &str, replica: usize) -> anyhow::Result<&ServiceProcess> {
        let replicas = self.services.iter().find(|replicas| replicas.name == service);
        match replicas.and_then(|replicas| replicas.processes.get(replica)) {
            Some(process) => Ok(process),
            None => bail!("{service} replica {replica} is not running"),
        }
    }

    pub fn replica(&mut self, service: &str, replica: usize) -> &mut ServiceProcess {
        let replicas = self.services.iter_mut().find(|replicas| replicas.name == service).expect("a known service");
        &mut replicas.processes[replica]
    }

    pub fn router_url(&self) -> String {
        self.router.as_ref().expect("router running").graphql_url()
    }

    /// A pool to a service's database (for audits).
    pub fn database(&self, service: &str) -> anyhow::Result<Database> {
        let (_, name) = self.databases.iter().find(|(known, _)| *known == service).context("a known service")?;
        Database::open_pool(&subgraph_kit::config::database_url(&self.spec.postgres_url, name), 2)
    }

    /// Stops everything: the router first, then every replica, each draining, then
    /// the balancer.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(router) = self.router.take() {
            router.stop().await?;
        }
        for replicas in &mut self.services {
            for process in &mut replicas.processes {
                process.terminate(Duration::from_secs(30)).await?;
            }
        }
        drop(self.balancer.take());
        Ok(())
    }

    /// Deletes this cluster's queues and exchange from the broker.
    pub async fn delete_namespace(&self) -> anyhow::Result<()> {
        let administrator = subgraph_kit::config::EventsConfig::at(&self.spec.amqp_url, &self.namespace);
        event_bus::broker::remove_topology(&administrator, &SERVICES).await
    }

    /// Stops everything, then drops the cluster's databases.
    pub async fn drop_databases_after_stop(self) -> anyhow::Result<()> {
        let (postgres_url, databases) = (self.spec.postgres_url.clone(), self.databases.clone());
        self.stop().await?;
        drop_databases(&postgres_url, &databases).await
    }

    /// Drops this cluster's databases.
    pub async fn drop_databases(&self) -> anyhow::Result<()> {
        drop_databases(&self.spec.postgres_url, &self.databases).await
    }
}

async fn drop_databases(postgres_url: &str, databases: &[(&'static str, String)]) -> anyhow::Result<()> {
    use diesel_async::RunQueryDsl;
    let mut admin = subgraph_kit::db::connect_admin(postgres_url).await?;
    for (_, name) in databases {
        diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin).await?;
    }
    Ok(())
}
