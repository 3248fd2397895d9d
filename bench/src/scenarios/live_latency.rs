//! Status change to subscriber latency through the router.

use std::time::Instant;

use serde_json::{Value, json};
use subgraph_kit::Identity;
use uuid::Uuid;

use crate::websocket::{next_status, subscribe};
use crate::{BenchStack, machine, percentile};

/// Subscribes to `rentals` rentals, then starts and completes each delivery, timing each
/// change from the mutation's start to its arrival at the subscriber.
pub async fn run(rentals: usize) -> anyhow::Result<Value> {
    let stack = BenchStack::start().await?;
    let product_id = stack.rentable_product("Latency model", 19_900, 1_000_000).await?;
    let operator = stack.token(&Identity::Operator { subject: "bench".into() });
    let url = stack.router.websocket_url();

    let mut tracked = Vec::new();
    for _ in 0..rentals {
        let customer = stack.token(&Identity::Customer { customer_id: Uuid::now_v7() });
        let rental_id = stack.rent(&customer, product_id).await?.to_string();
        let mut socket = subscribe(&url, &customer, &rental_id).await?;
        anyhow::ensure!(next_status(&mut socket).await? == "REQUESTED", "first event is the current status");
        let found = stack
            .graphql(&operator, "query($id: ID!) { rental(id: $id) { delivery { id } } }", json!({ "id": rental_id }))
            .await?;
        let delivery = found["data"]["rental"]["delivery"]["id"].clone();
        tracked.push((socket, delivery));
    }

    let mut latencies = Vec::new();
    for (step, expected) in [("startDelivery", "SHIPPING"), ("completeDelivery", "DELIVERED")] {
        for (socket, delivery) in &mut tracked {
            let started = Instant::now();
            let mutation = format!("mutation($id: ID!) {{ {step}(id: $id) {{ status }} }}");
            stack.graphql(&operator, &mutation, json!({ "id": delivery })).await?;
            let status = next_status(socket).await?;
            anyhow::ensure!(status == expected, "expected {expected}, got {status:?}");
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let result = json!({
        "scenario": "live-latency",
        "machine": machine(),
        "changes": latencies.len(),
        "latencyMs": {
            "p50": percentile(&latencies, 0.5),
            "p99": percentile(&latencies, 0.99),
            "max": latencies.last(),
        },
        "note": "from the start of the operator's mutation through the router to the change at the subscriber",
    });
    drop(tracked);
    stack.stop().await?;
    Ok(result)
}
