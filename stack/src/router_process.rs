//! The router as a child process: hive-router runs its own ntex runtime and global
//! state, so it gets a process of its own, started with the settings it needs through
//! its environment and stopped with SIGTERM.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// The router's configuration file, in `router/`.
pub const CONFIG_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../router/router.config.yaml");
/// Where `router.config.yaml` has the router serve `/metrics`, on a line of its own.
pub const METRICS_PORT: u16 = 9464;
/// The manifest of trusted documents, beside the configuration (which names it relative
/// to itself; a router on a copy of the configuration is given this path).
pub const TRUSTED_DOCUMENTS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../router/trusted-documents.json");
/// The composed supergraph, in `schema/`.
pub const SUPERGRAPH_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/supergraph.graphql");

/// Per-client rate limits high enough for the tests and benchmarks, whose one operator
/// makes hundreds of mutations a minute and whose live test starts hundreds of
/// subscriptions as one customer: the variables router.config.yaml reads, for
/// [`RouterSettings::extra_env`]. The rate-limit test sets its own, low ones.
pub fn relaxed_rate_limits() -> Vec<(String, String)> {
    [
        "ROUTER_MUTATIONS_PER_MINUTE",
        "ROUTER_MUTATION_BURST",
        "ROUTER_SUBSCRIPTIONS_PER_MINUTE",
        "ROUTER_SUBSCRIPTION_BURST",
    ]
    .into_iter()
    .map(|name| (name.to_owned(), "1000000".to_owned()))
    .collect()
}

/// What the router needs to know; everything else is in `router.config.yaml`.
pub struct RouterSettings {
    pub binary: PathBuf,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    pub host: Ipv4Addr,
    /// (subgraph name, GraphQL URL) for each subgraph.
    pub subgraph_urls: Vec<(&'static str, String)>,
    /// What the router is told about tokens (`Identities::env_for("router")`).
    pub token_env: Vec<(String, String)>,
    /// `error`, `warn`, `info` or `debug`.
    pub log_level: String,
    /// Where the router's output goes: `None` for this process's terminal.
    pub log_file: Option<PathBuf>,
    /// HTTP worker threads; `None` for one per core.
    pub workers: Option<usize>,
    /// More variables for the router (`GRAPHIQL_DEV_TOKEN`, telemetry).
    pub extra_env: Vec<(String, String)>,
}

pub struct RouterProcess {
    child: Child,
    pub address: SocketAddr,
    /// Where `/metrics` is: a port of its own, never the public one.
    pub metrics_address: SocketAddr,
    log_file: Option<PathBuf>,
    /// The configuration copy made for this process, removed with it.
    config_copy: Option<PathBuf>,
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        if let Some(copy) = &self.config_copy {
            let _ = std::fs::remove_file(copy);
        }
    }
}

impl RouterProcess {
    /// Starts the router and waits until it reports ready.
    pub async fn spawn(settings: RouterSettings) -> anyhow::Result<Self> {
        let port = if settings.port == 0 { free_port(settings.host)? } else { settings.port };
        let config_file = std::env::var("ROUTER_CONFIG_FILE_PATH").unwrap_or_else(|_| CONFIG_FILE.to_owned());
        // A router on a port picked for it (a test's) gets a picked metrics port too, so
        // that any number of them run side by side: in a copy of the configuration, as
        // hive-router takes that port from the file only.
        let (metrics_port, config_copy) = if settings.port == 0 {
            let metrics_port = free_port(settings.host)?;
            (metrics_port, Some(config_with_metrics_port(&config_file, metrics_port)?))
        } else {
            (METRICS_PORT, None)
        };
        let config_file = config_copy.as_ref().map_or(config_file, |copy| copy.display().to_string());
        let supergraph = std::env::var("SUPERGRAPH_PATH").unwrap_or_else(|_| SUPERGRAPH_FILE.to_owned());
        let trusted_documents =
            std::env::var("ROUTER_TRUSTED_DOCUMENTS_FILE").unwrap_or_else(|_| TRUSTED_DOCUMENTS_FILE.to_owned());

        let mut command = Command::new(&settings.binary);
        command
            .env("ROUTER_CONFIG_FILE_PATH", &config_file)
            .env("SUPERGRAPH_PATH", &supergraph)
            .env("ROUTER_TRUSTED_DOCUMENTS_FILE", &trusted_documents)
            .env("ROUTER_HOST", settings.host.to_string())
            .env("ROUTER_PORT", port.to_string())
            .env("LOG_LEVEL", &settings.log_level)
            // hive-router lets these generic names override its configuration.
            .env_remove("PORT")
            .env_remove("HOST")
            .env_remove("SUPERGRAPH_FILE_PATH")
            .kill_on_drop(true)
            .stdin(Stdio::null());
        command.envs(settings.token_env.iter().map(|(name, value)| (name, value)));
        command.envs(settings.extra_env.iter().map(|(name, value)| (name, value)));
        if let Some(workers) = settings.workers {
            command.env("ROUTER_HTTP_WORKERS", workers.to_string());
        }
        for (name, url) in &settings.subgraph_urls {
            command.env(format!("{}_URL", name.to_ascii_uppercase()), url);
        }
        if let Some(log_file) = &settings.log_file {
            let log = std::fs::File::create(log_file).with_context(|| format!("creating {}", log_file.display()))?;
            command.stdout(log.try_clone()?).stderr(log);
        }
        let child =
            command.spawn().with_context(|| format!("starting the router binary {}", settings.binary.display()))?;
        let address = SocketAddr::from((settings.host, port));
        let metrics_address = SocketAddr::from((settings.host, metrics_port));
        let mut router = Self { child, address, metrics_address, log_file: settings.log_file, config_copy };
        router.wait_until_ready(Duration::from_secs(60)).await?;
        Ok(router)
    }

    /// The router's process id, e.g. to read its CPU time and memory.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn graphql_url(&self) -> String {
        format!("http://{}/graphql", self.address)
    }

    pub fn websocket_url(&self) -> String {
        format!("ws://{}/graphql", self.address)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_address)
    }

    async fn wait_until_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = format!("http://{}/readiness", self.address);
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                bail!("the router exited during start-up ({status}){}", self.log_tail());
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the router was not ready after {limit:?}{}", self.log_tail())
    }

    fn log_tail(&self) -> String {
        let Some(path) = &self.log_file else { return String::new() };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("; its last output ({}):\n{}", path.display(), tail.join("\n"))
    }

    /// Asks the router to drain and stop (SIGTERM), and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            // SAFETY: plain syscall on a pid we own; a process that already exited at
            // worst yields ESRCH, which is ignored.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
            }
        }
        Ok(())
    }

    /// Whether the router has exited, without waiting.
    pub fn try_exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits for the router to exit by itself (e.g. it received Ctrl-C too).
    pub async fn exited(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        Ok(self.child.wait().await?)
    }
}

/// A copy of the configuration at `path` (in the temporary directory) whose Prometheus
/// exporter listens on `metrics_port`. Its one relative path, the supergraph's default,
/// does not matter: `spawn` always sets `SUPERGRAPH_PATH`.
fn config_with_metrics_port(path: &str, metrics_port: u16) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let line = format!("port: {METRICS_PORT}\n");
    if text.matches(&line).count() != 1 {
        bail!("{path} must have the metrics port on one line `{}`", line.trim_end());
    }
    let copy = std::env::temp_dir().join(format!("water-router-{}.yaml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&copy, text.replace(&line, &format!("port: {metrics_port}\n")))
        .with_context(|| format!("writing {}", copy.display()))?;
    Ok(copy)
}

/// A free port on `host` for a service to listen on, never one this process has handed
/// out before, and below the kernel's range of ports for outgoing connections.
///
/// Both rules come from CI runs of the fault suite. Ports found by binding port 0 come
/// from that same range: the OS gave the same port to two binds in a row once the first
/// listener was closed, so two services of one cluster were told the same port; the
/// second failed to bind, its readiness check reached the first, and the cluster
/// "started" with rental calling inventory as payment. And in the moment between the
/// pick and the service's own bind, any outgoing connection of the machine may take a
/// port of that range. Below it, only another listener could; start-up then fails and
/// says so.
pub fn free_port(host: Ipv4Addr) -> anyhow::Result<u16> {
    static HANDED_OUT: LazyLock<Mutex<HashSet<u16>>> = LazyLock::new(Mutex::default);
    let below = outgoing_ports_start();
    let span = u32::from(below - LISTEN_PORTS_START);
    // Where to start looking: different for each process and call, so that test
    // processes running side by side rarely probe the same ports.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let mut handed_out = HANDED_OUT.lock().expect("port list lock poisoned");
    for step in 0..span {
        let port = LISTEN_PORTS_START + ((seed.wrapping_add(step)) % span) as u16;
        if !handed_out.contains(&port) && TcpListener::bind((host, port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    bail!("no free port between {LISTEN_PORTS_START} and {below} that this process has not handed out yet")
}

/// The lowest port `free_port` hands out.
const LISTEN_PORTS_START: u16 = 10_000;

/// The first port of the kernel's range for outgoing connections (32768 by default).
fn outgoing_ports_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .filter(|start| *start > LISTEN_PORTS_START + 1_000)
        .unwrap_or(32_768)
}
