#[tokio::main]
async fn main() -> anyhow::Result<()> {
    subgraph_kit::app::run_until_signal(
        payment::SERVICE,
        payment::MIGRATIONS,
        payment::Config::from_env,
        payment::start,
    )
    .await
}
