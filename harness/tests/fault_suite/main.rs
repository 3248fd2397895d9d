//! The fault suite: the system run as production runs it (each subgraph its own OS
//! process from its binary, the router its own process, a private PostgreSQL cluster
//! and RabbitMQ node), under a bounded load through the router, broken on purpose one
//! fault per run, then audited across all four databases and the queues once it has
//! settled. docs/reliability.md has the table and what each invariant means.
//!
//! `FAULT_SUITE_LONG=1` runs the same with four times the load for longer;
//! `FAULT_SUITE_FAULTS=control,postgres-down` runs only the named faults.

mod audit;
mod load;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use harness::cluster::{ClusterSpec, PrivatePostgres, PrivateRabbit, ProcessCluster};

use crate::load::{Client, Intensity};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// No fault: the control run.
    Control,
    /// kill -9 of the service's process, started again 2 s later.
    Kill(&'static str),
    /// SIGSTOP of the service for 8 s (it holds its connections but answers nothing).
    Hang(&'static str),
    /// The broker stopped for 20 s.
    BrokerDown,
    /// PostgreSQL crashed (`-m immediate`) and started again at once.
    PostgresRestart,
    /// PostgreSQL crashed and down for 30 s.
    PostgresDown,
    /// The service stopped (SIGTERM, drained) for 30 s.
    Down(&'static str),
    /// Two replicas of every service behind HAProxy (as behind a Kubernetes Service),
    /// every one running the contract clock and the relays; kill -9 of one replica of
    /// the service, started again 2 s later, while the other goes on.
    KillOneOfTwo(&'static str),
}

impl Fault {
    fn name(self) -> String {
        match self {
            Fault::Control => "control".into(),
            Fault::Kill(service) => format!("kill-{service}"),
            Fault::Hang(service) => format!("hang-{service}"),
            Fault::BrokerDown => "broker-down".into(),
            Fault::PostgresRestart => "postgres-restart".into(),
            Fault::PostgresDown => "postgres-down".into(),
            Fault::Down(service) => format!("{service}-down"),
            Fault::KillOneOfTwo(service) => format!("kill-one-of-two-{service}"),
        }
    }

    fn describe(self) -> String {
        match self {
            Fault::Control => "none (control run)".into(),
            Fault::Kill(service) => format!("kill -9 {service}, restarted 2 s later"),
            Fault::Hang(service) => format!("SIGSTOP {service} for 8 s, then SIGCONT"),
            Fault::BrokerDown => "RabbitMQ stopped for 20 s".into(),
            Fault::PostgresRestart => "PostgreSQL crashed (immediate stop) and restarted at once".into(),
            Fault::PostgresDown => "PostgreSQL crashed and down for 30 s".into(),
            Fault::Down(service) => format!("{service} stopped (SIGTERM) for 30 s"),
            Fault::KillOneOfTwo(service) => {
                format!("two replicas of every service; kill -9 of one {service} replica, restarted 2 s later")
            }
        }
    }
}

const ALL: [Fault; 14] = [
    Fault::Control,
    Fault::Kill(inventory::SERVICE),
    Fault::Kill(rental::SERVICE),
    Fault::Kill(payment::SERVICE),
    Fault::Kill(delivery::SERVICE),
    Fault::Hang(payment::SERVICE),
    Fault::BrokerDown,
    Fault::PostgresRestart,
    Fault::PostgresDown,
    Fault::Down(inventory::SERVICE),
    Fault::KillOneOfTwo(rental::SERVICE),
    Fault::KillOneOfTwo(payment::SERVICE),
    Fault::KillOneOfTwo(delivery::SERVICE),
    Fault::KillOneOfTwo(inventory::SERVICE),
];

/// When the fault starts, after the load has. By then every part of a contract is in
/// flight at once: rents and deliveries, the first contracts' second months being
/// charged (and, on the card that declines later months, failing and being retried),
/// their care visits, and the first contracts ending with their pickups.
const FAULT_AFTER: Duration = Duration::from_secs(9);
const SETTLE_LIMIT: Duration = Duration::from_secs(90);

struct RunReport {
    fault: Fault,
    /// Answer kind → count, over every request of the run.
    answers: BTreeMap<String, u64>,
    rents_accepted: usize,
    course: Course,
    recovered_in: Option<Duration>,
    settled_in: Option<Duration>,
    unknown_but_committed: usize,
    violations: Vec<String>,
}

/// What the run's contracts went through, read from the services' own records once it
/// settled: the billing and field service that happened under the fault.
#[derive(Debug, Default)]
struct Course {
    /// Second (and later) months charged.
    months_charged: i64,
    /// Months whose charge was declined at least once, and those of them paid since.
    past_due: i64,
    recovered: i64,
    extended: i64,
    completed: i64,
    terminated_early: i64,
    terminated_for_non_payment: i64,
    care_visits_done: i64,
    pickups_done: i64,
    /// Pickups moved because nobody was home.
    pickups_moved: i64,
}

impl Course {
    async fn read(cluster: &ProcessCluster) -> anyhow::Result<Self> {
        use harness::audit::count;
        let payment = cluster.database(payment::SERVICE)?;
        let rental = cluster.database(rental::SERVICE)?;
        let delivery = cluster.database(delivery::SERVICE)?;
        let declined = "SELECT count(*) AS n FROM invoices i WHERE i.kind = 'PERIOD' AND EXISTS \
                        (SELECT 1 FROM invoice_attempts a WHERE a.invoice_id = i.id AND a.outcome = 'DECLINED')";
        let ended = |reasons: &str| format!("SELECT count(*) AS n FROM rentals WHERE end_reason IN ({reasons})");
        Ok(Self {
            months_charged: count(
                &payment,
                "SELECT count(*) AS n FROM invoices WHERE kind = 'PERIOD' AND period > 1 AND status = 'PAID'",
            )
            .await?,
            past_due: count(&payment, declined).await?,
            recovered: count(&payment, &format!("{declined} AND i.status = 'PAID'")).await?,
            extended: count(&rental, "SELECT count(DISTINCT rental_id) AS n FROM rental_extensions").await?,
            completed: count(&rental, &ended("'COMPLETED'")).await?,
            terminated_early: count(&rental, &ended("'TERMINATED_BY_CUSTOMER', 'TERMINATED_BY_OPERATOR'")).await?,
            terminated_for_non_payment: count(&rental, &ended("'TERMINATED_FOR_NON_PAYMENT'")).await?,
            care_visits_done: count(
                &delivery,
                "SELECT count(*) AS n FROM visits WHERE kind = 'CARE' AND status = 'DONE'",
            )
            .await?,
            pickups_done: count(
                &delivery,
                "SELECT count(*) AS n FROM visits WHERE kind = 'PICKUP' AND status = 'DONE'",
            )
            .await?,
            pickups_moved: count(&delivery, "SELECT count(*) AS n FROM outbox WHERE event_type = 'visit.rescheduled'")
                .await?,
        })
    }
}

/// The last warnings and errors of every process of a run, from its log files.
fn log_tails(log_dir: &std::path::Path) -> String {
    const LINES: usize = 20;
    let mut files: Vec<_> = std::fs::read_dir(log_dir)
        .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut text = String::new();
    for file in files.iter().filter(|file| file.extension().is_some_and(|extension| extension == "log")) {
        let content = std::fs::read_to_string(file).unwrap_or_default();
        let notable: Vec<&str> =
            content.lines().filter(|line| line.contains("WARN") || line.contains("ERROR")).collect();
        let _ = writeln!(text, "--- {} ({} warnings and errors, the last {LINES}):", file.display(), notable.len());
        for line in &notable[notable.len().saturating_sub(LINES)..] {
            let _ = writeln!(text, "{}", line.chars().take(400).collect::<String>());
        }
    }
    text
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work).await?
}

async fn inject(fault: Fault, cluster: &mut ProcessCluster) -> anyhow::Result<Instant> {
    let restart_limit = Duration::from_secs(90);
    match fault {
        Fault::Control => {}
        Fault::Kill(service) | Fault::KillOneOfTwo(service) => {
            cluster.replica(service, 0).kill().await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            cluster.replica(service, 0).restart(restart_limit).await?;
        }
        Fault::Hang(service) => {
            cluster.replica(service, 0).pause();
            tokio::time::sleep(Duration::from_secs(8)).await;
            cluster.replica(service, 0).resume();
        }
        Fault::Down(service) => {
            cluster.replica(service, 0).terminate(Duration::from_secs(30)).await?;
            tokio::time::sleep(Duration::from_secs(30)).await;
            cluster.replica(service, 0).restart(restart_limit).await?;
        }
        Fault::BrokerDown | Fault::PostgresRestart | Fault::PostgresDown => unreachable!("injected by the caller"),
    }
    Ok(Instant::now())
}

async fn run(
    fault: Fault,
    postgres: &PrivatePostgres,
    rabbit: &PrivateRabbit,
    intensity: Intensity,
    long: bool,
) -> anyhow::Result<RunReport> {
    let log_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-suite").join(fault.name());
    let _ = std::fs::remove_dir_all(&log_dir);
    let two_replicas = matches!(fault, Fault::KillOneOfTwo(_));
    let spec = ClusterSpec {
        postgres_url: postgres.url(),
        amqp_url: rabbit.amqp_url(),
        broker_node: Some(rabbit.node.clone()),
        amqps: None,
        replicas: if two_replicas { 2 } else { 1 },
        env: [
            ("RUST_LOG", "warn"),
            ("RENT_RECONCILE_AFTER_MS", "3000"),
            ("PAYMENT_TIMEOUT_MS", "1500"),
            ("PAYMENT_BREAKER_OPEN_MS", "2000"),
            ("DB_POOL_SIZE", "8"),
            // Months of 4 s: every contract delivered during the run is billed for its
            // second month and completes (load::MONTHS) under the run's fault.
            ("MONTH_SECONDS", "4"),
            // Dunning retries after 7, 15 and 30 days of such months (0.9, 2 and 4 s):
            // long enough for a customer to put a new card on file or pay at once while
            // the contract is past due.
            ("DUNNING_RETRY_DAYS", "7,15,30"),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect(),
        router_env: Vec::new(),
        router_log_level: "warn".into(),
        log_dir: log_dir.clone(),
    };
    let mut cluster =
        if two_replicas { ProcessCluster::start_balanced(spec).await? } else { ProcessCluster::start(spec).await? };
    let client = Client::new(cluster.router_url(), &cluster.identities.users);
    let rental_db = cluster.database(rental::SERVICE)?;
    let products = vec![
        load::product(&client, &rental_db, "Fault model A", 6).await?,
        load::product(&client, &rental_db, "Fault model B", 6).await?,
    ];
    client.record.lock().expect("record").answers.clear();

    let started = Instant::now();
    let fault_lasts = match fault {
        Fault::Control | Fault::PostgresRestart => Duration::ZERO,
        Fault::Kill(_) | Fault::KillOneOfTwo(_) => Duration::from_secs(2),
        Fault::Hang(_) => Duration::from_secs(8),
        Fault::BrokerDown => Duration::from_secs(20),
        Fault::PostgresDown | Fault::Down(_) => Duration::from_secs(30),
    };
    let base = if long { Duration::from_secs(60) } else { Duration::from_secs(12) };
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::new();
    for _ in 0..intensity.customers {
        tasks.push(tokio::spawn(load::customer(client.clone(), products.clone(), stop.clone(), intensity.rent_pause)));
    }
    for number in 0..intensity.operators {
        tasks.push(tokio::spawn(load::operator(client.clone(), number, stop.clone())));
    }
    tasks.push(tokio::spawn(load::restocker(client.clone(), products.clone(), stop.clone())));

    tokio::time::sleep(FAULT_AFTER).await;
    let healed = match fault {
        Fault::BrokerDown => {
            let control = rabbit.control();
            blocking(move || control.stop()).await?;
            tokio::time::sleep(fault_lasts).await;
            let control = rabbit.control();
            blocking(move || control.resume()).await?;
            Instant::now()
        }
        Fault::PostgresRestart | Fault::PostgresDown => {
            let control = postgres.control();
            blocking(move || control.crash()).await?;
            tokio::time::sleep(fault_lasts).await;
            let control = postgres.control();
            blocking(move || control.resume()).await?;
            Instant::now()
        }
        other => inject(other, &mut cluster).await?,
    };
    // The load goes on for a while after the fault, as long as the run's base length.
    let tail = Duration::from_secs(6).max(base.saturating_sub(started.elapsed()));
    tokio::time::sleep(tail).await;
    stop.cancel();
    for task in tasks {
        task.await?;
    }

    // Let it settle: nothing in flight, twice in a row.
    let settled_in =
        harness::audit::settle(SETTLE_LIMIT, || async { audit::quiet(&cluster, rabbit).await.unwrap_or(false) }).await;

    let record = std::mem::take(&mut *client.record.lock().expect("record"));
    let mut audited = audit::audit(&cluster, rabbit, &record).await?;
    if settled_in.is_none() {
        audited.violations.push(format!("the system did not settle within {SETTLE_LIMIT:?} of the load's end"));
    }
    let mut answers = BTreeMap::new();
    for kinds in record.answers.values() {
        for (kind, count) in kinds {
            *answers.entry(kind.clone()).or_default() += count;
        }
    }
    let rents_accepted = record.rents.iter().filter(|rent| rent.answer == "ok").count();
    let recovered_in = record
        .rents
        .iter()
        .filter(|rent| rent.answer == "ok" && rent.finished_at >= healed)
        .map(|rent| rent.finished_at - healed)
        .min();
    if !audited.violations.is_empty() {
        // The folder is gone with the machine a CI run had: what went wrong is printed.
        eprintln!("{}: logs in {}\n{}", fault.name(), log_dir.display(), log_tails(&log_dir));
    }
    let course = Course::read(&cluster).await?;
    cluster.drop_databases_after_stop().await?;
    Ok(RunReport {
        fault,
        answers,
        rents_accepted,
        course,
        recovered_in,
        settled_in,
        unknown_but_committed: audited.unknown_but_committed,
        violations: audited.violations,
    })
}

fn report(runs: &[RunReport], intensity: Intensity, total: Duration) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Fault suite: {} customers, {} operators and a restocker per run; {} runs in {:.0} s.\n",
        intensity.customers,
        intensity.operators,
        runs.len(),
        total.as_secs_f64()
    );
    let _ = writeln!(
        text,
        "| fault | requests | ok | refused (user error) | try again later | other errors | rents accepted | later months charged | months declined / paid since | extended | ended: completed / early / non-payment | visits done: care / pickup (pickups moved) | same-key retries that found the rental | first rent accepted after the fault ended | quiet after the load stopped | violations |"
    );
    let _ = writeln!(text, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for run in runs {
        let total: u64 = run.answers.values().sum();
        let ok = run.answers.get("ok").copied().unwrap_or(0);
        let user =
            ["PAYMENT_DECLINED", "BAD_USER_INPUT", "NOT_FOUND", "CONFLICT", "FORBIDDEN", "IDEMPOTENCY_KEY_REUSED"];
        let later = ["PAYMENT_UNAVAILABLE", "SERVICE_UNAVAILABLE", "WAITING_FOR_STOCK"];
        let sum = |codes: &[&str]| codes.iter().map(|code| run.answers.get(*code).copied().unwrap_or(0)).sum::<u64>();
        let (refused, retry) = (sum(&user), sum(&later));
        let other: Vec<String> = run
            .answers
            .iter()
            .filter(|(kind, _)| {
                kind.as_str() != "ok" && !user.contains(&kind.as_str()) && !later.contains(&kind.as_str())
            })
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        let seconds = |duration: Option<Duration>| duration.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64()));
        let _ = writeln!(
            text,
            "| {} | {total} | {ok} | {refused} | {retry} | {} | {} | {} | {} / {} | {} | {} / {} / {} | {} / {} ({}) | {} | {} | {} | {} |",
            run.fault.describe(),
            if other.is_empty() { "0".to_owned() } else { other.join(", ") },
            run.rents_accepted,
            run.course.months_charged,
            run.course.past_due,
            run.course.recovered,
            run.course.extended,
            run.course.completed,
            run.course.terminated_early,
            run.course.terminated_for_non_payment,
            run.course.care_visits_done,
            run.course.pickups_done,
            run.course.pickups_moved,
            run.unknown_but_committed,
            seconds(run.recovered_in),
            seconds(run.settled_in),
            run.violations.len()
        );
    }
    for run in runs.iter().filter(|run| !run.violations.is_empty()) {
        let _ = writeln!(text, "\n{}:", run.fault.name());
        for violation in &run.violations {
            let _ = writeln!(text, "- {violation}");
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_keeps_every_invariant() {
    subgraph_kit::telemetry::init_for_tests();
    let long = std::env::var("FAULT_SUITE_LONG").is_ok_and(|value| value == "1");
    let intensity = if long {
        Intensity { customers: 8, operators: 3, rent_pause: Duration::from_millis(20) }
    } else {
        Intensity { customers: 4, operators: 2, rent_pause: Duration::from_millis(50) }
    };
    let only: Option<Vec<String>> = std::env::var("FAULT_SUITE_FAULTS")
        .ok()
        .map(|names| names.split(',').map(|name| name.trim().to_owned()).collect());
    let faults: Vec<Fault> =
        ALL.into_iter().filter(|fault| only.as_ref().is_none_or(|names| names.contains(&fault.name()))).collect();

    let started = Instant::now();
    let postgres =
        tokio::task::spawn_blocking(PrivatePostgres::start).await.expect("joined").expect("a private PostgreSQL");
    let rabbit = tokio::task::spawn_blocking(PrivateRabbit::start).await.expect("joined").expect("a private RabbitMQ");
    let mut runs = Vec::new();
    for fault in faults {
        let run = run(fault, &postgres, &rabbit, intensity, long)
            .await
            .unwrap_or_else(|error| panic!("the {} run could not be carried out: {error:#}", fault.name()));
        eprintln!("{}: {} violations", fault.name(), run.violations.len());
        runs.push(run);
    }
    let text = report(&runs, intensity, started.elapsed());
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-suite.md");
    std::fs::write(&path, &text).expect("report written");
    println!("{text}\n(written to {})", path.display());
    let violations: usize = runs.iter().map(|run| run.violations.len()).sum();
    assert_eq!(violations, 0, "{text}");
}
