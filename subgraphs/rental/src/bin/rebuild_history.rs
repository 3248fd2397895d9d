//! Rebuilds the customers' rental history from the rental, payment, delivery and
//! inventory databases (configured as for the services: POSTGRES_URL, <SERVICE>_DATABASE).
//!
//!     target/debug/rebuild-history      (built by `make bins`)

use subgraph_kit::Database;
use subgraph_kit::config::{database_from_env, telemetry_from_env};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = subgraph_kit::telemetry::init("rebuild-history", &telemetry_from_env()?)?;
    let open = |service: &'static str| -> anyhow::Result<Database> {
        Database::open_configured(&database_from_env(service)?, 2)
    };
    let projected =
        rental::service::rebuild::rebuild(&open("rental")?, &open("payment")?, &open("delivery")?, &open("inventory")?)
            .await
            .map_err(|error| anyhow::anyhow!(error.message))?;
    println!("rebuilt the history of {projected} rentals");
    Ok(())
}
