//! Live delivery tracking through the router, over WebSocket and SSE.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::fixtures::{operator_step, rent, rentable_product};
use crate::support::{TestStack, eventually};
use harness::live_clients::{SseClient, WsClient};
use serde_json::{Value, json};
use uuid::Uuid;

const TRACK: &str =
    "subscription($id: ID!) { deliveryStatusChanged(rentalId: $id) { status rental { id product { name } } } }";

fn status_of(payload: &Value) -> &str {
    payload["data"]["deliveryStatusChanged"]["status"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn websocket_and_sse_subscribers_follow_the_delivery_through_the_router() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Live model", 19_900, 3).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let rental_id = rent(&stack, &customer, product_id, "live").await;

    let mut ws = WsClient::connect(&stack.router.as_ref().expect("router").websocket_url(), Some(&customer)).await;
    ws.subscribe("track", TRACK, json!({ "id": rental_id })).await;
    let mut sse =
        SseClient::subscribe(&stack.client, &stack.router_url(), &customer, TRACK, json!({ "id": rental_id })).await;

    let first = ws.next_message().await.expect("current status over WebSocket");
    assert_eq!(first["type"], "next", "{first}");
    assert_eq!(status_of(&first["payload"]), "REQUESTED", "{first}");
    assert_eq!(first["payload"]["data"]["deliveryStatusChanged"]["rental"]["product"]["name"], "Live model");
    let first = sse.next().await.expect("current status over SSE");
    assert_eq!(status_of(&first), "REQUESTED", "{first}");

    operator_step(&stack, "startDelivery", &rental_id).await;
    let shipping = ws.next_message().await.expect("SHIPPING");
    assert_eq!(status_of(&shipping["payload"]), "SHIPPING", "{shipping}");
    assert_eq!(shipping["payload"]["data"]["deliveryStatusChanged"]["rental"]["product"]["name"], "Live model");
    assert_eq!(status_of(&sse.next().await.expect("SHIPPING over SSE")), "SHIPPING");

    operator_step(&stack, "completeDelivery", &rental_id).await;
    let delivered = ws.next_message().await.expect("DELIVERED");
    assert_eq!(status_of(&delivered["payload"]), "DELIVERED", "{delivered}");
    assert_eq!(status_of(&sse.next().await.expect("DELIVERED over SSE")), "DELIVERED");

    let complete = ws.next_message().await.expect("complete");
    assert_eq!(complete, json!({ "id": "track", "type": "complete" }));
    assert_eq!(sse.next().await, None, "the SSE stream completes");
    ws.close().await;

    let gauge = stack.subgraphs.delivery.open_streams.clone();
    assert!(eventually(Duration::from_secs(10), || async { gauge.load(Ordering::Relaxed) == 0 }).await);
    stack.stop().await;
}

#[tokio::test]
async fn only_the_owner_or_an_operator_may_subscribe() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Private model", 19_900, 3).await;
    let owner = Uuid::now_v7();
    let rental_id = rent(&stack, &stack.customer_token(owner), product_id, "private").await;
    // Wait until the delivery exists, so the refusal is the owner check, not a wait.
    operator_step(&stack, "startDelivery", &rental_id).await;
    let url = stack.router.as_ref().expect("router").websocket_url();

    let mut stranger = WsClient::connect(&url, Some(&stack.customer_token(Uuid::now_v7()))).await;
    stranger.subscribe("peek", TRACK, json!({ "id": rental_id })).await;
    let refused = stranger.next_message().await.expect("an answer");
    // The router relays the subgraph's refusal as a result with no data and the error.
    assert_eq!(refused["payload"]["data"], json!(null), "no delivery data for a stranger: {refused}");
    assert_eq!(refused["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND", "{refused}");
    let after = stranger.next_message().await;
    assert!(after.as_ref().is_none_or(|message| message["type"] == "complete"), "nothing more: {after:?}");
    stranger.close().await;

    let mut anonymous = WsClient::connect(&url, None).await;
    anonymous.subscribe("peek", TRACK, json!({ "id": rental_id })).await;
    let refused = anonymous.next_message().await.expect("an answer");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "no token, no events: {refused}"
    );
    assert_eq!(refused["payload"]["data"], json!(null), "{refused}");

    let mut operator = WsClient::connect(&url, Some(&stack.operator_token())).await;
    operator.subscribe("watch", TRACK, json!({ "id": rental_id })).await;
    let current = operator.next_message().await.expect("current status");
    assert_eq!(status_of(&current["payload"]), "SHIPPING", "{current}");
    operator.close().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_change_made_through_one_instance_reaches_a_subscriber_of_another() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Replica model", 19_900, 3).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let rental_id = rent(&stack, &customer, product_id, "replica").await;
    let (second_delivery, second_router) = stack.second_delivery_and_router().await;

    // Subscribed through router 1 (delivery instance 1) ...
    let mut ws = WsClient::connect(&stack.router.as_ref().expect("router").websocket_url(), Some(&customer)).await;
    ws.subscribe("track", TRACK, json!({ "id": rental_id })).await;
    let first = ws.next_message().await.expect("current status");
    assert_eq!(status_of(&first["payload"]), "REQUESTED", "{first}");

    // ... shipped through router 2 (delivery instance 2).
    let operator = stack.operator_token();
    let query = "query($id: ID!) { rental(id: $id) { delivery { id } } }";
    let (_, found) = crate::support::post_graphql(
        &stack.client,
        &second_router.graphql_url(),
        Some(&operator),
        &json!({ "query": query, "variables": { "id": rental_id } }),
    )
    .await;
    let delivery = found["data"]["rental"]["delivery"]["id"].clone();
    let (_, started) = crate::support::post_graphql(
        &stack.client,
        &second_router.graphql_url(),
        Some(&operator),
        &json!({ "query": "mutation($id: ID!) { startDelivery(id: $id) { status } }", "variables": { "id": delivery } }),
    )
    .await;
    assert_eq!(started["data"]["startDelivery"]["status"], "SHIPPING", "{started}");

    let shipping = ws.next_message().await.expect("the change made elsewhere");
    assert_eq!(status_of(&shipping["payload"]), "SHIPPING", "{shipping}");
    ws.close().await;
    second_router.stop().await.expect("router stops");
    second_delivery.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_client_that_goes_away_frees_its_subscription() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Dropped model", 19_900, 3).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let rental_id = rent(&stack, &customer, product_id, "dropped").await;
    let gauge = stack.subgraphs.delivery.open_streams.clone();

    let mut ws = WsClient::connect(&stack.router.as_ref().expect("router").websocket_url(), Some(&customer)).await;
    ws.subscribe("track", TRACK, json!({ "id": rental_id })).await;
    assert_eq!(status_of(&ws.next_message().await.expect("current")["payload"]), "REQUESTED");
    assert_eq!(gauge.load(Ordering::Relaxed), 1, "one open stream in delivery");

    // The client vanishes without unsubscribing.
    drop(ws);
    let freed = eventually(Duration::from_secs(30), || async { gauge.load(Ordering::Relaxed) == 0 }).await;
    assert!(freed, "the subscription was cleaned up: {} still open", gauge.load(Ordering::Relaxed));
    stack.stop().await;
}

#[tokio::test]
async fn two_hundred_subscribers_each_get_exactly_their_own_events() {
    const SUBSCRIBERS: usize = 200;
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Crowd model", 19_900, 1_000).await;
    let url = stack.router.as_ref().expect("router").websocket_url();

    // Rent in small concurrent batches, one customer each.
    let mut rentals = Vec::new();
    for batch in 0..SUBSCRIBERS / 20 {
        let made = futures::future::join_all((0..20).map(|index| {
            let stack = &stack;
            async move {
                let token = stack.customer_token(Uuid::now_v7());
                let rental_id = rent(stack, &token, product_id, &format!("crowd-{batch}-{index}")).await;
                (token, rental_id)
            }
        }))
        .await;
        rentals.extend(made);
    }

    // Each subscriber reads its socket from the moment it subscribes until its SHIPPING,
    // as a real client does: the router pings every socket every 5 s and closes one
    // that has not answered (pong) for 10 s, and a socket answers only while it is
    // read. Connecting 200 sockets one after the other and reading them afterwards left
    // the first ones unread for longer than that on a slow machine, and the router
    // closed them (a subscriber "lost" its SHIPPING).
    let (ready, mut subscribed) = tokio::sync::mpsc::channel(SUBSCRIBERS);
    let subscribers: Vec<_> = rentals
        .iter()
        .map(|(token, rental_id)| {
            let (url, token, rental_id, ready) = (url.clone(), token.clone(), rental_id.clone(), ready.clone());
            tokio::spawn(async move {
                let mut ws = WsClient::connect(&url, Some(&token)).await;
                ws.subscribe("mine", TRACK, json!({ "id": rental_id })).await;
                let first = ws.next_message().await;
                let _ = ready.send(()).await;
                let next = ws.next_message().await;
                ws.close().await;
                (first, next)
            })
        })
        .collect();
    drop(ready);
    for _ in 0..SUBSCRIBERS {
        subscribed.recv().await.expect("every subscriber subscribed");
    }
    for batch in rentals.chunks(20) {
        futures::future::join_all(batch.iter().map(|(_, rental_id)| operator_step(&stack, "startDelivery", rental_id)))
            .await;
    }
    for (subscriber, (_, rental_id)) in subscribers.into_iter().zip(&rentals) {
        let (first, next) = subscriber.await.expect("the subscriber ran");
        let first = first.unwrap_or_else(|| panic!("the current status of {rental_id}"));
        assert_eq!(status_of(&first["payload"]), "REQUESTED", "{first}");
        assert_eq!(first["payload"]["data"]["deliveryStatusChanged"]["rental"]["id"], json!(rental_id));
        let next = next.unwrap_or_else(|| panic!("SHIPPING for {rental_id}"));
        assert_eq!(status_of(&next["payload"]), "SHIPPING", "{next}");
        assert_eq!(next["payload"]["data"]["deliveryStatusChanged"]["rental"]["id"], json!(rental_id), "only its own");
    }
    let gauge = stack.subgraphs.delivery.open_streams.clone();
    assert!(eventually(Duration::from_secs(30), || async { gauge.load(Ordering::Relaxed) == 0 }).await);
    stack.stop().await;
}
