//! Status change to client latency: WebSocket subscribers through the router, one per
//! rental; an operator ships and completes each delivery; the time from the start of
//! the mutation to the change arriving at its subscriber is recorded.
//!
//!     cargo build --release -p router --bins && cargo run --release -p bench --bin live-latency -- [RENTALS]
//!
//! Each rental gives two changes (SHIPPING, DELIVERED), so 500 rentals measure 1,000.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rentals: usize = std::env::args().nth(1).map(|arg| arg.parse()).transpose()?.unwrap_or(500);
    let result = bench::scenarios::live_latency::run(rentals).await?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
