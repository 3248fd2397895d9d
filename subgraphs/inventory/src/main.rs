#[tokio::main]
async fn main() -> anyhow::Result<()> {
    subgraph_kit::server::run_until_signal(inventory::SERVICE, inventory::DEFAULT_PORT, inventory::start).await
}
