//! Rolling restart under load: two replicas of each subgraph, each its own process,
//! behind HAProxy (standing in for a Kubernetes Service), the router pointed at it; a
//! steady load of rents, reads and operators' steps through the router
//! (`harness::workload`) and a few hundred live subscribers that subscribe again when
//! their stream completes. After a quiet stretch, every replica of every service is
//! restarted one after the other (SIGTERM, wait for it to drain and exit, start it,
//! wait until it is ready and HAProxy sends it requests again).
//!
//! Reports requests by answer kind (target: 0 failed), latency p99 during the restarts
//! against before, subscription events lost (target: 0 after resubscribing), and
//! effects doubled (target: 0, from the invariant audit). One run: the restarts are the
//! experiment, and one takes about two minutes.
//!
//!     bench/run rolling-restart [SUBSCRIBERS=300] [CUSTOMERS=8] [BEFORE_SECONDS=20]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bench::percentile;
use bench::report::{format_number, write};
use harness::cluster::{ClusterSpec, PrivatePostgres, ProcessCluster, queue_depths};
use harness::workload::{Sample, Workload, WorkloadSpec};
use serde_json::{Value, json};

/// Longer than HAProxy takes to see a draining replica's `/ready` fail
/// (`harness::balancer::detection_limit`), so no new request reaches a replica that has
/// stopped listening.
const DRAIN_SECONDS: u64 = 3;
const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let subscribers: usize = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(300);
    let customers: usize = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(8);
    let before_seconds: u64 = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(20);
    // The operator is slower than the customers, so deliveries wait and the subscribers
    // hold a few hundred subscriptions open at once.
    let load = WorkloadSpec {
        customers,
        operators: 1,
        watchers: subscribers,
        customer_pause: Duration::from_millis(100),
        operator_pause: Duration::from_millis(500),
    };
    let parameters = json!({
        "subscribers": subscribers, "customers": customers, "operators": load.operators,
        "customerPauseMs": load.customer_pause.as_millis() as u64,
        "operatorPauseMs": load.operator_pause.as_millis() as u64, "beforeSeconds": before_seconds,
        "replicasPerService": 2, "drainSeconds": DRAIN_SECONDS,
    });
    let result = run(load, Duration::from_secs(before_seconds)).await?;
    let table = table(&result);
    write(
        "rolling-restart",
        "Rolling restart of every replica under load",
        &format!("bench/run rolling-restart {subscribers} {customers} {before_seconds}"),
        parameters,
        result,
        &table,
    )
    .await
}

/// p50 and p99 in milliseconds of the samples `keep` selects, and how many there were.
fn latency(samples: &[Sample], keep: impl Fn(&Sample) -> bool) -> Value {
    let mut millis: Vec<f64> =
        samples.iter().filter(|sample| keep(sample)).map(|sample| sample.took.as_secs_f64() * 1000.0).collect();
    millis.sort_by(f64::total_cmp);
    json!({ "requests": millis.len(), "p50": percentile(&millis, 0.5), "p99": percentile(&millis, 0.99) })
}

async fn run(load: WorkloadSpec, before: Duration) -> anyhow::Result<Value> {
    let postgres = tokio::task::spawn_blocking(PrivatePostgres::start).await??;
    let log_dir = std::env::temp_dir().join(format!("water-rolling-restart-{}", uuid::Uuid::new_v4().simple()));
    let mut cluster = ProcessCluster::start_balanced(ClusterSpec {
        postgres_url: postgres.url(),
        amqp_url: AMQP_URL.into(),
        broker_node: None,
        amqps: None,
        replicas: 2,
        env: [
            ("RUST_LOG", "warn".to_owned()),
            ("DRAIN_SECONDS", DRAIN_SECONDS.to_string()),
            ("DB_POOL_SIZE", "8".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect(),
        router_env: Vec::new(),
        router_log_level: "warn".into(),
        log_dir: log_dir.clone(),
    })
    .await?;
    eprintln!("rolling-restart: cluster up; logs in {}", log_dir.display());
    let router = cluster.router_url();
    let rental_db = cluster.database(rental::SERVICE)?;
    let mut products = Vec::new();
    for name in ["Rolling model A", "Rolling model B"] {
        products
            .push(harness::workload::product(&router, &cluster.identities.users, &rental_db, name, 1_000_000).await?);
    }
    let mut workload = Workload::start(&router, &cluster.identities.users, &products, load)?;
    let warming = Instant::now();
    while workload.open_subscriptions() < load.watchers && warming.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "rolling-restart: {} live subscriptions open; {before:?} before the restarts",
        workload.open_subscriptions()
    );

    let before_started = Instant::now();
    tokio::time::sleep(before).await;
    let restarts_started = Instant::now();
    let mut open_during = Vec::new();
    let mut restarts = Vec::new();
    {
        // The open subscriptions are sampled while the restarts go on.
        let sampling = tokio_util::sync::CancellationToken::new();
        let open = &workload;
        let sampler = async {
            while !sampling.is_cancelled() {
                open_during.push(open.open_subscriptions());
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    () = sampling.cancelled() => {}
                }
            }
        };
        let restart = async {
            let result = cluster
                .rolling_restart(Duration::from_secs(60), |service, replica, took| {
                    eprintln!("rolling-restart: {service}-{replica} restarted in {:.1} s", took.as_secs_f64());
                    restarts.push(json!({ "replica": format!("{service}-{replica}"), "seconds": took.as_secs_f64() }));
                })
                .await;
            sampling.cancel();
            result
        };
        let ((), restarted) = tokio::join!(sampler, restart);
        restarted?;
    }
    let restarts_ended = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    workload.stop().await;

    let settled = harness::audit::settle(Duration::from_secs(120), || async {
        match queue_depths(None, &cluster.namespace) {
            Ok(queues) => harness::audit::quiet(&cluster, &queues).await.unwrap_or(false),
            Err(_) => false,
        }
    })
    .await
    .is_some();
    let delivery_db = cluster.database(delivery::SERVICE)?;
    let live = workload.finish_watching(&delivery_db, Duration::from_secs(30)).await?;
    let tally = std::mem::take(&mut *workload.tally.lock().expect("tally"));
    let queues = queue_depths(None, &cluster.namespace)?;
    let audited = harness::audit::audit(&cluster, &queues, &tally.rents, &BTreeMap::new()).await?;
    let doubled = harness::audit::doubled_effects(&cluster).await?;

    let in_before = |sample: &Sample| sample.started >= before_started && sample.started < restarts_started;
    let in_restarts = |sample: &Sample| sample.started >= restarts_started && sample.started < restarts_ended;
    let mut violations = tally.violations.clone();
    violations.extend(audited.violations.iter().cloned());
    violations.extend(live.violations.iter().cloned());
    if !settled {
        violations.push("the system did not settle within 120 s of the load's end".into());
    }
    let answers = tally.answers();
    let by_kind: BTreeMap<String, u64> =
        answers.values().flatten().fold(BTreeMap::new(), |mut kinds, (kind, count)| {
            *kinds.entry(kind.clone()).or_default() += count;
            kinds
        });
    let rents = |samples: &[Sample], phase: &dyn Fn(&Sample) -> bool| {
        latency(samples, |sample| sample.operation == "rent" && phase(sample))
    };
    let result = json!({
        "requests": tally.samples.len(),
        "failed": tally.failed(),
        "failures": tally.failures,
        "answersByKind": by_kind,
        "answersByOperation": answers,
        "rentsAccepted": tally.rents.iter().filter(|rent| rent.answer == "ok").count(),
        "unknownButCommitted": audited.unknown_but_committed,
        "latencyMs": {
            "before": latency(&tally.samples, in_before),
            "duringRestarts": latency(&tally.samples, in_restarts),
            "rentBefore": rents(&tally.samples, &in_before),
            "rentDuringRestarts": rents(&tally.samples, &in_restarts),
        },
        "seconds": {
            "before": (restarts_started - before_started).as_secs_f64(),
            "restarts": (restarts_ended - restarts_started).as_secs_f64(),
        },
        "restarts": restarts,
        "live": {
            "subscribers": load.watchers,
            "openDuringRestartsMin": open_during.iter().min(),
            "openDuringRestartsMax": open_during.iter().max(),
            "rentalsFollowed": live.rentals_followed,
            "events": live.events,
            "resubscribed": live.resubscribed,
            "completedEarly": live.completed_early,
            "cutWithoutComplete": live.cut,
            "routerSocketFailures": live.router_socket_failures,
            "lost": live.lost,
            "skippedAroundResubscription": live.skipped_around_resubscription,
        },
        "doubledEffects": doubled.len(),
        "doubled": doubled,
        "violations": violations,
    });
    cluster.delete_namespace().await?;
    cluster.drop_databases_after_stop().await?;
    drop(postgres);
    let _ = std::fs::remove_dir_all(&log_dir);
    Ok(result)
}

fn table(result: &Value) -> String {
    let number = |pointer: &str, decimals: usize| {
        format_number(result.pointer(pointer).and_then(Value::as_f64).unwrap_or(f64::NAN), decimals)
    };
    let mut text = String::from("| figure | before the restarts | during the restarts |\n|---|---|---|\n");
    let _ = writeln!(text, "| seconds | {} | {} |", number("/seconds/before", 1), number("/seconds/restarts", 1));
    let _ = writeln!(
        text,
        "| requests started | {} | {} |",
        number("/latencyMs/before/requests", 0),
        number("/latencyMs/duringRestarts/requests", 0)
    );
    let rate = |requests: &str, seconds: &str| {
        let requests = result.pointer(requests).and_then(Value::as_f64).unwrap_or(f64::NAN);
        format_number(requests / result.pointer(seconds).and_then(Value::as_f64).unwrap_or(f64::NAN), 1)
    };
    let _ = writeln!(
        text,
        "| requests/s | {} | {} |",
        rate("/latencyMs/before/requests", "/seconds/before"),
        rate("/latencyMs/duringRestarts/requests", "/seconds/restarts")
    );
    for (label, before, during) in [
        ("all requests p50 ms", "/latencyMs/before/p50", "/latencyMs/duringRestarts/p50"),
        ("all requests p99 ms", "/latencyMs/before/p99", "/latencyMs/duringRestarts/p99"),
        ("rent p99 ms", "/latencyMs/rentBefore/p99", "/latencyMs/rentDuringRestarts/p99"),
    ] {
        let _ = writeln!(text, "| {label} | {} | {} |", number(before, 1), number(during, 1));
    }
    text.push_str("\n| outcome over the whole run | value | target |\n|---|---|---|\n");
    let _ = writeln!(text, "| requests | {} | |", number("/requests", 0));
    let _ = writeln!(text, "| failed requests | {} | 0 |", number("/failed", 0));
    let kinds: Vec<String> = result["answersByKind"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(kind, count)| format!("{kind} {}", format_number(count.as_f64().unwrap_or(0.0), 0)))
        .collect();
    let _ = writeln!(text, "| answers by kind | {} | |", kinds.join(", "));
    let _ = writeln!(text, "| rents accepted | {} | |", number("/rentsAccepted", 0));
    let _ = writeln!(
        text,
        "| live subscriptions open during the restarts | {}–{} | {} subscribers |",
        number("/live/openDuringRestartsMin", 0),
        number("/live/openDuringRestartsMax", 0),
        number("/live/subscribers", 0)
    );
    let _ = writeln!(text, "| live events received | {} | |", number("/live/events", 0));
    let _ = writeln!(
        text,
        "| resubscriptions (after `complete` / after a cut socket) | {} / {} | |",
        number("/live/completedEarly", 0),
        number("/live/cutWithoutComplete", 0)
    );
    let _ = writeln!(
        text,
        "| subscriptions the router ended with SUBGRAPH_WEBSOCKET_CLIENT_FAILURE (its socket to a stopping replica closed), subscribed again | {} | 0 |",
        number("/live/routerSocketFailures", 0)
    );
    let _ = writeln!(text, "| subscription events lost | {} | 0 |", number("/live/lost", 0));
    let _ = writeln!(
        text,
        "| intermediate statuses current only while their subscriber was resubscribing (not deliverable) | {} | |",
        number("/live/skippedAroundResubscription", 0)
    );
    let _ = writeln!(text, "| effects doubled | {} | 0 |", number("/doubledEffects", 0));
    let violations = result["violations"].as_array().map_or(0, Vec::len);
    let _ = writeln!(text, "| invariant violations (audit) | {violations} | 0 |");
    text.push_str("\nRestart of each replica (SIGTERM → exited → started → ready → up in HAProxy), seconds: ");
    let restarts: Vec<String> = result["restarts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|restart| {
            format!(
                "{} {:.1}",
                restart["replica"].as_str().unwrap_or("?"),
                restart["seconds"].as_f64().unwrap_or(f64::NAN)
            )
        })
        .collect();
    text.push_str(&restarts.join(", "));
    text.push('\n');
    text
}
