//! P1, federated read: the customer's rentals page (`myRentals` with product, payment and
//! delivery) and the catalog query, through our router, through Apollo Gateway and
//! through Hive Gateway (same subgraphs, same supergraph), alternating A/B/C under the
//! same closed-loop load; plus the floor: the same subgraph fetches made directly.
//! Every target's answer is checked against ours before it is timed.
//!
//! The rounds are the runs: each figure is the median of ROUNDS (3) with its range.
//!
//!     bench/run federated-read [SECONDS_PER_ROUND] [ROUNDS] [CONCURRENCY]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::report::format_number;
use bench::{BenchStack, cpu_seconds, median, percentile, rss_mib};
use serde_json::{Value, json};
use subgraph_kit::Identity;
use tokio::process::{Child, Command};
use uuid::Uuid;

const MY_RENTALS: &str = "{ myRentals(first: 20) { edges { node { id status months product { name monthlyFee } payment { amount status } delivery { status } } } } }";
const RENTALS_EACH: usize = 5;
const CATALOG: &str = "{ products(first: 20) { edges { node { id name description monthlyFee stock } } } }";

/// Per target, one value per round: req/s, p50, p99, CPU %; and the peak RSS.
type Samples = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, f64, u64);

struct Gateway {
    name: &'static str,
    url: String,
    child: Child,
}

fn gateways_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/gateways"))
}

/// Starts a peer gateway from `bench/gateways` (see its README) with Node, pointed at
/// our subgraphs; `args` (script first) are relative to that folder.
async fn spawn_gateway(name: &'static str, args: &[&str], port: u16, stack: &BenchStack) -> anyhow::Result<Gateway> {
    let mut command = Command::new("node");
    command
        .args(args)
        .current_dir(gateways_dir())
        .env("GATEWAY_PORT", port.to_string())
        // Apollo Gateway reports anonymous telemetry (and probes cloud metadata
        // addresses) unless told not to; nothing may leave this machine.
        .env("APOLLO_TELEMETRY_DISABLED", "true")
        // The Hive CLI lets these generic names override its configuration.
        .env_remove("PORT")
        .env_remove("HOST")
        .env("SUPERGRAPH_PATH", stack::router_process::SUPERGRAPH_FILE)
        .env("NODE_ENV", "production")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (service, url) in stack.subgraphs.urls() {
        command.env(format!("{}_URL", service.to_ascii_uppercase()), url);
    }
    let child = command.spawn()?;
    let url = format!("http://127.0.0.1:{port}/graphql");
    let client = reqwest::Client::new();
    for _ in 0..300 {
        let probe = client.post(&url).json(&json!({ "query": "{ __typename }" })).send().await;
        if probe.is_ok() {
            return Ok(Gateway { name, url, child });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{name} did not start on port {port}")
}

/// One timed run: correct answers per second, their sorted latencies in ms, and how
/// many answers were wrong (an error, a transport failure, or not the expected data).
struct Run {
    throughput: f64,
    latencies: Vec<f64>,
    wrong: u64,
}

/// Closed-loop load for `duration`. Only an answer equal to the customer's expected
/// one counts; anything else is counted as wrong and its time is not a sample.
async fn load(
    client: &reqwest::Client,
    url: &str,
    customers: &[(String, Value)],
    query: &str,
    concurrency: usize,
    duration: Duration,
) -> Run {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let workers = (0..concurrency).map(|worker| {
        let client = client.clone();
        let url = url.to_owned();
        let (token, expected) = customers[worker % customers.len()].clone();
        let body = json!({ "query": query });
        async move {
            let (mut latencies, mut wrong) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let sent = Instant::now();
                let correct = match client.post(&url).bearer_auth(&token).json(&body).send().await {
                    Ok(response) => response.json::<Value>().await.is_ok_and(|answer| answer == expected),
                    Err(_) => false,
                };
                if correct {
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                } else {
                    wrong += 1;
                }
            }
            (latencies, wrong)
        }
    });
    let results = futures::future::join_all(workers).await;
    let wrong = results.iter().map(|(_, wrong)| wrong).sum();
    let mut all: Vec<f64> = results.into_iter().flat_map(|(latencies, _)| latencies).collect();
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Run { throughput: all.len() as f64 / elapsed, latencies: all, wrong }
}

/// A subgraph's answer: JSON without errors, with `check` true of its data.
async fn correct(response: Result<reqwest::Response, reqwest::Error>, check: impl Fn(&Value) -> bool) -> bool {
    let Ok(response) = response else { return false };
    let Ok(body) = response.json::<Value>().await else { return false };
    body.get("errors").is_none() && check(&body["data"])
}

/// The floor: the fetches the router's plan makes, made directly by the client (one to
/// rental, then the three entity fetches at once). Returns the number of pages done.
async fn floor_once(client: &reqwest::Client, urls: &Floor, token: &str, catalog: bool) -> bool {
    let post = |url: &str, body: Value| client.post(url.to_owned()).bearer_auth(token).json(&body).send();
    if catalog {
        let products = |data: &Value| data["products"]["edges"].as_array().is_some_and(|edges| !edges.is_empty());
        return correct(post(&urls.inventory, json!({ "query": CATALOG })).await, products).await;
    }
    let first = "{ myRentals(first: 20) { edges { node { id status months product { id } } } } }";
    let Ok(response) = post(&urls.rental, json!({ "query": first })).await else { return false };
    let Ok(page) = response.json::<Value>().await else { return false };
    if page.get("errors").is_some() {
        return false;
    }
    let edges = page["data"]["myRentals"]["edges"].as_array().cloned().unwrap_or_default();
    if edges.len() != RENTALS_EACH {
        return false;
    }
    let rentals: Vec<Value> =
        edges.iter().map(|edge| json!({ "__typename": "Rental", "id": edge["node"]["id"] })).collect();
    let products: Vec<Value> =
        edges.iter().map(|edge| json!({ "__typename": "Product", "id": edge["node"]["product"]["id"] })).collect();
    let entities =
        |selection: &str| format!("query($r: [_Any!]!) {{ _entities(representations: $r) {{ {selection} }} }}");
    let (a, b, c) = tokio::join!(
        post(
            &urls.inventory,
            json!({ "query": entities("... on Product { name monthlyFee }"), "variables": { "r": products } })
        ),
        post(
            &urls.payment,
            json!({ "query": entities("... on Rental { payment { amount status } }"), "variables": { "r": rentals } })
        ),
        post(
            &urls.delivery,
            json!({ "query": entities("... on Rental { delivery { status } }"), "variables": { "r": rentals } })
        ),
    );
    let all_found = |data: &Value| {
        data["_entities"]
            .as_array()
            .is_some_and(|found| found.len() == RENTALS_EACH && found.iter().all(|e| !e.is_null()))
    };
    correct(a, all_found).await && correct(b, all_found).await && correct(c, all_found).await
}

struct Floor {
    inventory: String,
    rental: String,
    payment: String,
    delivery: String,
}

async fn load_floor(
    client: &reqwest::Client,
    urls: &Floor,
    customers: &[(String, Value)],
    catalog: bool,
    concurrency: usize,
    duration: Duration,
) -> Run {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let workers = (0..concurrency).map(|worker| async move {
        let token = &customers[worker % customers.len()].0;
        let (mut latencies, mut wrong) = (Vec::new(), 0u64);
        while Instant::now() < deadline {
            let sent = Instant::now();
            if floor_once(client, urls, token, catalog).await {
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            } else {
                wrong += 1;
            }
        }
        (latencies, wrong)
    });
    let results = futures::future::join_all(workers).await;
    let wrong = results.iter().map(|(_, wrong)| wrong).sum();
    let mut all: Vec<f64> = results.into_iter().flat_map(|(latencies, _)| latencies).collect();
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Run { throughput: all.len() as f64 / elapsed, latencies: all, wrong }
}

async fn answer(client: &reqwest::Client, url: &str, token: &str, query: &str) -> anyhow::Result<Value> {
    Ok(client.post(url).bearer_auth(token).json(&json!({ "query": query })).send().await?.json().await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(10);
    let rounds: usize = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(3);
    let concurrency: usize = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(32);

    let stack = Arc::new(BenchStack::start().await?);
    // One customer per worker, each with rentals of their own: no two concurrent
    // requests are identical, so no gateway can answer one from another's in-flight
    // subgraph fetch (hive-router deduplicates identical ones by default).
    let product_id = stack.rentable_product("Federated model", 19_900, 100_000).await?;
    let mut customers = Vec::new();
    for _ in 0..concurrency {
        let customer = stack.token(&Identity::Customer { customer_id: Uuid::now_v7() });
        for _ in 0..RENTALS_EACH {
            stack.rent(&customer, product_id).await?;
        }
        customers.push(customer);
    }
    let customer = customers[0].clone();
    // Every rental has its delivery before anything is timed.
    let client = reqwest::Client::builder().pool_max_idle_per_host(1024).build()?;
    let ours = stack.router.graphql_url();
    for token in &customers {
        for _ in 0..400 {
            let page = answer(&client, &ours, token, MY_RENTALS).await?;
            let edges = page["data"]["myRentals"]["edges"].as_array().cloned().unwrap_or_default();
            if edges.len() == RENTALS_EACH && edges.iter().all(|edge| !edge["node"]["delivery"].is_null()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let free_port = || stack::router_process::free_port(std::net::Ipv4Addr::LOCALHOST);
    let mut gateways = vec![
        spawn_gateway("Apollo Gateway", &["apollo.mjs"], free_port()?, &stack).await?,
        spawn_gateway(
            "Hive Gateway",
            &["node_modules/.bin/hive-gateway", "supergraph", "-c", "gateway.config.mjs"],
            free_port()?,
            &stack,
        )
        .await?,
    ];

    let mut report = Vec::new();
    for (label, query) in [("myRentals page", MY_RENTALS), ("catalog", CATALOG)] {
        let expected = answer(&client, &ours, &customer, query).await?;
        anyhow::ensure!(expected.get("errors").is_none(), "our router answered with errors: {expected}");
        // Each customer's correct answer, checked once: the timed runs count only these.
        let mut answers = Vec::with_capacity(customers.len());
        for token in &customers {
            let own = answer(&client, &ours, token, query).await?;
            anyhow::ensure!(own.get("errors").is_none(), "our router answered with errors: {own}");
            answers.push((token.clone(), own));
        }
        let mut targets: Vec<(&str, String, Option<u32>)> =
            vec![("hive-router (ours)", ours.clone(), stack.router.pid())];
        for gateway in &gateways {
            let theirs = answer(&client, &gateway.url, &customer, query).await?;
            anyhow::ensure!(theirs == expected, "{} answered differently: {theirs}", gateway.name);
            targets.push((gateway.name, gateway.url.clone(), gateway.child.id()));
        }
        let floor = Floor {
            inventory: stack.subgraphs.inventory.url(),
            rental: stack.subgraphs.rental.url(),
            payment: stack.subgraphs.payment.url(),
            delivery: stack.subgraphs.delivery.url(),
        };
        let catalog = label == "catalog";
        anyhow::ensure!(floor_once(&client, &floor, &customer, catalog).await, "the direct fetches answer correctly");
        targets.push(("floor: direct subgraph fetches", String::new(), None));
        let mut results: Vec<Samples> = vec![Default::default(); targets.len()];
        for _ in 0..rounds {
            for (index, (_, url, pid)) in targets.iter().enumerate() {
                let run = |duration| {
                    let (client, floor, answers) = (&client, &floor, &answers);
                    async move {
                        if url.is_empty() {
                            load_floor(client, floor, answers, catalog, concurrency, duration).await
                        } else {
                            load(client, url, answers, query, concurrency, duration).await
                        }
                    }
                };
                let _ = run(Duration::from_secs(1)).await; // warm-up
                let cpu_before = pid.and_then(cpu_seconds);
                let Run { throughput, latencies, wrong } = run(Duration::from_secs(seconds)).await;
                let cpu = match (cpu_before, pid.and_then(cpu_seconds)) {
                    (Some(before), Some(after)) => (after - before) / seconds as f64 * 100.0,
                    _ => f64::NAN,
                };
                let entry = &mut results[index];
                entry.0.push(throughput);
                entry.1.push(percentile(&latencies, 0.5));
                entry.2.push(percentile(&latencies, 0.99));
                entry.3.push(cpu);
                entry.4 = pid.and_then(rss_mib).unwrap_or(f64::NAN).max(entry.4);
                entry.5 += wrong;
            }
        }
        for ((name, _, _), (mut rps, mut p50, mut p99, mut cpu, rss, wrong)) in targets.iter().zip(results) {
            let spread = rps.iter().cloned().fold(f64::INFINITY, f64::min)..=rps.iter().cloned().fold(0.0, f64::max);
            report.push(json!({
                "query": label, "target": name,
                "requestsPerSecond": median(&mut rps), "spread": [spread.start(), spread.end()],
                "p50Ms": median(&mut p50), "p99Ms": median(&mut p99),
                "cpuPercent": median(&mut cpu), "rssMiB": rss, "wrongAnswers": wrong,
            }));
        }
    }

    let mut table = String::from(
        "| query | target | correct answers/s (median) | range | p50 ms | p99 ms | CPU % | RSS MiB | wrong answers |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in &report {
        let number = |pointer: &str, decimals| {
            format_number(row.pointer(pointer).and_then(Value::as_f64).unwrap_or(f64::NAN), decimals)
        };
        table.push_str(&format!(
            "| {} | {} | {} | {}–{} | {} | {} | {} | {} | {} |\n",
            row["query"].as_str().unwrap_or(""),
            row["target"].as_str().unwrap_or(""),
            number("/requestsPerSecond", 0),
            number("/spread/0", 0),
            number("/spread/1", 0),
            number("/p50Ms", 1),
            number("/p99Ms", 1),
            number("/cpuPercent", 0),
            number("/rssMiB", 0),
            row["wrongAnswers"],
        ));
    }
    bench::report::write(
        "federated-read",
        "P1 federated read",
        &format!("bench/run federated-read {seconds} {rounds} {concurrency}"),
        json!({ "secondsPerRound": seconds, "rounds": rounds, "concurrency": concurrency, "rentalsPerCustomer": RENTALS_EACH }),
        json!({ "scenario": "federated-read", "results": report }),
        &table,
    )
    .await?;
    for gateway in &mut gateways {
        let _ = gateway.child.kill().await;
    }
    match Arc::try_unwrap(stack) {
        Ok(stack) => stack.stop().await,
        Err(_) => Ok(()),
    }
}
