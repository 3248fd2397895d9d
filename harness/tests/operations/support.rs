//! What the operations tests share: a cluster on a private PostgreSQL (the machine's
//! shared server allows 100 connections, and eight replicas with their pools would
//! crowd out other users) and the machine's RabbitMQ (each cluster has a namespace of
//! its own), and waiting for it to settle.

use std::time::Duration;

use harness::cluster::{ClusterSpec, PrivatePostgres, ProcessCluster, queue_depths};

/// One cluster at a time on this machine.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Longer than HAProxy needs to see a draining replica's `/ready` fail
/// (`harness::balancer::detection_limit`, 2 s), so that no new request reaches a replica
/// once it stops listening.
pub const DRAIN_SECONDS: u64 = 3;

pub fn spec(postgres: &PrivatePostgres, test: &str, replicas: usize) -> ClusterSpec {
    let log_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("operations").join(test);
    let _ = std::fs::remove_dir_all(&log_dir);
    assert!(
        harness::balancer::detection_limit() < Duration::from_secs(DRAIN_SECONDS),
        "the drain window must outlast HAProxy's detection of a draining replica"
    );
    ClusterSpec {
        postgres_url: postgres.url(),
        amqp_url: AMQP_URL.into(),
        broker_node: None,
        amqps: None,
        replicas,
        env: [
            ("RUST_LOG", "warn".to_owned()),
            ("DRAIN_SECONDS", DRAIN_SECONDS.to_string()),
            ("DB_POOL_SIZE", "6".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect(),
        router_env: Vec::new(),
        router_log_level: "warn".into(),
        log_dir,
    }
}

pub async fn private_postgres() -> PrivatePostgres {
    tokio::task::spawn_blocking(PrivatePostgres::start).await.expect("joined").expect("a private PostgreSQL")
}

pub fn queues(cluster: &ProcessCluster) -> Vec<(String, u64)> {
    queue_depths(None, &cluster.namespace).expect("queue depths from rabbitmqctl")
}

/// Waits until nothing is in flight (`harness::audit::settle`); false if that did not
/// happen within `limit`.
pub async fn settle(cluster: &ProcessCluster, limit: Duration) -> bool {
    harness::audit::settle(limit, || async { harness::audit::quiet(cluster, &queues(cluster)).await.unwrap_or(false) })
        .await
        .is_some()
}
