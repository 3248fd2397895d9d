//! S1, flood isolation: does one client's flood slow another's requests? Customer B
//! runs a closed loop of what a customer does (the catalog, their rentals, a rent every
//! two seconds) through a router with the production rate limits (60 mutations a minute,
//! 20 at once), first alone, then while customer A floods the same router with rents
//! from FLOOD_CONCURRENCY connections. What is compared is B's latency in the two
//! phases; A's answers must each be a rental or `RATE_LIMITED` (429), B's each the
//! expected data: anything else counts as an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use subgraph_kit::Identity;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{BenchStack, machine, percentile};

const CATALOG: &str = "{ products(first: 20) { edges { node { id name monthlyFee stock } } } }";
const MY_RENTALS: &str = "{ myRentals(first: 20) { edges { node { id status product { name } } } } }";
const RENT: &str = "mutation($input: RentInput!) { rent(input: $input) { id status } }";
/// B rents once every this long: well inside its own limit.
const B_RENTS_EVERY: Duration = Duration::from_secs(2);

/// B's latencies of one phase, by kind, in milliseconds; and its wrong answers.
#[derive(Default)]
struct Phase {
    queries: Vec<f64>,
    rents: Vec<f64>,
    wrong: u64,
}

impl Phase {
    fn summary(mut self) -> Value {
        self.queries.sort_by(f64::total_cmp);
        self.rents.sort_by(f64::total_cmp);
        json!({
            "queries": self.queries.len(),
            "queryMs": { "p50": percentile(&self.queries, 0.5), "p99": percentile(&self.queries, 0.99) },
            "rents": self.rents.len(),
            "rentMs": { "p50": percentile(&self.rents, 0.5), "p99": percentile(&self.rents, 0.99) },
            "wrong": self.wrong,
        })
    }
}

fn rent_input(product: Uuid) -> Value {
    json!({ "input": {
        "productId": product, "months": 12, "deliveryAddress": "1 Flood-ro, Seoul",
        "cardNumber": "4242424242424242", "idempotencyKey": Uuid::now_v7().to_string(),
    }})
}

/// A POST through `router`: its status and body.
async fn post(client: &reqwest::Client, router: &str, token: &str, query: &str, variables: Value) -> (u16, Value) {
    match client.post(router).bearer_auth(token).json(&json!({ "query": query, "variables": variables })).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// B's loop for `duration`: the catalog and its rentals back to back, a rent every two
/// seconds.
async fn customer_b(stack: &BenchStack, router: &str, token: &str, product: Uuid, duration: Duration) -> Phase {
    let mut phase = Phase::default();
    let deadline = Instant::now() + duration;
    let mut next_rent = Instant::now();
    while Instant::now() < deadline {
        for query in [CATALOG, MY_RENTALS] {
            let started = Instant::now();
            let (status, body) = post(&stack.client, router, token, query, json!({})).await;
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            let field = if query == CATALOG { "products" } else { "myRentals" };
            if status == 200 && body.get("errors").is_none() && body["data"][field]["edges"].is_array() {
                phase.queries.push(elapsed);
            } else {
                phase.wrong += 1;
            }
        }
        if Instant::now() >= next_rent {
            next_rent += B_RENTS_EVERY;
            let started = Instant::now();
            let (status, body) = post(&stack.client, router, token, RENT, rent_input(product)).await;
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            if status == 200 && body.get("errors").is_none() && body["data"]["rent"]["status"] == "ACCEPTED" {
                phase.rents.push(elapsed);
            } else {
                phase.wrong += 1;
            }
        }
    }
    phase
}

/// What A's flood got: rentals, refusals, anything else.
#[derive(Default)]
struct Flood {
    accepted: AtomicU64,
    refused: AtomicU64,
    unexpected: AtomicU64,
}

/// A's flood: `concurrency` loops of rents until `stop`.
fn customer_a(
    stack: &Arc<BenchStack>,
    router: &str,
    product: Uuid,
    concurrency: usize,
    flood: &Arc<Flood>,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let token = stack.token(&Identity::Customer { customer_id: Uuid::now_v7() });
    (0..concurrency)
        .map(|_| {
            let (stack, router, token, flood, stop) =
                (stack.clone(), router.to_owned(), token.clone(), flood.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let (status, body) = post(&stack.client, &router, &token, RENT, rent_input(product)).await;
                    let code = body["errors"][0]["extensions"]["code"].as_str().unwrap_or_default().to_owned();
                    let counter = match status {
                        200 if body["data"]["rent"]["status"] == "ACCEPTED" => &flood.accepted,
                        429 if code == "RATE_LIMITED" => &flood.refused,
                        _ => &flood.unexpected,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

/// One run: `seconds` of B alone, then `seconds` of B during A's flood from
/// `flood_concurrency` connections; the results as JSON.
pub async fn run(seconds: u64, flood_concurrency: usize) -> anyhow::Result<Value> {
    let stack = Arc::new(BenchStack::start().await?);
    // A router with the limits production has: the stack's own has them raised.
    let router = stack.another_router_with(Vec::new()).await?;
    let url = router.graphql_url();
    let product = stack.rentable_product("Flood model", 19_900, 1_000_000).await?;
    let b = stack.token(&Identity::Customer { customer_id: Uuid::now_v7() });
    let duration = Duration::from_secs(seconds);

    // A second of warm-up, then B alone.
    customer_b(&stack, &url, &b, product, Duration::from_secs(1)).await;
    let alone = customer_b(&stack, &url, &b, product, duration).await;

    let flood = Arc::new(Flood::default());
    let stop = CancellationToken::new();
    let flooders = customer_a(&stack, &url, product, flood_concurrency, &flood, &stop);
    let started = Instant::now();
    let flooded = customer_b(&stack, &url, &b, product, duration).await;
    let flood_seconds = started.elapsed().as_secs_f64();
    stop.cancel();
    futures::future::join_all(flooders).await;

    let (alone, flooded) = (alone.summary(), flooded.summary());
    let ratio = |pointer: &str| {
        let before = alone.pointer(pointer).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let during = flooded.pointer(pointer).and_then(Value::as_f64).unwrap_or(f64::NAN);
        during / before
    };
    let accepted = flood.accepted.load(Ordering::Relaxed);
    let refused = flood.refused.load(Ordering::Relaxed);
    let unexpected = flood.unexpected.load(Ordering::Relaxed);
    let errors = alone["wrong"].as_u64().unwrap_or(0) + flooded["wrong"].as_u64().unwrap_or(0) + unexpected;
    let result = json!({
        "scenario": "flood-isolation",
        "machine": machine(),
        "seconds": seconds,
        "floodConcurrency": flood_concurrency,
        "alone": alone,
        "flooded": flooded,
        "queryP50Ratio": ratio("/queryMs/p50"),
        "queryP99Ratio": ratio("/queryMs/p99"),
        "rentP50Ratio": ratio("/rentMs/p50"),
        "flood": {
            "requestsPerSecond": (accepted + refused + unexpected) as f64 / flood_seconds,
            "accepted": accepted,
            "refused": refused,
            "unexpected": unexpected,
        },
        "errors": errors,
    });
    drop(router);
    match Arc::try_unwrap(stack) {
        Ok(stack) => stack.stop().await?,
        Err(_) => anyhow::bail!("the flood still holds the stack"),
    }
    Ok(result)
}
