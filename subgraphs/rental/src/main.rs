#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = rental::RentalSettings::from_env()?;
    subgraph_kit::server::run_until_signal(rental::SERVICE, rental::DEFAULT_PORT, |config, shutdown| {
        rental::start(config, settings, shutdown)
    })
    .await
}
