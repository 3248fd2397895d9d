//! Reading across subgraphs through the real router, as customers and operators do.

use crate::support::fixtures::{create_product, insert_rental};
use crate::support::{TestStack, error_codes};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

const RENTAL_WITH_EVERYTHING: &str = r#"
query($id: ID!) {
  rental(id: $id) {
    id customerId months monthlyFee deliveryAddress status createdAt
    product { id name monthlyFee stock }
    payment { id amount cardLast4 status paidAt refundedAt rental { id } }
    delivery { id status address requestedAt shippedAt product { name } rental { months } }
  }
}"#;

#[tokio::test]
async fn a_rental_joins_product_payment_and_delivery_through_the_router() {
    let stack = TestStack::start().await;
    let product_id = create_product(&stack, "AquaPure Test 1", 19_900, 7).await;
    let customer = Uuid::now_v7();
    let rental = insert_rental(&stack, customer, product_id, 19_900).await;
    let variables = json!({ "id": rental.rental_id });

    let expected = json!({
        "rental": {
            "id": rental.rental_id,
            "customerId": customer,
            "months": 12,
            "monthlyFee": 19_900,
            "deliveryAddress": "12 Teheran-ro, Gangnam-gu, Seoul",
            "status": "ACCEPTED",
            "createdAt": rental.created_at.to_rfc3339(),
            "product": { "id": product_id, "name": "AquaPure Test 1", "monthlyFee": 19_900, "stock": 7 },
            "payment": {
                "id": rental.payment_id,
                "amount": 19_900,
                "cardLast4": "4242",
                "status": "PAID",
                "paidAt": rental.created_at.to_rfc3339(),
                "refundedAt": null,
                "rental": { "id": rental.rental_id },
            },
            "delivery": {
                "id": rental.delivery_id,
                "status": "REQUESTED",
                "address": "12 Teheran-ro, Gangnam-gu, Seoul",
                "requestedAt": rental.created_at.to_rfc3339(),
                "shippedAt": null,
                "product": { "name": "AquaPure Test 1" },
                "rental": { "months": 12 },
            },
        }
    });

    // The owner sees every field, joined from all four subgraphs.
    let (status, response) =
        stack.graphql(Some(&stack.customer_token(customer)), RENTAL_WITH_EVERYTHING, variables.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response.get("errors"), None, "{response}");
    assert_eq!(response["data"], expected);

    // An operator sees the same rental.
    let (_, response) = stack.graphql(Some(&stack.operator_token()), RENTAL_WITH_EVERYTHING, variables.clone()).await;
    assert_eq!(response.get("errors"), None, "{response}");
    assert_eq!(response["data"], expected);

    // Another customer learns nothing: the rental reads as missing.
    let stranger = stack.customer_token(Uuid::now_v7());
    let (_, response) = stack.graphql(Some(&stranger), RENTAL_WITH_EVERYTHING, variables.clone()).await;
    assert_eq!(response["data"]["rental"], json!(null), "{response}");
    assert_eq!(error_codes(&response), ["NOT_FOUND"]);

    // Without a token the router answers with an authentication error and no data.
    let (status, response) = stack.graphql(None, RENTAL_WITH_EVERYTHING, variables).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{response}");
    assert_eq!(response.get("data"), None, "{response}");
    assert_eq!(error_codes(&response), ["UNAUTHENTICATED"], "{response}");
    stack.stop().await;
}

#[tokio::test]
async fn my_rentals_lists_only_the_callers_rentals_newest_first_page_by_page() {
    let stack = TestStack::start().await;
    let product_id = create_product(&stack, "AquaPure Test 2", 24_900, 3).await;
    let customer = Uuid::now_v7();
    let mut mine = Vec::new();
    for _ in 0..5 {
        mine.push(insert_rental(&stack, customer, product_id, 24_900).await.rental_id);
    }
    insert_rental(&stack, Uuid::now_v7(), product_id, 24_900).await;
    mine.reverse();

    let query = r#"query($after: String) {
        myRentals(first: 2, after: $after) {
            edges { cursor node { id product { name } payment { status } delivery { status } } }
            pageInfo { hasNextPage endCursor }
        }
    }"#;
    let token = stack.customer_token(customer);
    let mut seen = Vec::new();
    let mut after = serde_json::Value::Null;
    for _ in 0..10 {
        let (_, response) = stack.graphql(Some(&token), query, json!({ "after": after })).await;
        assert_eq!(response.get("errors"), None, "{response}");
        let page = &response["data"]["myRentals"];
        for edge in page["edges"].as_array().expect("edges") {
            assert_eq!(edge["node"]["product"]["name"], "AquaPure Test 2");
            assert_eq!(edge["node"]["payment"]["status"], "PAID");
            assert_eq!(edge["node"]["delivery"]["status"], "REQUESTED");
            seen.push(edge["node"]["id"].as_str().expect("id").parse::<Uuid>().expect("uuid"));
        }
        if page["pageInfo"]["hasNextPage"] == json!(false) {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, mine, "every own rental once, newest first, and nobody else's");
    stack.stop().await;
}

#[tokio::test]
async fn the_catalog_is_readable_and_only_operators_change_it() {
    let stack = TestStack::start().await;
    let product_id = create_product(&stack, "AquaPure Test 3", 29_900, 2).await;
    let customer = stack.customer_token(Uuid::now_v7());

    let (_, response) =
        stack.graphql(Some(&customer), "{ products { edges { node { id name monthlyFee stock } } } }", json!({})).await;
    assert_eq!(
        response["data"]["products"]["edges"],
        json!([{ "node": { "id": product_id, "name": "AquaPure Test 3", "monthlyFee": 29_900, "stock": 2 } }])
    );

    let restock =
        "mutation($id: ID!, $quantity: Int!) { restockProduct(productId: $id, quantity: $quantity) { stock } }";
    let (_, response) = stack.graphql(Some(&customer), restock, json!({ "id": product_id, "quantity": 5 })).await;
    assert_eq!(error_codes(&response), ["FORBIDDEN"]);

    let (_, response) =
        stack.graphql(Some(&stack.operator_token()), restock, json!({ "id": product_id, "quantity": 5 })).await;
    assert_eq!(response["data"]["restockProduct"]["stock"], 7, "{response}");

    let (_, response) = stack
        .graphql(Some(&customer), "query($id: ID!) { product(id: $id) { stock } }", json!({ "id": product_id }))
        .await;
    assert_eq!(response["data"]["product"]["stock"], 7);
    stack.stop().await;
}
