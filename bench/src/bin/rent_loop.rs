//! P2, rent throughput: closed-loop `rent` calls through the router from CONCURRENCY
//! customers for SECONDS, then `pgbench -N` on the same PostgreSQL for as long as the
//! physical limit. Reports rents/s, latency percentiles, errors, the lag from a rental's
//! commit to its delivery being created, and the ratio to pgbench; BENCH_RUNS runs (3).
//!
//!     bench/run rent-loop [SECONDS] [CONCURRENCY]

use std::time::Duration;

use bench::report::{Figure, repeat_and_write};
use serde_json::json;

const FIGURES: &[Figure] = &[
    Figure { label: "rents/s", pointer: "/rentsPerSecond", decimals: 0 },
    Figure { label: "rent p50 ms", pointer: "/latencyMs/p50", decimals: 1 },
    Figure { label: "rent p99 ms", pointer: "/latencyMs/p99", decimals: 1 },
    Figure { label: "errors", pointer: "/errors", decimals: 0 },
    Figure { label: "commit → delivery created p50 ms", pointer: "/deliveryLagMs/p50", decimals: 1 },
    Figure { label: "commit → delivery created p99 ms", pointer: "/deliveryLagMs/p99", decimals: 1 },
    Figure { label: "pgbench -N TPS (same server, same clients)", pointer: "/pgbenchTps", decimals: 0 },
    Figure { label: "rents per pgbench transaction", pointer: "/rentsPerPgbenchTransaction", decimals: 3 },
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(60);
    let concurrency: usize = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(16);
    repeat_and_write(
        "rent-loop",
        "P2 rent throughput",
        &format!("bench/run rent-loop {seconds} {concurrency}"),
        json!({ "seconds": seconds, "concurrency": concurrency, "warmUpSeconds": 3 }),
        FIGURES,
        || bench::scenarios::rent_loop::run(seconds, concurrency, Duration::from_secs(3)),
    )
    .await
}
