//! P4, the event pipeline: events per second through outbox, relay, broker and
//! consumer, and their lag, at a fixed offered load; BENCH_RUNS runs (3) per rate.
//!
//!     bench/run event-pipeline [SECONDS] [RATE_PER_SECOND...]

use bench::report::{Figure, repeat_and_write};
use serde_json::json;

const FIGURES: &[Figure] = &[
    Figure { label: "offered events/s (achieved)", pointer: "/offeredPerSecond", decimals: 0 },
    Figure { label: "applied events/s", pointer: "/appliedPerSecond", decimals: 0 },
    Figure { label: "lag p50 ms", pointer: "/lagMs/p50", decimals: 1 },
    Figure { label: "lag p99 ms", pointer: "/lagMs/p99", decimals: 1 },
    Figure { label: "lag max ms", pointer: "/lagMs/max", decimals: 1 },
    Figure { label: "events not applied exactly once", pointer: "/notApplied", decimals: 0 },
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(20);
    let mut rates: Vec<usize> = args.map(|arg| arg.parse()).collect::<Result<_, _>>()?;
    if rates.is_empty() {
        rates = vec![2_000, 5_000];
    }
    for rate in rates {
        repeat_and_write(
            &format!("event-pipeline-{rate}"),
            &format!("P4 event pipeline at {rate} events/s offered"),
            &format!("bench/run event-pipeline {seconds} {rate}"),
            json!({ "seconds": seconds, "offeredPerSecond": rate }),
            FIGURES,
            || bench::scenarios::event_pipeline::run(rate, seconds),
        )
        .await?;
    }
    Ok(())
}
