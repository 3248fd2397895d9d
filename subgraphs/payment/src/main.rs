#[tokio::main]
async fn main() -> anyhow::Result<()> {
    subgraph_kit::server::run_until_signal(payment::SERVICE, payment::DEFAULT_PORT, payment::start).await
}
