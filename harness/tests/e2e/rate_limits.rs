//! Per-client rate limits at the router (`router/src/rate_limits.rs`), on a router of
//! their own with low limits: one customer's flood of mutations and subscription starts
//! is refused with 429, `Retry-After` and `RATE_LIMITED` before any subgraph sees it,
//! while another customer's requests, sent in the middle of the flood, all go through.
//! (That the flood does not slow the other client is a matter of time, so it is
//! measured in `bench/`, not asserted here; what is asserted is why it cannot: the
//! refused requests never reach a subgraph.)

use std::time::Instant;

use futures::StreamExt;
use harness::live_clients::WsClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use stack::RouterProcess;
use uuid::Uuid;

use crate::support::fixtures::{RENT, rent_input, rentable_product};
use crate::support::{TestStack, count, error_codes};

/// 6 a minute (one every 10 seconds), 3 at once.
const MUTATIONS_PER_MINUTE: u64 = 6;
const MUTATION_BURST: usize = 3;
const SUBSCRIPTION_BURST: usize = 2;
const FLOOD: usize = 30;

async fn limited_router(stack: &TestStack) -> RouterProcess {
    stack
        .router_with(vec![
            ("ROUTER_MUTATIONS_PER_MINUTE".into(), MUTATIONS_PER_MINUTE.to_string()),
            ("ROUTER_MUTATION_BURST".into(), MUTATION_BURST.to_string()),
            ("ROUTER_SUBSCRIPTIONS_PER_MINUTE".into(), "6".into()),
            ("ROUTER_SUBSCRIPTION_BURST".into(), SUBSCRIPTION_BURST.to_string()),
        ])
        .await
}

/// A rent through `router`: status, `Retry-After`, body.
async fn rent(
    client: &reqwest::Client,
    router: &RouterProcess,
    token: &str,
    product_id: Uuid,
    key: String,
) -> (StatusCode, Option<String>, Value) {
    let body = json!({ "query": RENT, "variables": rent_input(product_id, "4242424242424242", &key) });
    let response = client.post(router.graphql_url()).bearer_auth(token).json(&body).send().await.expect("sent");
    let status = response.status();
    let retry_after = response.headers().get("retry-after").map(|value| value.to_str().expect("ascii").to_owned());
    (status, retry_after, response.json().await.expect("JSON"))
}

fn accepted(body: &Value) -> bool {
    body["data"]["rent"]["status"] == "ACCEPTED" && body.get("errors").is_none()
}

#[tokio::test]
async fn a_flood_from_one_client_is_refused_before_the_subgraphs_and_another_client_goes_on() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Limited model", 19_900, 100).await;
    let router = limited_router(&stack).await;
    let (flooder, other) = (Uuid::now_v7(), Uuid::now_v7());
    let (flooder_token, other_token) = (stack.customer_token(flooder), stack.customer_token(other));

    let started = Instant::now();
    let flood = futures::stream::iter(0..FLOOD)
        .map(|index| rent(&stack.client, &router, &flooder_token, product_id, format!("flood-{index}")))
        .buffer_unordered(10)
        .collect::<Vec<_>>();
    // The other customer's rents go out while the flood is in flight.
    let others = async {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let mut answers = Vec::new();
        for index in 0..MUTATION_BURST {
            answers.push(rent(&stack.client, &router, &other_token, product_id, format!("other-{index}")).await);
        }
        answers
    };
    let (flood, others) = tokio::join!(flood, others);
    let elapsed = started.elapsed();

    for (status, _, body) in &others {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert!(accepted(body), "the other customer is not limited by the flood: {body}");
    }
    let mut through = 0;
    for (status, retry_after, body) in &flood {
        if accepted(body) {
            through += 1;
            continue;
        }
        assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(error_codes(body), ["RATE_LIMITED"], "{body}");
        assert_eq!(body.get("data"), None, "{body}");
        let seconds: u64 = retry_after.as_deref().expect("Retry-After").parse().expect("whole seconds");
        assert!((1..=60 / MUTATIONS_PER_MINUTE).contains(&seconds), "Retry-After {seconds}");
        assert_eq!(body["errors"][0]["extensions"]["retryAfterSeconds"], seconds, "{body}");
        let message = body["errors"][0]["message"].as_str().expect("message");
        assert!(message.starts_with("too many mutations from this client: at most 6 a minute"), "{message}");
    }
    // The burst, and one more for every 10 seconds the flood took.
    let refilled = (elapsed.as_secs() / (60 / MUTATIONS_PER_MINUTE)) as usize + 1;
    assert!(
        (MUTATION_BURST..=MUTATION_BURST + refilled).contains(&through),
        "{through} of {FLOOD} rents went through in {elapsed:?}"
    );
    // Only the rents that went through reached rental: a refused one made nothing.
    let rentals = |customer: Uuid| format!("SELECT count(*) AS n FROM rentals WHERE customer_id = '{customer}'");
    assert_eq!(count(&stack.subgraphs.rental.database, &rentals(flooder)).await, through as i64);
    assert_eq!(count(&stack.subgraphs.rental.database, &rentals(other)).await, MUTATION_BURST as i64);

    // Queries are not limited: the flooder still reads its rentals.
    let query = json!({ "query": "{ myRentals(first: 50) { edges { node { id } } } }" });
    let response = stack.client.post(router.graphql_url()).bearer_auth(&flooder_token).json(&query).send().await;
    let body: Value = response.expect("sent").json().await.expect("JSON");
    assert_eq!(body.get("errors"), None, "{body}");
    assert_eq!(body["data"]["myRentals"]["edges"].as_array().map(Vec::len), Some(through));

    router.stop().await.expect("router stops");
    stack.stop().await;
}

const TRACK: &str = "subscription($id: ID!) { deliveryStatusChanged(rentalId: $id) { status } }";

#[tokio::test]
async fn subscription_starts_past_the_limit_are_refused_over_websocket() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Watched model", 19_900, 10).await;
    let router = limited_router(&stack).await;
    let watcher_token = stack.customer_token(Uuid::now_v7());
    let (_, _, rented) = rent(&stack.client, &router, &watcher_token, product_id, "watched".into()).await;
    assert!(accepted(&rented), "{rented}");
    let rental_id = rented["data"]["rent"]["id"].as_str().expect("id").to_owned();

    let mut socket = WsClient::connect(&router.websocket_url(), Some(&watcher_token)).await;
    for index in 0..SUBSCRIPTION_BURST {
        socket.subscribe(&format!("watch-{index}"), TRACK, json!({ "id": rental_id })).await;
        let first = socket.next_message().await.expect("the current status");
        assert_eq!(first["id"], format!("watch-{index}"), "{first}");
        assert_eq!(first["payload"]["data"]["deliveryStatusChanged"]["status"], "REQUESTED", "{first}");
    }
    socket.subscribe("one-too-many", TRACK, json!({ "id": rental_id })).await;
    let refused = socket.next_message().await.expect("an answer");
    assert_eq!(refused["id"], "one-too-many", "{refused}");
    assert_eq!(refused["type"], "next", "{refused}");
    assert_eq!(error_codes(&refused["payload"]), ["RATE_LIMITED"], "{refused}");
    let message = refused["payload"]["errors"][0]["message"].as_str().expect("message");
    assert!(message.starts_with("too many subscription starts from this client"), "{message}");
    let complete = socket.next_message().await.expect("complete");
    assert_eq!(complete, json!({ "id": "one-too-many", "type": "complete" }));
    socket.close().await;

    // Another client (an operator, watching the same delivery) subscribes as usual.
    let mut operator = WsClient::connect(&router.websocket_url(), Some(&stack.operator_token())).await;
    operator.subscribe("watch", TRACK, json!({ "id": rental_id })).await;
    let first = operator.next_message().await.expect("the current status");
    assert_eq!(first["payload"]["data"]["deliveryStatusChanged"]["status"], "REQUESTED", "{first}");
    operator.close().await;

    router.stop().await.expect("router stops");
    stack.stop().await;
}
