//! Two replicas of every subgraph behind HAProxy, the router pointed at it, under the
//! steady load of `harness::workload`; once with every replica up throughout, once with
//! every replica of every service restarted one after the other during the load.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::cluster::ProcessCluster;
use harness::workload::{Workload, WorkloadSpec};

use crate::support::{ONE_AT_A_TIME, private_postgres, queues, settle, spec};

const LOAD: WorkloadSpec = WorkloadSpec {
    customers: 3,
    operators: 2,
    watchers: 8,
    customer_pause: Duration::from_millis(100),
    operator_pause: Duration::from_millis(100),
};

/// The open live subscriptions of each delivery replica, from its `/metrics`.
async fn live_subscriptions(cluster: &ProcessCluster, http: &reqwest::Client) -> Vec<i64> {
    let mut counts = Vec::new();
    for replicas in cluster.services.iter().filter(|replicas| replicas.name == delivery::SERVICE) {
        for process in &replicas.processes {
            let text = match http.get(process.metrics_url()).send().await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let open = text
                .lines()
                .find(|line| line.starts_with("water_live_subscriptions{"))
                .and_then(|line| line.split_whitespace().last())
                .and_then(|value| value.parse::<f64>().ok())
                .unwrap_or(0.0);
            counts.push(open as i64);
        }
    }
    counts
}

/// What a run saw, to assert on and to print.
struct Outcome {
    answers: BTreeMap<String, BTreeMap<String, u64>>,
    failed: usize,
    failures: Vec<String>,
    rents_accepted: usize,
    live: harness::workload::LiveReport,
    violations: Vec<String>,
    doubled: Vec<String>,
    /// The most live subscriptions each delivery replica held at once.
    most_subscriptions_per_replica: Vec<i64>,
    restarts: usize,
}

async fn run(test: &str, rolling_restart: bool) -> Outcome {
    subgraph_kit::telemetry::init_for_tests();
    let postgres = private_postgres().await;
    let mut cluster = ProcessCluster::start_balanced(spec(&postgres, test, 2)).await.expect("cluster started");
    let router = cluster.router_url();
    let rental_db = cluster.database(rental::SERVICE).expect("rental database");
    let mut products = Vec::new();
    for name in ["Replica model A", "Replica model B"] {
        products.push(
            harness::workload::product(&router, &cluster.identities.users, &rental_db, name, 10_000)
                .await
                .expect("product"),
        );
    }
    let mut workload = Workload::start(&router, &cluster.identities.users, &products, LOAD).expect("load started");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");

    // The watchers are all following a delivery before anything else happens.
    let started = Instant::now();
    while workload.open_subscriptions() < LOAD.watchers && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut most = vec![0; 2];
    let sample = |counts: Vec<i64>, most: &mut Vec<i64>| {
        for (most, count) in most.iter_mut().zip(counts) {
            *most = (*most).max(count);
        }
    };
    let mut restarts = 0;
    if rolling_restart {
        cluster
            .rolling_restart(Duration::from_secs(30), |service, replica, took| {
                restarts += 1;
                eprintln!("{test}: restarted {service}-{replica} in {:.1} s", took.as_secs_f64());
            })
            .await
            .expect("every replica restarted cleanly");
        // The load goes on a moment with every replica new.
        for _ in 0..20 {
            sample(live_subscriptions(&cluster, &http).await, &mut most);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        for _ in 0..80 {
            sample(live_subscriptions(&cluster, &http).await, &mut most);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    workload.stop().await;
    let settled = settle(&cluster, Duration::from_secs(60)).await;
    let delivery_db = cluster.database(delivery::SERVICE).expect("delivery database");
    let live = workload.finish_watching(&delivery_db, Duration::from_secs(20)).await.expect("watchers finished");

    let tally = std::mem::take(&mut *workload.tally.lock().expect("tally"));
    let audited =
        harness::audit::audit(&cluster, &queues(&cluster), &tally.rents, &Default::default()).await.expect("audited");
    let doubled = harness::audit::doubled_effects(&cluster).await.expect("doubled effects counted");
    let mut violations = tally.violations.clone();
    if !settled {
        violations.push("the system did not settle within 60 s of the load's end".into());
    }
    violations.extend(audited.violations);
    violations.extend(live.violations.iter().cloned());
    let outcome = Outcome {
        answers: tally.answers(),
        failed: tally.failed(),
        failures: tally.failures.clone(),
        rents_accepted: tally.rents.iter().filter(|rent| rent.answer == "ok").count(),
        live,
        violations,
        doubled,
        most_subscriptions_per_replica: most,
        restarts,
    };
    eprintln!(
        "{test}: answers {:?}; rents accepted {}; live {:?}; most subscriptions per delivery replica {:?}",
        outcome.answers, outcome.rents_accepted, outcome.live, outcome.most_subscriptions_per_replica
    );
    if outcome.failed > 0 || !outcome.violations.is_empty() || !outcome.doubled.is_empty() {
        eprintln!("{test}: logs in {}", cluster.spec.log_dir.display());
    }
    cluster.delete_namespace().await.expect("namespace deleted");
    cluster.drop_databases_after_stop().await.expect("stopped");
    outcome
}

fn assert_correct(outcome: &Outcome) {
    assert_eq!(outcome.failed, 0, "failed requests: {:?}\n{:#?}", outcome.answers, outcome.failures);
    assert!(outcome.violations.is_empty(), "violations: {:#?}", outcome.violations);
    assert!(outcome.doubled.is_empty(), "effects doubled: {:#?}", outcome.doubled);
    assert_eq!(outcome.live.lost, 0, "status changes no live subscriber saw: {:?}", outcome.live);
    // The run did something worth auditing.
    assert!(outcome.rents_accepted >= 10, "only {} rents accepted", outcome.rents_accepted);
    assert!(outcome.live.events >= LOAD.watchers, "live events: {:?}", outcome.live);
    let delivered = outcome.answers.get("completeDelivery").and_then(|kinds| kinds.get("ok")).copied().unwrap_or(0);
    assert!(delivered > 0, "no delivery completed: {:?}", outcome.answers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_everything_stay_correct() {
    let _one = ONE_AT_A_TIME.lock().await;
    let outcome = run("two-replicas", false).await;
    assert_correct(&outcome);
    // The router's subscriptions were spread over both delivery replicas.
    assert!(
        outcome.most_subscriptions_per_replica.iter().all(|most| *most > 0),
        "live subscriptions per delivery replica: {:?}",
        outcome.most_subscriptions_per_replica
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_replica_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let outcome = run("rolling-restart", true).await;
    assert_eq!(outcome.restarts, 8, "every replica of every service restarted");
    assert_correct(&outcome);
    // A draining delivery replica gets no new subscriptions (each has a WebSocket of its
    // own, which the balancer opens on a ready replica), and most of its open streams
    // reach their end during the drain; any still open when it stops complete, and their
    // watchers subscribe again (nothing lost, asserted above). None is ever cut.
    assert!(
        outcome.live.resubscribed >= outcome.live.completed_early,
        "every completed watcher came back: {:?}",
        outcome.live
    );
    assert_eq!(outcome.live.cut, 0, "sockets cut without complete: {:?}", outcome.live);
    assert_eq!(outcome.live.router_socket_failures, 0, "subscriptions the router failed: {:?}", outcome.live);
}
