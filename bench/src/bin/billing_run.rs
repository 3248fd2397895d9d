//! The billing run: a month of many rentals falls due at once and is charged through the
//! whole pipeline (contract clock, relay, payment's invoices and collector, rental hearing
//! back); charges per second, with `pgbench -N` on the same server as the limit.
//! BENCH_RUNS runs (3).
//!
//!     bench/run billing-run [RENTALS=100000]

use bench::report::{Figure, repeat_and_write};
use serde_json::json;

const FIGURES: &[Figure] = &[
    Figure { label: "charges/s", pointer: "/chargesPerSecond", decimals: 0 },
    Figure { label: "all charged, s", pointer: "/chargedSeconds", decimals: 1 },
    Figure { label: "all announced, s", pointer: "/announcedSeconds", decimals: 1 },
    Figure { label: "all invoiced, s", pointer: "/invoicedSeconds", decimals: 1 },
    Figure { label: "rental heard of every charge, s", pointer: "/heardSeconds", decimals: 1 },
    Figure { label: "charge lag p50 ms (invoice to paid)", pointer: "/chargeLagMs/p50", decimals: 0 },
    Figure { label: "charge lag p99 ms", pointer: "/chargeLagMs/p99", decimals: 0 },
    Figure { label: "a million rentals, minutes", pointer: "/millionRentalsMinutes", decimals: 1 },
    Figure { label: "pgbench -N tps (same server)", pointer: "/pgbenchTps", decimals: 0 },
    Figure { label: "errors", pointer: "/errors", decimals: 0 },
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rentals: usize = std::env::args().nth(1).map(|arg| arg.parse()).transpose()?.unwrap_or(100_000);
    repeat_and_write(
        "billing-run",
        &format!("Billing run: {rentals} rentals due at once, charged from the card on file"),
        &format!("bench/run billing-run {rentals}"),
        json!({ "rentals": rentals }),
        FIGURES,
        || bench::scenarios::billing_run::run(rentals, true),
    )
    .await
}
