//! A local load balancer in front of each service's replicas, standing in for a
//! Kubernetes Service: HAProxy (Debian's `haproxy`) as a child process, one frontend per
//! service on a free port, the replicas as its backend, each checked with `GET /ready`.
//!
//! The settings are the ones a rolling restart needs to lose nothing:
//!
//! - a replica that starts draining answers 503 on `/ready`; after `fall` failed checks
//!   `inter` apart HAProxy stops sending it anything new. So a service's
//!   `DRAIN_SECONDS` must be longer than `inter × fall` plus one check's timeout
//!   (here 2 × 500 ms + 1 s); the tests and the benchmark use 2 s.
//! - a connection that is refused (the replica has stopped listening) is retried on the
//!   other replica (`retries`, `option redispatch 1`). Only connection failures are
//!   retried: a request that reached a replica is never sent twice, since not every
//!   mutation is idempotent (`restockProduct` is not).
//! - idle client connections live longer than the clients' own pools (the router
//!   keeps idle subgraph connections 50 s, reqwest 90 s), so HAProxy never closes one
//!   that a client is about to reuse; WebSockets are tunnels that live an hour.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use stack::router_process::free_port;

/// Where Debian installs HAProxy (`.ci/run` installs the package when it is missing).
pub const HAPROXY: &str = "/usr/sbin/haproxy";

/// How often a replica's `/ready` is checked, and how many failures take it out.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);
pub const CHECK_FALL: u32 = 2;
pub const CHECK_RISE: u32 = 2;
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest a draining replica can still be sent new requests: a drain window
/// shorter than this loses requests.
pub fn detection_limit() -> Duration {
    CHECK_INTERVAL * CHECK_FALL + CHECK_TIMEOUT
}

/// One service behind the balancer.
#[derive(Debug, Clone)]
pub struct BalancedService {
    pub name: String,
    /// Where clients reach the service.
    pub frontend: SocketAddr,
    /// Its replicas, in order (server `NAME-0`, `NAME-1`, ...).
    pub replicas: Vec<SocketAddr>,
}

/// What HAProxy thinks of one replica right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub service: String,
    pub server: String,
    /// `UP`, `DOWN`, `UP 1/2` (going down), `DOWN 1/2` (coming up), `MAINT`, ...
    pub status: String,
}

impl ServerState {
    /// Taking new requests (also while a failed check has not yet taken it out).
    pub fn is_up(&self) -> bool {
        self.status.starts_with("UP")
    }
}

pub struct Balancer {
    child: Child,
    dir: PathBuf,
    pub services: Vec<BalancedService>,
    stats: SocketAddr,
    log_file: PathBuf,
    http: reqwest::Client,
}

impl Balancer {
    /// Writes the configuration for `replicas` (service name → replica addresses) to a
    /// temporary folder, starts HAProxy and waits until its statistics page answers. The
    /// replicas need not be up yet: each counts as down until its checks pass.
    pub async fn start(replicas: &[(&str, Vec<SocketAddr>)], log_file: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            Path::new(HAPROXY).is_file(),
            "{HAPROXY} is missing: install the Debian package haproxy (.ci/run does)"
        );
        let services = replicas
            .iter()
            .map(|(name, replicas)| {
                Ok(BalancedService {
                    name: (*name).to_owned(),
                    frontend: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(Ipv4Addr::LOCALHOST)?)),
                    replicas: replicas.clone(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let stats = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(Ipv4Addr::LOCALHOST)?));
        let dir = std::env::temp_dir().join(format!("water-haproxy-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let config_file = dir.join("haproxy.cfg");
        std::fs::write(&config_file, configuration(&services, stats))?;

        let check = std::process::Command::new(HAPROXY).arg("-c").arg("-q").arg("-f").arg(&config_file).output()?;
        if !check.status.success() {
            bail!("HAProxy refused its configuration: {}", String::from_utf8_lossy(&check.stderr));
        }
        let log = std::fs::File::create(log_file).with_context(|| format!("creating {}", log_file.display()))?;
        let child = Command::new(HAPROXY)
            // -db: stay in the foreground, so it is our child and stops with us.
            .arg("-db")
            .arg("-f")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting haproxy")?;
        let balancer = Self {
            child,
            dir,
            services,
            stats,
            log_file: log_file.to_owned(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?,
        };
        let started = Instant::now();
        while balancer.servers().await.is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("HAProxy did not answer on {stats}; its output is in {}", balancer.log_file.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(balancer)
    }

    fn service(&self, name: &str) -> anyhow::Result<&BalancedService> {
        self.services.iter().find(|service| service.name == name).with_context(|| format!("{name} is not balanced"))
    }

    /// The GraphQL URL of `service` through the balancer.
    pub fn url(&self, service: &str) -> anyhow::Result<String> {
        Ok(format!("http://{}/graphql", self.service(service)?.frontend))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Every replica's state, from HAProxy's statistics (CSV).
    pub async fn servers(&self) -> anyhow::Result<Vec<ServerState>> {
        let csv =
            self.http.get(format!("http://{}/stats;csv", self.stats)).send().await?.error_for_status()?.text().await?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().context("empty statistics")?.trim_start_matches("# ").split(',').collect();
        let column =
            |name: &str| header.iter().position(|field| *field == name).with_context(|| format!("no {name} column"));
        let (proxy, server, status) = (column("pxname")?, column("svname")?, column("status")?);
        Ok(lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|fields| fields.len() > status && fields[server] != "FRONTEND" && fields[server] != "BACKEND")
            .filter(|fields| self.services.iter().any(|service| service.name == fields[proxy]))
            .map(|fields| ServerState {
                service: fields[proxy].to_owned(),
                server: fields[server].to_owned(),
                status: fields[status].to_owned(),
            })
            .collect())
    }

    /// Waits until HAProxy sends new requests to replica `replica` of `service` (`up`),
    /// or has taken it out (`!up`).
    pub async fn wait_for(&self, service: &str, replica: usize, up: bool, limit: Duration) -> anyhow::Result<()> {
        let name = format!("{service}-{replica}");
        let started = Instant::now();
        loop {
            let states = self.servers().await?;
            let state =
                states.iter().find(|state| state.server == name).with_context(|| format!("no server {name}"))?;
            // A replica going down still says `UP 1/2` until its last check fails.
            let settled = if up { state.status == "UP" } else { state.status.starts_with("DOWN") };
            if settled {
                return Ok(());
            }
            if started.elapsed() > limit {
                bail!("{name} is still {} in HAProxy after {limit:?}", state.status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every replica of every service is up.
    pub async fn wait_all_up(&self, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let states = self.servers().await?;
            let down: Vec<String> = states
                .iter()
                .filter(|state| state.status != "UP")
                .map(|state| format!("{} {}", state.server, state.status))
                .collect();
            if down.is_empty() {
                return Ok(());
            }
            if started.elapsed() > limit {
                bail!("not up in HAProxy after {limit:?}: {}", down.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// The HAProxy configuration: the settings explained at the top of this module.
fn configuration(services: &[BalancedService], stats: SocketAddr) -> String {
    let mut config = format!(
        "global
    log stdout format raw local0
    # Each proxied connection holds two descriptors (client and server side), and
    # HAProxy refuses to start when it cannot raise its limit to about twice maxconn:
    # these machines allow 20,000 per process. 4,000 is far above what the benchmarks
    # open (a few hundred live subscriptions, each one tunnel, plus request pools).
    maxconn 4000

defaults
    mode http
    log global
    option httplog
    # Only what went wrong is logged (errors, retries, redispatches).
    option dontlog-normal
    option http-keep-alive
    http-reuse safe
    timeout connect 2s
    timeout client 120s
    timeout http-keep-alive 120s
    timeout server 60s
    timeout tunnel 1h
    timeout check {check_timeout}
    retries 3
    option redispatch 1
    retry-on conn-failure

frontend stats
    bind {stats}
    stats enable
    stats uri /stats
",
        check_timeout = millis(CHECK_TIMEOUT),
    );
    for service in services {
        let name = &service.name;
        let _ = write!(
            config,
            "
frontend {name}
    bind {frontend}
    default_backend {name}

backend {name}
    balance roundrobin
    option httpchk GET /ready
    http-check expect status 200
    default-server inter {inter} fastinter {inter} downinter {inter} rise {CHECK_RISE} fall {CHECK_FALL}
",
            frontend = service.frontend,
            inter = millis(CHECK_INTERVAL),
        );
        for (index, replica) in service.replicas.iter().enumerate() {
            let _ = writeln!(config, "    server {name}-{index} {replica} check");
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_passes_haproxy_s_own_check() {
        assert!(Path::new(HAPROXY).is_file(), "{HAPROXY} is missing: install the Debian package haproxy");
        let replicas = vec!["127.0.0.1:4101".parse().unwrap(), "127.0.0.1:4102".parse().unwrap()];
        let services =
            vec![BalancedService { name: "inventory".into(), frontend: "127.0.0.1:4100".parse().unwrap(), replicas }];
        let text = configuration(&services, "127.0.0.1:4199".parse().unwrap());
        assert!(text.contains("server inventory-1 127.0.0.1:4102 check"), "{text}");
        let dir = std::env::temp_dir().join(format!("water-haproxy-check-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, &text).unwrap();
        let output = std::process::Command::new(HAPROXY).arg("-c").arg("-f").arg(&file).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
