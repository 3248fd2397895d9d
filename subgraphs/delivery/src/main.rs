#[tokio::main]
async fn main() -> anyhow::Result<()> {
    subgraph_kit::server::run_until_signal(delivery::SERVICE, delivery::DEFAULT_PORT, delivery::start).await
}
