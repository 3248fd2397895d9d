//! S1, flood isolation: customer B's latency alone and while customer A floods the same
//! router with rents, against the production rate limits; A's flood must be refused with
//! 429 `RATE_LIMITED` beyond its limit, B's answers must all be right. BENCH_RUNS runs (3).
//!
//!     bench/run flood-isolation [SECONDS] [FLOOD_CONCURRENCY]

use bench::report::{Figure, repeat_and_write};
use serde_json::json;

const FIGURES: &[Figure] = &[
    Figure { label: "B query p50 ms, alone", pointer: "/alone/queryMs/p50", decimals: 2 },
    Figure { label: "B query p50 ms, during A's flood", pointer: "/flooded/queryMs/p50", decimals: 2 },
    Figure { label: "B query p99 ms, alone", pointer: "/alone/queryMs/p99", decimals: 2 },
    Figure { label: "B query p99 ms, during A's flood", pointer: "/flooded/queryMs/p99", decimals: 2 },
    Figure { label: "B rent p50 ms, alone", pointer: "/alone/rentMs/p50", decimals: 1 },
    Figure { label: "B rent p50 ms, during A's flood", pointer: "/flooded/rentMs/p50", decimals: 1 },
    Figure { label: "B query p50, flooded / alone", pointer: "/queryP50Ratio", decimals: 2 },
    Figure { label: "B query p99, flooded / alone", pointer: "/queryP99Ratio", decimals: 2 },
    Figure { label: "A's requests/s", pointer: "/flood/requestsPerSecond", decimals: 0 },
    Figure { label: "A's rents accepted", pointer: "/flood/accepted", decimals: 0 },
    Figure { label: "A's rents refused (429)", pointer: "/flood/refused", decimals: 0 },
    Figure { label: "errors", pointer: "/errors", decimals: 0 },
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(20);
    let concurrency: usize = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(32);
    repeat_and_write(
        "flood-isolation",
        "S1 flood isolation",
        &format!("bench/run flood-isolation {seconds} {concurrency}"),
        json!({ "seconds": seconds, "floodConcurrency": concurrency, "warmUpSeconds": 1 }),
        FIGURES,
        || bench::scenarios::flood_isolation::run(seconds, concurrency),
    )
    .await
}
