#[tokio::main]
async fn main() -> anyhow::Result<()> {
    subgraph_kit::app::run_until_signal(
        delivery::SERVICE,
        delivery::MIGRATIONS,
        delivery::Config::from_env,
        delivery::start,
    )
    .await
}
