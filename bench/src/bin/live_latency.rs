//! Status change to client latency, one change at a time: WebSocket subscribers through
//! the router, one per rental; an operator ships and completes each delivery; the time
//! from the start of the mutation to the change arriving at its subscriber is recorded.
//! Each rental gives two changes, so 500 rentals measure 1,000; BENCH_RUNS runs (3).
//!
//!     bench/run live-latency [RENTALS]

use bench::report::{Figure, repeat_and_write};
use serde_json::json;

const FIGURES: &[Figure] = &[
    Figure { label: "changes", pointer: "/changes", decimals: 0 },
    Figure { label: "latency p50 ms", pointer: "/latencyMs/p50", decimals: 1 },
    Figure { label: "latency p99 ms", pointer: "/latencyMs/p99", decimals: 1 },
    Figure { label: "latency max ms", pointer: "/latencyMs/max", decimals: 1 },
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rentals: usize = std::env::args().nth(1).map(|arg| arg.parse()).transpose()?.unwrap_or(500);
    repeat_and_write(
        "live-latency",
        "Status change to subscriber, one change at a time",
        &format!("bench/run live-latency {rentals}"),
        json!({ "rentals": rentals }),
        FIGURES,
        || bench::scenarios::live_latency::run(rentals),
    )
    .await
}
