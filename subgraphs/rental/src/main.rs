#[tokio::main]
async fn main() -> anyhow::Result<()> {
    subgraph_kit::app::run_until_signal(rental::SERVICE, rental::MIGRATIONS, rental::Config::from_env, rental::start)
        .await
}
