//! Shared set-up for the benchmarks: a whole stack on fresh databases and a broker
//! namespace of its own, the router as a separate process (the optimized build when
//! the benchmark itself is optimized), and small statistics helpers.

pub mod report;
pub mod scenarios;
pub mod websocket;

use std::time::Duration;

use event_bus::testing::TestEvents;
use harness::Subgraphs;
use harness::isolated::{IsolatedOptions, IsolatedStack};
use serde_json::{Value, json};
use stack::{RouterProcess, RouterSettings};
use subgraph_kit::testing::TestDatabase;
use subgraph_kit::{Identity, TokenIssuer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct BenchStack {
    pub subgraphs: Subgraphs,
    pub router: RouterProcess,
    pub issuer: TokenIssuer,
    pub client: reqwest::Client,
    identities: std::sync::Arc<stack::Identities>,
    shutdown: CancellationToken,
    _events: TestEvents,
    _databases: Vec<TestDatabase>,
    /// Flushes the exporter when the stack goes (`BENCH_TELEMETRY=1`).
    _telemetry: Option<subgraph_kit::telemetry::TelemetryGuard>,
}

impl BenchStack {
    /// An isolated stack with the router of this build (optimized when the benchmark is).
    ///
    /// With `BENCH_TELEMETRY=1` the in-process subgraphs run with the telemetry every
    /// service process installs (spans recorded, exported when OTEL_EXPORTER_OTLP_ENDPOINT
    /// is set, which the router reads too): what tracing costs is measured this way.
    pub async fn start() -> anyhow::Result<Self> {
        let telemetry = if std::env::var("BENCH_TELEMETRY").is_ok_and(|value| value == "1") {
            let mut config = subgraph_kit::config::telemetry_from_env()?;
            // Benchmarks print their own report: only warnings and errors go to the log.
            config.log_filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
            Some(subgraph_kit::telemetry::init("subgraphs", &config)?)
        } else {
            None
        };
        let IsolatedStack { subgraphs, router, identities, events, shutdown, databases, .. } =
            IsolatedStack::start(IsolatedOptions {
                rental: harness::in_process::rental_settings()?,
                router_binary: router_binary()?,
                router_log_level: router_log_level(),
                router_workers: None,
                pool_size: 32,
                // What the committed results were measured with: the machine is the
                // benchmark's alone.
                background_pool_size: Some(10),
                calendar: subgraph_kit::clock::Calendar::CALENDAR,
                dunning: payment::domain::DunningSchedule::default(),
                payment_tls: false,
                topic_permissions: false,
            })
            .await?;
        Ok(Self {
            subgraphs,
            router,
            issuer: identities.users.clone(),
            identities,
            client: reqwest::Client::builder().pool_max_idle_per_host(1024).build()?,
            shutdown,
            _events: events,
            _databases: databases,
            _telemetry: telemetry,
        })
    }

    /// Another router process in front of the same subgraphs, as a second replica
    /// behind a load balancer would be.
    pub async fn another_router(&self) -> anyhow::Result<RouterProcess> {
        self.another_router_with(stack::relaxed_rate_limits()).await
    }

    /// [`BenchStack::another_router`] with `extra_env` for the router: none gives it the
    /// production rate limits (the stack's own router has them raised).
    pub async fn another_router_with(&self, extra_env: Vec<(String, String)>) -> anyhow::Result<RouterProcess> {
        RouterProcess::spawn(RouterSettings {
            binary: router_binary()?,
            port: 0,
            host: std::net::Ipv4Addr::LOCALHOST,
            subgraph_urls: self.subgraphs.urls(),
            token_env: self.identities.env_for("router"),
            log_level: router_log_level(),
            log_file: Some(std::env::temp_dir().join(format!("water-rental-router-{}.log", Uuid::new_v4().simple()))),
            workers: None,
            extra_env,
        })
        .await
    }

    /// Rents `product_id` for twelve months for the customer of `token`, with the approved
    /// test card and a fresh idempotency key; the rental's id, or an error unless accepted.
    pub async fn rent(&self, token: &str, product_id: Uuid) -> anyhow::Result<Uuid> {
        let input = json!({ "input": {
            "productId": product_id, "months": 12, "deliveryAddress": "1 Bench-ro, Seoul",
            "cardNumber": "4242424242424242", "idempotencyKey": Uuid::now_v7().to_string(),
        }});
        let body =
            self.graphql(token, "mutation($input: RentInput!) { rent(input: $input) { id status } }", input).await?;
        match body["data"]["rent"]["id"].as_str() {
            Some(id) if body["data"]["rent"]["status"] == "ACCEPTED" => Ok(id.parse()?),
            _ => anyhow::bail!("rent was not accepted: {body}"),
        }
    }

    pub fn token(&self, identity: &Identity) -> String {
        self.issuer.issue(identity, Duration::from_secs(3600))
    }

    pub async fn graphql(&self, token: &str, query: &str, variables: Value) -> anyhow::Result<Value> {
        let response = self
            .client
            .post(self.router.graphql_url())
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await?;
        Ok(response.json().await?)
    }

    /// A product that rental already knows (its `product.created` has arrived).
    pub async fn rentable_product(&self, name: &str, monthly_fee: i32, stock: i32) -> anyhow::Result<Uuid> {
        let operator = self.token(&Identity::Operator { subject: "bench".into() });
        let created = self
            .graphql(
                &operator,
                "mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }",
                json!({ "input": { "name": name, "monthlyFee": monthly_fee, "initialStock": stock } }),
            )
            .await?;
        let id: Uuid = created["data"]["createProduct"]["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("createProduct failed: {created}"))?
            .parse()?;
        for _ in 0..400 {
            let mut connection =
                self.subgraphs.rental.database.connection().await.map_err(|e| anyhow::anyhow!(e.message))?;
            if rental::storage::catalog::entry(&mut connection, id).await?.is_some() {
                return Ok(id);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        anyhow::bail!("rental never learned of product {id}")
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.router.stop().await?;
        self.shutdown.cancel();
        self.subgraphs.stopped().await;
        Ok(())
    }
}

/// BENCH_ROUTER_LOG_LEVEL=warn shows why the router refused or failed something.
fn router_log_level() -> String {
    std::env::var("BENCH_ROUTER_LOG_LEVEL").unwrap_or_else(|_| "error".into())
}

/// The router binary of the same build.
pub fn router_binary() -> anyhow::Result<std::path::PathBuf> {
    stack::binaries::binary("router")
}

/// The value below which `fraction` of the sorted samples fall.
pub fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Cores and memory of this machine, for the results table.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| info.lines().next().map(|line| line.split_whitespace().nth(1).unwrap_or("0").to_owned()))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    format!("{cores} cores, {memory}")
}

/// CPU seconds (user + system) a process has used so far, from /proc.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Resident memory of a process in MiB, from /proc.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Microseconds since the Unix epoch: a clock that separate processes on this machine share.
pub fn unix_micros() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|since| since.as_micros()).unwrap_or(0)
}

/// Median of a small set of runs.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(values, 0.5)
}

/// PostgreSQL's own write throughput on this machine, as the physical limit for
/// transactional work: `pgbench -N` (simple updates) with `clients` clients for
/// `seconds`, on a scratch database created and dropped here. `None` if pgbench is
/// not installed.
pub async fn pgbench_tps(seconds: u64, clients: usize) -> anyhow::Result<Option<f64>> {
    use diesel_async::RunQueryDsl;
    let server = subgraph_kit::config::env_or("POSTGRES_URL", subgraph_kit::config::DEFAULT_POSTGRES_URL);
    let name = format!("bench_pgbench_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let mut admin = subgraph_kit::db::connect_admin(&server).await?;
    diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).await?;
    let url = subgraph_kit::config::database_url(&server, &name);
    let run = |args: Vec<String>| {
        let url = url.clone();
        async move { tokio::process::Command::new("pgbench").args(args).arg(url).output().await }
    };
    let result = async {
        let Ok(init) = run(vec!["-i".into(), "-q".into(), "-s".into(), "10".into()]).await else { return Ok(None) };
        anyhow::ensure!(init.status.success(), "pgbench -i failed: {}", String::from_utf8_lossy(&init.stderr));
        let args = vec![
            "-N".into(),
            "-c".into(),
            clients.to_string(),
            "-j".into(),
            "2".into(),
            "-T".into(),
            seconds.to_string(),
        ];
        let bench = run(args).await?;
        let output = String::from_utf8_lossy(&bench.stdout).to_string();
        let tps = output
            .lines()
            .find(|line| line.starts_with("tps = "))
            .and_then(|line| line.trim_start_matches("tps = ").split_whitespace().next().map(str::to_owned))
            .and_then(|tps| tps.parse::<f64>().ok());
        anyhow::ensure!(tps.is_some(), "no tps in pgbench output: {output}");
        Ok(tps)
    }
    .await;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin).await?;
    result
}
