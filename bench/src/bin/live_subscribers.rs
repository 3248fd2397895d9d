//! P3, live subscribers: SUBSCRIBERS WebSocket subscribers through the router, one per
//! rental, while an operator changes RATE statuses per second for SECONDS. Reports the
//! change-to-client latency, lost and duplicated changes, and memory per subscriber;
//! BENCH_RUNS runs (3).
//!
//!     bench/run live-subscribers [SUBSCRIBERS] [RATE] [SECONDS]

use bench::report::{Figure, repeat_and_write};
use serde_json::json;

const FIGURES: &[Figure] = &[
    Figure { label: "subscribers", pointer: "/subscribers", decimals: 0 },
    Figure { label: "changes/s (achieved)", pointer: "/changesPerSecond", decimals: 0 },
    Figure { label: "change → client p50 ms", pointer: "/latencyMs/p50", decimals: 1 },
    Figure { label: "change → client p99 ms", pointer: "/latencyMs/p99", decimals: 1 },
    Figure { label: "change → client max ms", pointer: "/latencyMs/max", decimals: 1 },
    Figure { label: "operator mutation p50 ms", pointer: "/mutationMs/p50", decimals: 1 },
    Figure { label: "operator mutation p99 ms", pointer: "/mutationMs/p99", decimals: 1 },
    Figure { label: "changes delivered", pointer: "/delivered", decimals: 0 },
    Figure { label: "lost", pointer: "/lost", decimals: 0 },
    Figure { label: "duplicated", pointer: "/duplicated", decimals: 0 },
    Figure { label: "mutation errors", pointer: "/mutationErrors", decimals: 0 },
    Figure { label: "router RSS KiB per subscriber", pointer: "/router/rssKiBPerSubscriber", decimals: 1 },
    Figure { label: "router RSS MiB with all subscribed", pointer: "/router/rssMiBAfter", decimals: 0 },
    Figure { label: "router CPU share while changing", pointer: "/router/cpuShareWhileChanging", decimals: 2 },
    Figure { label: "services RSS KiB per subscriber", pointer: "/services/rssKiBPerSubscriber", decimals: 1 },
    Figure { label: "seconds to subscribe everyone", pointer: "/subscribeSeconds", decimals: 1 },
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let subscribers: usize = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(10_000);
    let rate: usize = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(200);
    let seconds: u64 = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(60);
    repeat_and_write(
        "live-subscribers",
        "P3 live subscribers",
        &format!("bench/run live-subscribers {subscribers} {rate} {seconds}"),
        json!({ "subscribers": subscribers, "changesPerSecond": rate, "seconds": seconds }),
        FIGURES,
        || bench::scenarios::live_subscribers::run(subscribers, rate, seconds),
    )
    .await
}
