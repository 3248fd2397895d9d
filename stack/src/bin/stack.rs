//! Runs the whole system on this machine as five processes: each subgraph from its own
//! binary, then the router, and the development issuer inside this one (it signs the
//! tokens; every process verifies them with its JWKS, as in production). Each service
//! logs into PostgreSQL as a role of its own, owner of its database only (made here, its
//! password kept in `.dev/secrets/`), and migrates it, and into RabbitMQ as a user of its
//! own (made here with `rabbitmqctl`, after the topology); inventory seeds the demo catalog. The keys are
//! kept in `.dev/` (`DEV_KEYS_DIR`), so tokens survive a restart. Prints the URLs and
//! two dev tokens, restarts a
//! service that crashes (and says so), and on Ctrl-C or SIGTERM drains and stops
//! everything, the router first.
//!
//! Needs PostgreSQL (POSTGRES_URL, default postgres://postgres@127.0.0.1:5432, a role
//! that may create roles and databases) and
//! RabbitMQ (AMQP_URL). Every other variable the services read passes through.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use identity::{DEV_CUSTOMER_ID, Identity, JwksSource, TokenIssuer};
use stack::binaries::binary;
use stack::processes::{Output, ProcessSpec, ServiceProcess};
use stack::{RouterProcess, RouterSettings};
use subgraph_kit::backoff::Backoff;
use subgraph_kit::config::{DEFAULT_AMQP_URL, DEFAULT_POSTGRES_URL, env_or, telemetry_from_env, without_password};

/// In start order: rental calls payment, so payment comes first.
const SUBGRAPHS: [(&str, u16); 4] = [
    (inventory::SERVICE, inventory::DEFAULT_PORT),
    (payment::SERVICE, payment::DEFAULT_PORT),
    (rental::SERVICE, rental::DEFAULT_PORT),
    (delivery::SERVICE, delivery::DEFAULT_PORT),
];

const START_LIMIT: Duration = Duration::from_secs(120);
const STOP_LIMIT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = subgraph_kit::telemetry::init("stack", &telemetry_from_env()?)?;
    let shutdown = subgraph_kit::shutdown::on_signal();

    // The development issuer, served from this process.
    let keys_dir = std::path::PathBuf::from(env_or("DEV_KEYS_DIR", ".dev"));
    let users = dev_issuer::issuer_from_key_file(&keys_dir.join("issuer-key.pem"))?;
    let issuer_address = listen_address("dev_issuer", dev_issuer::DEFAULT_PORT)?;
    let issuer_listener = tokio::net::TcpListener::bind(issuer_address)
        .await
        .with_context(|| format!("binding the development issuer to {issuer_address} (DEV_ISSUER_LISTEN)"))?;
    tokio::spawn(dev_issuer::serve(issuer_listener, users.clone()));
    let jwks_url = format!("http://{issuer_address}{}", dev_issuer::JWKS_PATH);
    let identities = stack::Identities::development(users.clone(), JwksSource::Url(jwks_url.clone()), &keys_dir)?;

    let postgres_url = env_or("POSTGRES_URL", DEFAULT_POSTGRES_URL);
    let amqp_url = env_or("AMQP_URL", DEFAULT_AMQP_URL);
    let namespace = env_or("EVENTS_NAMESPACE", "water");
    let broker_accounts = match stack::accounts::provision_broker(
        &amqp_url,
        None,
        &namespace,
        &namespace.replace('.', r"\."),
        "water",
        stack::accounts::Passwords::Random,
        &keys_dir,
    )
    .await
    {
        Ok(accounts) => accounts,
        // `rabbitmqctl` needs the broker's cookie (root, or the rabbitmq user): without
        // it the services share AMQP_URL's user, as they did before users of their own.
        Err(error) => {
            eprintln!("stack: the services share {}'s broker user: {error:#}", without_password(&amqp_url));
            Vec::new()
        }
    };
    let mut subgraphs = Vec::new();
    let mut urls = Vec::new();
    let payment_url = format!("http://{}/graphql", listen_address(payment::SERVICE, payment::DEFAULT_PORT)?);
    for (service, port) in SUBGRAPHS {
        let address = listen_address(service, port)?;
        let metrics_address = metrics_address(service, port)?;
        let prefix = service.to_ascii_uppercase();
        let mut env = vec![
            (format!("{prefix}_LISTEN"), address.to_string()),
            (format!("{prefix}_METRICS_LISTEN"), metrics_address.to_string()),
        ];
        env.extend(identities.env_for(service));
        let database = env_or(&format!("{prefix}_DATABASE"), &format!("water_{service}"));
        env.extend(stack::accounts::provision_postgres(&postgres_url, service, &database, &keys_dir).await?);
        if let Some(account) = broker_accounts.iter().find(|account| account.service == service) {
            env.extend(account.env(&amqp_url, None));
        }
        if service == inventory::SERVICE {
            env.push(("DEMO_CATALOG".into(), "true".into()));
        }
        if service == rental::SERVICE {
            env.push(("PAYMENT_URL".into(), payment_url.clone()));
        }
        let spec = ProcessSpec {
            name: service.to_owned(),
            binary: binary(service)?,
            env,
            env_remove: Vec::new(),
            address,
            metrics_address,
            ready_path: "/ready".into(),
            output: Output::Prefixed,
        };
        println!("starting {service} on {address}");
        let process = tokio::select! {
            started = ServiceProcess::spawn(spec, START_LIMIT) => started?,
            () = shutdown.cancelled() => return stop_all(None, subgraphs).await,
        };
        urls.push((service, process.url()));
        subgraphs.push(process);
    }

    let host: Ipv4Addr = env_or("ROUTER_HOST", "127.0.0.1").parse().context("ROUTER_HOST must be an IPv4 address")?;
    let port: u16 = env_or("ROUTER_PORT", "4000").parse().context("ROUTER_PORT must be a port number")?;
    let tokens = DevTokens::new(&users);
    let router_settings = || -> anyhow::Result<RouterSettings> {
        Ok(RouterSettings {
            binary: binary("router")?,
            port,
            host,
            subgraph_urls: urls.clone(),
            token_env: identities.env_for("router"),
            log_level: env_or("LOG_LEVEL", "info"),
            log_file: None,
            workers: None,
            // The GraphiQL page opens signed in as the dev operator: development only.
            extra_env: vec![("GRAPHIQL_DEV_TOKEN".into(), tokens.operator.clone())],
        })
    };
    let mut router = RouterProcess::spawn(router_settings()?).await?;
    print_welcome(&router, &subgraphs, &tokens, &jwks_url);

    // Supervise: a service that exits is started again, with backoff.
    let mut backoffs: Vec<Backoff> = subgraphs.iter().map(|_| restart_backoff()).collect();
    let mut router_backoff = restart_backoff();
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = check.tick() => {}
        }
        for (process, backoff) in subgraphs.iter_mut().zip(&mut backoffs) {
            if let Some(status) = process.try_exited()? {
                let delay = backoff.next_delay();
                eprintln!("stack: {} exited ({status}); restarting it in {delay:?}", process.spec.name);
                tokio::time::sleep(delay).await;
                match process.restart(START_LIMIT).await {
                    Ok(()) => eprintln!("stack: {} is back", process.spec.name),
                    Err(error) => eprintln!("stack: {} did not come back: {error:#}", process.spec.name),
                }
            }
        }
        if let Some(status) = router.try_exited()? {
            let delay = router_backoff.next_delay();
            eprintln!("stack: the router exited ({status}); restarting it in {delay:?}");
            tokio::time::sleep(delay).await;
            match RouterProcess::spawn(router_settings()?).await {
                Ok(fresh) => {
                    router = fresh;
                    eprintln!("stack: the router is back");
                }
                Err(error) => eprintln!("stack: the router did not come back: {error:#}"),
            }
        }
    }
    stop_all(Some(router), subgraphs).await
}

/// Stops the router first (no new requests), then the subgraphs, each draining.
async fn stop_all(router: Option<RouterProcess>, subgraphs: Vec<ServiceProcess>) -> anyhow::Result<()> {
    println!("stopping");
    if let Some(router) = router {
        router.stop().await?;
    }
    let stops = subgraphs.into_iter().rev().map(|mut process| async move {
        let status = process.terminate(STOP_LIMIT).await;
        (process.spec.name.clone(), status)
    });
    for (name, status) in futures::future::join_all(stops).await {
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("stack: {name} stopped with {status}"),
            Err(error) => eprintln!("stack: stopping {name}: {error:#}"),
        }
    }
    println!("stopped");
    Ok(())
}

fn restart_backoff() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(30))
}

/// `<SERVICE>_LISTEN`, or 127.0.0.1 on the service's default port.
fn listen_address(service: &str, port: u16) -> anyhow::Result<SocketAddr> {
    address_from_env(&format!("{}_LISTEN", service.to_ascii_uppercase()), port)
}

/// `<SERVICE>_METRICS_LISTEN`, or 127.0.0.1 on the service's default metrics port
/// (`subgraph_kit::config::default_metrics_port`).
fn metrics_address(service: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let name = format!("{}_METRICS_LISTEN", service.to_ascii_uppercase());
    address_from_env(&name, subgraph_kit::config::default_metrics_port(port))
}

/// The socket address in variable `name`, or 127.0.0.1 on `port`.
fn address_from_env(name: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let value = env_or(name, &format!("127.0.0.1:{port}"));
    value.parse().with_context(|| format!("{name}={value} is not a socket address"))
}

struct DevTokens {
    customer: String,
    operator: String,
}

impl DevTokens {
    fn new(issuer: &TokenIssuer) -> Self {
        let valid_for = Duration::from_secs(30 * 24 * 3600);
        let customer_id = DEV_CUSTOMER_ID.parse().expect("the dev customer id is a UUID");
        Self {
            customer: issuer.issue(&Identity::Customer { customer_id }, valid_for),
            operator: issuer.issue(&Identity::Operator { subject: "dev-operator".into() }, valid_for),
        }
    }
}

fn print_welcome(router: &RouterProcess, subgraphs: &[ServiceProcess], tokens: &DevTokens, jwks_url: &str) {
    println!();
    println!("Water-dispenser rental stack is up: five processes.");
    println!();
    println!("  GraphiQL and GraphQL  {}", router.graphql_url());
    println!("  WebSocket             {}", router.websocket_url());
    println!("  router metrics        {} (a port of its own)", router.metrics_url());
    for process in subgraphs {
        println!("  {:<21} {} (direct; needs a token too)", process.spec.name, process.url());
    }
    for process in subgraphs {
        println!("  {:<21} {}", format!("{} metrics", process.spec.name), process.metrics_url());
    }
    println!();
    println!("Dev tokens (valid 30 days; GraphiQL opens signed in as the operator; for other");
    println!("requests send the header  Authorization: Bearer <token>):");
    println!();
    println!("  customer {DEV_CUSTOMER_ID}:");
    println!("  {}", tokens.customer);
    println!();
    println!("  operator:");
    println!("  {}", tokens.operator);
    println!();
    println!("More tokens: make token ROLE=customer ID=<uuid>   (or ROLE=operator), signed by the");
    println!("development issuer (its public keys: {jwks_url})");
    println!();
    println!("Try:  curl -s {} -H 'Content-Type: application/json' \\", router.graphql_url());
    println!("        -H 'Authorization: Bearer {}' \\", tokens.operator);
    println!("        -d '{{\"query\":\"{{ products {{ edges {{ node {{ id name monthlyFee stock }} }} }} }}\"}}'");
    println!();
    println!("Ctrl-C drains and stops everything.");
}
