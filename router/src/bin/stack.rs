//! Runs the whole system on this machine: creates and migrates the four databases,
//! seeds the demo catalog, starts the four subgraphs and the router, prints the URLs and
//! two dev tokens, and stops everything cleanly on Ctrl-C or SIGTERM.
//!
//! Needs PostgreSQL (POSTGRES_URL, default postgres://postgres@127.0.0.1:5432).

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context;
use stack::{RouterProcess, RouterSettings, Subgraphs};
use subgraph_kit::auth::DEV_CUSTOMER_ID;
use subgraph_kit::config::{env_or, jwt_secret_from_env};
use subgraph_kit::{Identity, ServiceConfig, TokenIssuer};

const DEFAULT_PORTS: [(&str, u16); 4] = [
    (inventory::SERVICE, inventory::DEFAULT_PORT),
    (rental::SERVICE, rental::DEFAULT_PORT),
    (payment::SERVICE, payment::DEFAULT_PORT),
    (delivery::SERVICE, delivery::DEFAULT_PORT),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    subgraph_kit::telemetry::init();
    let jwt_secret = jwt_secret_from_env();
    subgraph_kit::auth::warn_if_dev_secret(&jwt_secret);
    let shutdown = subgraph_kit::shutdown::on_signal();

    let subgraphs = Subgraphs::start(
        |service| {
            let port = DEFAULT_PORTS.iter().find(|(name, _)| *name == service).map(|(_, port)| *port);
            ServiceConfig::from_env(service, port.expect("every subgraph has a default port"))
        },
        &rental::RentalSettings::from_env()?,
        shutdown.clone(),
    )
    .await?;
    let seeded = inventory::demo::seed(&subgraphs.inventory.database)
        .await
        .map_err(|error| anyhow::anyhow!("seeding the demo catalog: {}", error.message))?;
    tracing::info!(products_added = seeded, "demo catalog seeded");

    let host: Ipv4Addr = env_or("ROUTER_HOST", "127.0.0.1").parse().context("ROUTER_HOST must be an IPv4 address")?;
    let port: u16 = env_or("ROUTER_PORT", "4000").parse().context("ROUTER_PORT must be a port number")?;
    let binary = std::env::current_exe()?.with_file_name("router");
    if !binary.exists() {
        anyhow::bail!("the router binary is not at {}: build it first with `cargo build -p router`", binary.display());
    }
    let mut router = RouterProcess::spawn(RouterSettings {
        binary,
        port,
        host,
        subgraph_urls: subgraphs.urls(),
        jwt_secret: jwt_secret.clone(),
        log_level: env_or("LOG_LEVEL", "info"),
        log_file: None,
        workers: None,
    })
    .await?;

    print_welcome(&router, &subgraphs, &jwt_secret);

    tokio::select! {
        () = shutdown.cancelled() => {
            router.stop().await?;
        }
        status = router.exited() => {
            tracing::error!(status = ?status?, "the router exited; stopping the subgraphs");
            shutdown.cancel();
        }
    }
    subgraphs.stopped().await;
    println!("stopped");
    Ok(())
}

fn print_welcome(router: &RouterProcess, subgraphs: &Subgraphs, jwt_secret: &str) {
    let issuer = TokenIssuer::new(jwt_secret);
    let valid_for = Duration::from_secs(30 * 24 * 3600);
    let customer_id = DEV_CUSTOMER_ID.parse().expect("the dev customer id is a UUID");
    let customer = issuer.issue(&Identity::Customer { customer_id }, valid_for);
    let operator = issuer.issue(&Identity::Operator { subject: "dev-operator".into() }, valid_for);
    println!();
    println!("Water-dispenser rental stack is up.");
    println!();
    println!("  GraphiQL and GraphQL  {}", router.graphql_url());
    println!("  WebSocket             {}", router.websocket_url());
    for service in subgraphs.all() {
        println!("  {:<21} {} (direct; needs a token too)", service.name, service.url());
    }
    println!();
    println!("Dev tokens (valid 30 days; paste into GraphiQL's Headers tab as");
    println!("{{\"Authorization\": \"Bearer <token>\"}}):");
    println!();
    println!("  customer {DEV_CUSTOMER_ID}:");
    println!("  {customer}");
    println!();
    println!("  operator:");
    println!("  {operator}");
    println!();
    println!("Try:  curl -s {} -H 'Content-Type: application/json' \\", router.graphql_url());
    println!("        -H 'Authorization: Bearer {operator}' \\");
    println!("        -d '{{\"query\":\"{{ products {{ edges {{ node {{ name monthlyFee stock }} }} }} }}\"}}'");
    println!();
    println!("Ctrl-C stops everything.");
}
