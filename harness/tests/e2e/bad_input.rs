//! Bad input gets a clear error with a code, and changes nothing.

use std::time::Duration;

use crate::support::fixtures::create_product;
use crate::support::{TestStack, error_codes, first_message, post_graphql};
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use subgraph_kit::{Identity, TokenIssuer};
use uuid::Uuid;

const CATALOG: &str = "{ products(first: 100) { edges { node { id name monthlyFee stock } } } }";

async fn catalog(stack: &TestStack) -> Value {
    let (_, response) = stack.graphql(Some(&stack.operator_token()), CATALOG, json!({})).await;
    assert_eq!(response.get("errors"), None, "{response}");
    response["data"].clone()
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_named_in_the_error() {
    let stack = TestStack::start().await;
    let customer = stack.customer_token(Uuid::now_v7());
    let unknown = Uuid::now_v7().to_string();
    let cases = [
        ("query($id: ID!) { product(id: $id) { name } }", unknown.as_str(), "NOT_FOUND", "no product"),
        ("query($id: ID!) { rental(id: $id) { status } }", unknown.as_str(), "NOT_FOUND", "no rental"),
        ("query($id: ID!) { product(id: $id) { name } }", "not-an-id", "BAD_USER_INPUT", "not a valid product id"),
        ("query($id: ID!) { rental(id: $id) { status } }", "1234", "BAD_USER_INPUT", "not a valid rental id"),
        (
            "query($id: ID!) { payment(id: $id) { status } }",
            "x'; DROP TABLE payments; --",
            "BAD_USER_INPUT",
            "not a valid payment id",
        ),
    ];
    for (query, id, code, words) in cases {
        let (_, response) = stack.graphql(Some(&customer), query, json!({ "id": id })).await;
        assert_eq!(error_codes(&response), [code], "{query} with {id}: {response}");
        assert!(first_message(&response).contains(words), "{response}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_request_errors() {
    let stack = TestStack::start().await;
    let token = stack.operator_token();

    // Not JSON at all.
    let response = stack
        .client
        .post(stack.router_url())
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"query\": \"{ products { edges { node { id } } } }\"")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(error_codes(&body), ["BAD_REQUEST"], "{body}");

    // A variable of the wrong type.
    let (_, response) = stack
        .graphql(
            Some(&token),
            "query($first: Int) { products(first: $first) { edges { node { id } } } }",
            json!({ "first": "ten" }),
        )
        .await;
    assert_eq!(error_codes(&response), ["BAD_USER_INPUT"], "{response}");

    // A field that does not exist.
    let (_, response) = stack.graphql(Some(&token), "{ products { edges { node { price } } } }", json!({})).await;
    assert!(first_message(&response).contains("price"), "{response}");

    // A query nested deeper than any client needs.
    let deep = "{ deliveries { edges { node { rental { delivery { rental { delivery { rental { delivery { rental { id } } } } } } } } } } }";
    let (_, response) = stack.graphql(Some(&token), deep, json!({})).await;
    assert_eq!(error_codes(&response), ["MAX_DEPTH_EXCEEDED"], "{response}");

    // A page size out of range.
    let (_, response) =
        stack.graphql(Some(&token), "{ products(first: 1000) { edges { node { id } } } }", json!({})).await;
    assert_eq!(error_codes(&response), ["BAD_USER_INPUT"], "{response}");
    assert!(first_message(&response).contains("between 1 and 100"), "{response}");
    stack.stop().await;
}

#[tokio::test]
async fn invalid_catalog_changes_are_refused_and_change_nothing() {
    let stack = TestStack::start().await;
    let product_id = create_product(&stack, "Steady model", 30_000, 4).await;
    let before = catalog(&stack).await;
    let operator = stack.operator_token();
    let customer = stack.customer_token(Uuid::now_v7());

    let create = "mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }";
    let long_name = "x".repeat(101);
    let long_description = "y".repeat(2001);
    let bad_products = [
        (json!({ "name": "", "monthlyFee": 1000 }), "BAD_USER_INPUT", "name"),
        (json!({ "name": "   ", "monthlyFee": 1000 }), "BAD_USER_INPUT", "name"),
        (json!({ "name": long_name, "monthlyFee": 1000 }), "BAD_USER_INPUT", "name"),
        (json!({ "name": "Ok", "description": long_description, "monthlyFee": 1000 }), "BAD_USER_INPUT", "description"),
        (json!({ "name": "Ok", "monthlyFee": 0 }), "BAD_USER_INPUT", "monthlyFee"),
        (json!({ "name": "Ok", "monthlyFee": -5 }), "BAD_USER_INPUT", "monthlyFee"),
        (json!({ "name": "Ok", "monthlyFee": 1000, "initialStock": -1 }), "BAD_USER_INPUT", "initialStock"),
        (json!({ "name": "steady MODEL", "monthlyFee": 1000 }), "CONFLICT", "already exists"),
    ];
    for (input, code, words) in bad_products {
        let (_, response) = stack.graphql(Some(&operator), create, json!({ "input": input })).await;
        assert_eq!(error_codes(&response), [code], "{input}: {response}");
        assert!(first_message(&response).contains(words), "{input}: {response}");
    }
    let (_, response) =
        stack.graphql(Some(&customer), create, json!({ "input": { "name": "Mine", "monthlyFee": 1 } })).await;
    assert_eq!(error_codes(&response), ["FORBIDDEN"], "{response}");

    let restock =
        "mutation($id: ID!, $quantity: Int!) { restockProduct(productId: $id, quantity: $quantity) { stock } }";
    let bad_restocks = [
        (json!({ "id": product_id, "quantity": 0 }), "BAD_USER_INPUT"),
        (json!({ "id": product_id, "quantity": -3 }), "BAD_USER_INPUT"),
        (json!({ "id": product_id, "quantity": 10_001 }), "BAD_USER_INPUT"),
        (json!({ "id": "nope", "quantity": 1 }), "BAD_USER_INPUT"),
        (json!({ "id": Uuid::now_v7(), "quantity": 1 }), "NOT_FOUND"),
    ];
    for (variables, code) in bad_restocks {
        let (_, response) = stack.graphql(Some(&operator), restock, variables.clone()).await;
        assert_eq!(error_codes(&response), [code], "{variables}: {response}");
    }
    let (_, response) = stack.graphql(Some(&customer), restock, json!({ "id": product_id, "quantity": 1 })).await;
    assert_eq!(error_codes(&response), ["FORBIDDEN"], "{response}");

    assert_eq!(catalog(&stack).await, before, "nothing changed");
    stack.stop().await;
}

#[tokio::test]
async fn missing_expired_and_forged_tokens_are_refused_and_change_nothing() {
    let stack = TestStack::start().await;
    let before = catalog(&stack).await;
    let operator = Identity::Operator { subject: "someone".into() };
    let now = Utc::now().timestamp();
    let expired = stack.identities.users.clone().issue_with_expiry(&operator, now - 7200, now - 3600);
    let forged = TokenIssuer::generate(stack::identities::TEST_ISSUER, identity::DEFAULT_AUDIENCE)
        .issue(&operator, Duration::from_secs(600));
    let create = json!({
        "query": "mutation { createProduct(input: { name: \"Sneaky\", monthlyFee: 1 }) { id } }",
    });

    let cases: [(Option<&str>, &str); 4] = [
        (None, "Authorization"),
        (Some(&expired), "expired"),
        (Some(&forged), "not valid"),
        (Some("garbage"), "not valid"),
    ];
    for (token, words) in cases {
        let (status, response) = post_graphql(&stack.client, &stack.router_url(), token, &create).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{response}");
        assert_eq!(error_codes(&response), ["UNAUTHENTICATED"], "{response}");
        assert!(first_message(&response).contains(words), "{words}: {response}");
        assert_eq!(response.get("data"), None);
    }
    assert_eq!(catalog(&stack).await, before, "nothing changed");
    stack.stop().await;
}

#[tokio::test]
async fn a_subgraph_reached_directly_without_a_valid_token_answers_only_unauthenticated() {
    let stack = TestStack::start().await;
    let forged = TokenIssuer::generate(stack::identities::TEST_ISSUER, identity::DEFAULT_AUDIENCE)
        .issue(&Identity::Operator { subject: "x".into() }, Duration::from_secs(600));
    let body = json!({ "query": "{ _service { sdl } }" });
    for service in stack.subgraphs.all() {
        for token in [None, Some(forged.as_str())] {
            let (status, response) = post_graphql(&stack.client, &service.url(), token, &body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{}: {response}", service.name);
            assert_eq!(error_codes(&response), ["UNAUTHENTICATED"], "{}: {response}", service.name);
            assert_eq!(response.get("data"), Some(&Value::Null), "{}: {response}", service.name);
        }
    }
    stack.stop().await;
}
