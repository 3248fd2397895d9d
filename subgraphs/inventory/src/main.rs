#[tokio::main]
async fn main() -> anyhow::Result<()> {
    subgraph_kit::app::run_until_signal(
        inventory::SERVICE,
        inventory::MIGRATIONS,
        inventory::Config::from_env,
        inventory::start,
    )
    .await
}
