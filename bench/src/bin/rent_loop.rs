//! P2 (simple form): closed-loop `rent` calls through the router from many concurrent
//! customers. Reports rents/s, latency percentiles, errors, and the lag from a rental's
//! commit to its delivery being created.
//!
//!     cargo build --release -p router --bins && cargo run --release -p bench --bin rent-loop -- [SECONDS] [CONCURRENCY]

use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(20);
    let concurrency: usize = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(32);
    let result = bench::scenarios::rent_loop::run(seconds, concurrency, Duration::from_secs(3)).await?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    println!(
        "\n| rents/s | p50 ms | p99 ms | errors | delivery lag p50 ms | p99 ms |\n|---|---|---|---|---|---|\n| {:.0} | {:.1} | {:.1} | {} | {:.1} | {:.1} |",
        result["rentsPerSecond"].as_f64().unwrap_or(0.0),
        result["latencyMs"]["p50"].as_f64().unwrap_or(0.0),
        result["latencyMs"]["p99"].as_f64().unwrap_or(0.0),
        result["errors"],
        result["deliveryLagMs"]["p50"].as_f64().unwrap_or(0.0),
        result["deliveryLagMs"]["p99"].as_f64().unwrap_or(0.0),
    );
    if let Some(tps) = result["pgbenchTps"].as_f64() {
        println!(
            "\npgbench -N on the same server: {tps:.0} TPS; rents per pgbench transaction: {:.2}",
            result["rentsPerPgbenchTransaction"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
