//! Entity lookups are batched: however many entities a query fans out to, each
//! subgraph answers with one SQL statement.

use crate::support::fixtures::{create_product, insert_rental};
use crate::support::{TestStack, post_graphql};
use serde_json::json;
use uuid::Uuid;

const FAN_OUT: usize = 100;

#[tokio::test]
async fn a_query_over_100_rentals_costs_one_statement_per_subgraph() {
    let stack = TestStack::start().await;
    let customer = Uuid::now_v7();
    for index in 0..FAN_OUT {
        let product_id = create_product(&stack, &format!("Batch model {index}"), 10_000 + index as i32, 1).await;
        insert_rental(&stack, customer, product_id, 10_000 + index as i32).await;
    }
    let before: Vec<u64> = stack.subgraphs.all().iter().map(|service| service.database.statements_executed()).collect();

    let query = "{ myRentals(first: 100) { edges { node { product { name stock } payment { amount } delivery { status } } } } }";
    let (_, response) = stack.graphql(Some(&stack.customer_token(customer)), query, json!({})).await;
    assert_eq!(response.get("errors"), None, "{response}");
    let edges = response["data"]["myRentals"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), FAN_OUT);
    for edge in edges {
        let fee = edge["node"]["payment"]["amount"].as_i64().expect("amount");
        assert_eq!(edge["node"]["product"]["name"], format!("Batch model {}", fee - 10_000));
        assert_eq!(edge["node"]["delivery"]["status"], "REQUESTED");
    }

    for (service, before) in stack.subgraphs.all().iter().zip(before) {
        let statements = service.database.statements_executed() - before;
        assert_eq!(statements, 1, "{} sent {statements} SQL statements for {FAN_OUT} entities", service.name);
    }
    stack.stop().await;
}

#[tokio::test]
async fn an_entities_call_with_100_representations_is_one_statement() {
    let stack = TestStack::start().await;
    let mut representations = Vec::new();
    for index in 0..FAN_OUT {
        let id = create_product(&stack, &format!("Entity model {index}"), 20_000, index as i32).await;
        representations.push(json!({ "__typename": "Product", "id": id }));
    }
    let inventory = &stack.subgraphs.inventory;
    let before = inventory.database.statements_executed();

    let body = json!({
        "query": "query($r: [_Any!]!) { _entities(representations: $r) { ... on Product { name stock } } }",
        "variables": { "r": representations },
    });
    let (_, response) = post_graphql(&stack.client, &inventory.url(), Some(&stack.operator_token()), &body).await;
    assert_eq!(response.get("errors"), None, "{response}");
    let entities = response["data"]["_entities"].as_array().expect("entities");
    for (index, entity) in entities.iter().enumerate() {
        assert_eq!(entity, &json!({ "name": format!("Entity model {index}"), "stock": index }));
    }
    assert_eq!(inventory.database.statements_executed() - before, 1);
    stack.stop().await;
}
