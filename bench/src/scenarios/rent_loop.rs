//! P2 (simple form): closed-loop `rent` calls through the router.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use subgraph_kit::Identity;
use uuid::Uuid;

use crate::{BenchStack, machine, percentile};

/// Runs the loop for `seconds` (after `warm_up`) with `concurrency` customers and
/// returns the results as JSON.
pub async fn run(seconds: u64, concurrency: usize, warm_up: Duration) -> anyhow::Result<Value> {
    run_with(seconds, concurrency, warm_up, true).await
}

/// As [`run`]; with `physical_limit`, also measures `pgbench -N` on the same server for
/// as long, after the loop, and reports the ratio.
pub async fn run_with(
    seconds: u64,
    concurrency: usize,
    warm_up: Duration,
    physical_limit: bool,
) -> anyhow::Result<Value> {
    let stack = Arc::new(BenchStack::start().await?);
    let product_id = stack.rentable_product("Bench model", 19_900, 1_000_000).await?;

    let errors = Arc::new(AtomicU64::new(0));
    let run = |duration: Duration, record: bool| {
        let stack = stack.clone();
        let errors = errors.clone();
        async move {
            let deadline = Instant::now() + duration;
            let workers = (0..concurrency).map(|_| {
                let stack = stack.clone();
                let errors = errors.clone();
                tokio::spawn(async move {
                    let token = stack.token(&Identity::Customer { customer_id: Uuid::now_v7() });
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        let rented = stack.rent(&token, product_id).await;
                        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
                        match rented {
                            Ok(_) => latencies.push(elapsed),
                            Err(_) if record => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {}
                        }
                    }
                    latencies
                })
            });
            let mut all = Vec::new();
            for worker in futures::future::join_all(workers).await {
                all.extend(worker.expect("worker"));
            }
            all
        }
    };

    run(warm_up, false).await;
    let started = Instant::now();
    let mut latencies = run(Duration::from_secs(seconds), true).await;
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);

    // Lag from rental commit to delivery created, over every rental of the run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lags = delivery_lags(&stack).await?;

    let rents_per_second = latencies.len() as f64 / elapsed;
    let result = json!({
        "scenario": "rent-loop",
        "machine": machine(),
        "seconds": seconds,
        "concurrency": concurrency,
        "rents": latencies.len(),
        "rentsPerSecond": rents_per_second,
        "latencyMs": { "p50": percentile(&latencies, 0.5), "p99": percentile(&latencies, 0.99), "max": latencies.last() },
        "errors": AtomicU64::load(&errors, Ordering::Relaxed),
        "deliveryLagMs": { "p50": percentile(&lags, 0.5), "p99": percentile(&lags, 0.99), "samples": lags.len() },
    });
    match Arc::try_unwrap(stack) {
        Ok(stack) => stack.stop().await?,
        Err(_) => anyhow::bail!("workers still hold the stack"),
    }
    let mut result = result;
    if physical_limit && let Some(tps) = crate::pgbench_tps(seconds, concurrency).await? {
        result["pgbenchTps"] = json!(tps);
        result["rentsPerPgbenchTransaction"] = json!(rents_per_second / tps);
    }
    Ok(result)
}

async fn delivery_lags(stack: &BenchStack) -> anyhow::Result<Vec<f64>> {
    #[derive(diesel::QueryableByName)]
    struct Created {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        at: chrono::DateTime<chrono::Utc>,
    }
    let load = |database: &subgraph_kit::Database, sql: &'static str| {
        let database = database.clone();
        async move {
            let mut connection = database.connection().await.map_err(|error| anyhow::anyhow!(error.message))?;
            let rows: Vec<Created> = diesel::sql_query(sql).load(&mut connection).await?;
            anyhow::Ok(rows)
        }
    };
    let rentals = load(&stack.subgraphs.rental.database, "SELECT id, created_at AS at FROM rentals").await?;
    let deliveries =
        load(&stack.subgraphs.delivery.database, "SELECT rental_id AS id, requested_at AS at FROM deliveries").await?;
    let requested: std::collections::HashMap<Uuid, chrono::DateTime<chrono::Utc>> =
        deliveries.into_iter().map(|row| (row.id, row.at)).collect();
    let mut lags: Vec<f64> = rentals
        .iter()
        .filter_map(|rental| {
            requested.get(&rental.id).map(|at| (*at - rental.at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    Ok(lags)
}
