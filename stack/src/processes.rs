//! A service as its own OS process, started from its binary with the environment it
//! reads, and watched: ready when its probe says so; stopped with SIGTERM (it drains),
//! killed with SIGKILL, paused with SIGSTOP (a hung process), all as production would
//! see them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use subgraph_kit::config::with_user;
use subgraph_kit::db::service_role;
use tokio::process::{Child, Command};

/// How to start one service process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The service name, for messages: `inventory`, `router`, ...
    pub name: String,
    pub binary: PathBuf,
    /// Set on top of this process's environment.
    pub env: Vec<(String, String)>,
    /// Removed from the environment (hive-router lets generic names such as PORT
    /// override its configuration).
    pub env_remove: Vec<String>,
    /// Where it listens, for the readiness probe.
    pub address: SocketAddr,
    /// Where it serves `/metrics` (`<SERVICE>_METRICS_LISTEN`, set in `env`).
    pub metrics_address: SocketAddr,
    /// The probe path that answers 200 once it takes work (`/ready`, `/readiness`).
    pub ready_path: String,
    /// Where its output goes.
    pub output: Output,
}

/// Where a service process's output goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Appended to a file (tests, benchmarks).
    File(PathBuf),
    /// To this process's terminal, each line prefixed with the service's name.
    Prefixed,
}

pub struct ServiceProcess {
    pub spec: ProcessSpec,
    child: Child,
}

impl ServiceProcess {
    /// Starts the process and waits until its probe answers 200, up to `limit`.
    pub async fn spawn(spec: ProcessSpec, limit: Duration) -> anyhow::Result<Self> {
        let mut process = Self::start(spec)?;
        process.wait_until_ready(limit).await?;
        Ok(process)
    }

    /// Starts the process without waiting.
    pub fn start(spec: ProcessSpec) -> anyhow::Result<Self> {
        let mut command = Command::new(&spec.binary);
        command.stdin(Stdio::null()).kill_on_drop(true);
        for name in &spec.env_remove {
            command.env_remove(name);
        }
        command.envs(spec.env.iter().map(|(name, value)| (name, value)));
        match &spec.output {
            Output::File(log_file) => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log_file)
                    .with_context(|| format!("opening {}", log_file.display()))?;
                command.stdout(log.try_clone()?).stderr(log);
            }
            Output::Prefixed => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
        }
        let mut child =
            command.spawn().with_context(|| format!("starting {} from {}", spec.name, spec.binary.display()))?;
        if let Output::Prefixed = spec.output {
            let name = spec.name.clone();
            if let Some(stdout) = child.stdout.take() {
                tokio::spawn(prefix_lines(name.clone(), stdout));
            }
            if let Some(stderr) = child.stderr.take() {
                tokio::spawn(prefix_lines(name, stderr));
            }
        }
        Ok(Self { spec, child })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.spec.metrics_address)
    }

    pub fn url(&self) -> String {
        format!("http://{}/graphql", self.spec.address)
    }

    /// Waits until the probe answers 200, failing early if the process exits.
    pub async fn wait_until_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let url = format!("http://{}{}", self.spec.address, self.spec.ready_path);
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited during start-up ({status}){}", self.spec.name, self.log_tail());
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                // A subgraph names itself: another process answering on this port means
                // this one could not listen on it (ports are picked before the processes
                // start), and a cluster would run with a service missing.
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                if let Err(other) = answered_by(&self.spec.name, &body) {
                    bail!(
                        "{} is not the process answering on {}: {other} is{}",
                        self.spec.name,
                        self.spec.address,
                        self.log_tail()
                    );
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{} was not ready after {limit:?}{}", self.spec.name, self.log_tail())
    }

    /// The last lines of the process's log file, for error messages.
    pub fn log_tail(&self) -> String {
        let Output::File(path) = &self.spec.output else { return String::new() };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(30)..];
        format!("; its last output ({}):\n{}", path.display(), tail.join("\n"))
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.child.id() {
            // SAFETY: a plain syscall on a pid we own; one that already exited yields ESRCH,
            // which is ignored.
            unsafe { libc::kill(pid as libc::pid_t, signal) };
        }
    }

    /// SIGTERM, then waits for it to drain and exit, up to `limit` (then SIGKILL).
    pub async fn terminate(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        self.signal(libc::SIGTERM);
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                tracing::warn!(service = %self.spec.name, "did not stop within {limit:?} of SIGTERM; killing it");
                self.child.kill().await?;
                Ok(self.child.wait().await?)
            }
        }
    }

    /// SIGKILL, as a crash would, and waits for it to be gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGSTOP: the process hangs (it holds its sockets but answers nothing).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`ServiceProcess::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Waits for the process to exit by itself.
    pub async fn exited(&mut self) -> anyhow::Result<ExitStatus> {
        Ok(self.child.wait().await?)
    }

    /// Whether it has exited, without waiting.
    pub fn try_exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Starts it again with the same spec (after it exited or was killed).
    pub async fn restart(&mut self, limit: Duration) -> anyhow::Result<()> {
        let _ = self.child.try_wait();
        let fresh = Self::spawn(self.spec.clone(), limit).await?;
        *self = fresh;
        Ok(())
    }
}

/// Whether a readiness answer `body` comes from the process `name` (`rental`, `rental-0`):
/// a subgraph's `/ready` names its service; an answer that names none is taken as is.
/// Err holds the service that answered instead.
fn answered_by(name: &str, body: &serde_json::Value) -> Result<(), String> {
    match body["service"].as_str() {
        Some(service) if name != service && !name.starts_with(&format!("{service}-")) => Err(service.to_owned()),
        _ => Ok(()),
    }
}

/// Copies `stream` to stdout line by line, each line after the service's name.
async fn prefix_lines(name: String, stream: impl tokio::io::AsyncRead + Unpin) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("{name:>9} | {line}");
    }
}

/// The environment of a subgraph process: where it listens, its database and broker
/// namespace, and what it is told about tokens and keys.
#[derive(Debug, Clone)]
pub struct SubgraphEnv {
    /// The PostgreSQL server; each service logs in as its own role on it
    /// (`water_<service>`, provisioned beforehand: [`subgraph_kit::db::provision_database`]).
    pub postgres_url: String,
    /// The database of each service, by service name; the default name when absent.
    pub databases: Vec<(String, String)>,
    pub amqp_url: String,
    /// Each service's own broker user (`AMQP_URL`, `AMQP_PASSWORD_FILE`), by service:
    /// [`crate::accounts::provision_broker`]. A service not listed uses `amqp_url`.
    pub broker_accounts: Vec<(&'static str, Vec<(String, String)>)>,
    pub namespace: String,
    pub identities: std::sync::Arc<crate::Identities>,
    /// Extra variables for every subgraph (`DRAIN_SECONDS`, `RUST_LOG`, ...).
    pub extra: Vec<(String, String)>,
}

impl SubgraphEnv {
    /// The environment for `service` listening on `address`, with its metrics on
    /// `metrics_address`.
    pub fn for_service(
        &self,
        service: &str,
        address: SocketAddr,
        metrics_address: SocketAddr,
    ) -> Vec<(String, String)> {
        let prefix = service.to_ascii_uppercase();
        let mut env = vec![
            (format!("{prefix}_LISTEN"), address.to_string()),
            (format!("{prefix}_METRICS_LISTEN"), metrics_address.to_string()),
            ("POSTGRES_URL".to_owned(), with_user(&self.postgres_url, &service_role(service))),
            ("EVENTS_NAMESPACE".to_owned(), self.namespace.clone()),
        ];
        match self.broker_accounts.iter().find(|(owner, _)| *owner == service) {
            Some((_, variables)) => env.extend(variables.iter().cloned()),
            None => env.push(("AMQP_URL".to_owned(), self.amqp_url.clone())),
        }
        env.extend(self.identities.env_for(service));
        if let Some((_, database)) = self.databases.iter().find(|(name, _)| name == service) {
            env.push((format!("{prefix}_DATABASE"), database.clone()));
        }
        env.extend(self.extra.iter().cloned());
        env
    }
}

#[cfg(test)]
mod tests {
    use super::answered_by;
    use serde_json::json;

    #[test]
    fn a_readiness_answer_from_another_service_is_not_this_process_being_ready() {
        let rental = json!({ "status": "ready", "service": "rental" });
        assert_eq!(answered_by("rental", &rental), Ok(()));
        assert_eq!(answered_by("rental-1", &rental), Ok(()));
        let inventory = json!({ "status": "ready", "service": "inventory" });
        assert_eq!(answered_by("rental-0", &inventory), Err("inventory".to_owned()));
        assert_eq!(answered_by("rentals", &rental), Err("rental".to_owned()), "a name is matched whole");
        assert_eq!(answered_by("router", &json!({ "status": "ready" })), Ok(()), "an answer that names no service");
    }
}
