#[tokio::main]
async fn main() -> anyhow::Result<()> {
    subgraph_kit::server::run_until_signal(rental::SERVICE, rental::DEFAULT_PORT, rental::start).await
}
