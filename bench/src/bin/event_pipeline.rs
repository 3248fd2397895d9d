//! P4: events per second through outbox, relay, broker and consumer, and their lag, at
//! a fixed offered load.
//!
//!     cargo run --release -p bench --bin event-pipeline -- [RATE_PER_SECOND] [SECONDS]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rate: usize = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(2000);
    let seconds: u64 = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(20);
    let result = bench::scenarios::event_pipeline::run(rate, seconds).await?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
