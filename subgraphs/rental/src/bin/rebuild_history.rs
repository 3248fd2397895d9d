//! Rebuilds the customers' rental history from the rental, payment and delivery
//! databases (configured as for the services: POSTGRES_URL, <SERVICE>_DATABASE).
//!
//!     cargo run -p rental --bin rebuild-history

use subgraph_kit::{Database, ServiceConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    subgraph_kit::telemetry::init();
    let open = |service: &'static str| -> anyhow::Result<Database> {
        let config = ServiceConfig::from_env(service, 0)?;
        Database::open_pool(&config.database.url(), 2)
    };
    let projected = rental::history::rebuild(&open("rental")?, &open("payment")?, &open("delivery")?)
        .await
        .map_err(|error| anyhow::anyhow!(error.message))?;
    println!("rebuilt the history of {projected} rentals");
    Ok(())
}
