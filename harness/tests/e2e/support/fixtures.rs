//! Known rows written straight into each service's database, for tests that read them
//! back through the router.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;
use uuid::Uuid;

use super::TestStack;

/// A rental with its payment and its delivery, as the services would have written them.
#[derive(Debug, Clone)]
pub struct RentalFixture {
    pub rental_id: Uuid,
    pub payment_id: Uuid,
    pub delivery_id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// Creates a product through the router, as an operator would.
pub async fn create_product(stack: &TestStack, name: &str, monthly_fee: i32, stock: i32) -> Uuid {
    let (_, response) = stack
        .graphql(
            Some(&stack.operator_token()),
            "mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }",
            json!({ "input": { "name": name, "monthlyFee": monthly_fee, "initialStock": stock } }),
        )
        .await;
    let id = response["data"]["createProduct"]["id"].as_str().unwrap_or_else(|| panic!("created: {response}"));
    id.parse().expect("product ids are UUIDs")
}

/// Writes a rental (ACCEPTED), its payment (PAID, card ending 4242) and its delivery
/// (REQUESTED) for `customer_id`.
pub async fn insert_rental(stack: &TestStack, customer_id: Uuid, product_id: Uuid, monthly_fee: i32) -> RentalFixture {
    // PostgreSQL keeps microseconds; round so the values read back compare equal.
    let now = Utc::now().trunc_subsecs(6);
    let fixture = RentalFixture {
        rental_id: Uuid::now_v7(),
        payment_id: Uuid::now_v7(),
        delivery_id: Uuid::now_v7(),
        created_at: now,
    };
    let address = "12 Teheran-ro, Gangnam-gu, Seoul";

    let rental = rental::storage::rentals::RentalRow::accepted(
        fixture.rental_id,
        customer_id,
        product_id,
        12,
        monthly_fee,
        address.into(),
        fixture.payment_id,
        now,
    );
    // Its history row is projected as the transaction commits.
    stack
        .subgraphs
        .rental
        .database
        .transaction(async |tx: &mut subgraph_kit::Tx<'_>| {
            Ok::<_, subgraph_kit::ApiError>(rental::storage::rentals::insert(tx, &rental).await?)
        })
        .await
        .expect("rental row");

    let mut connection = stack.subgraphs.payment.database.connection().await.expect("payment db");
    let payment = payment::storage::payments::PaymentRow {
        id: fixture.payment_id,
        rental_id: fixture.rental_id,
        customer_id,
        amount: monthly_fee,
        card_last4: "4242".into(),
        status: payment::domain::PaymentStatus::Paid,
        paid_at: now,
        refunded_at: None,
    };
    payment::storage::payments::insert(&mut connection, &payment).await.expect("payment row");

    let mut connection = stack.subgraphs.delivery.database.connection().await.expect("delivery db");
    let delivery = delivery::storage::deliveries::DeliveryRow {
        id: fixture.delivery_id,
        rental_id: fixture.rental_id,
        customer_id,
        product_id,
        address: address.into(),
        status: contracts::DeliveryStatus::Requested,
        requested_at: now,
        shipped_at: None,
        delivered_at: None,
        cancelled_at: None,
        updated_at: now,
        unit: delivery::domain::Unit::NotAsked,
    };
    delivery::storage::deliveries::insert(&mut connection, &delivery).await.expect("delivery row");
    fixture
}

/// Creates a product and waits until rental has learned of it (from inventory's
/// `product.created` event), so it can be rented.
pub async fn rentable_product(stack: &TestStack, name: &str, monthly_fee: i32, stock: i32) -> Uuid {
    let product_id = create_product(stack, name, monthly_fee, stock).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut connection = stack.subgraphs.rental.database.connection().await.expect("rental db");
        if rental::storage::catalog::entry(&mut connection, product_id).await.expect("catalog").is_some() {
            return product_id;
        }
        assert!(std::time::Instant::now() < deadline, "rental never learned of product {product_id}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub const RENT: &str = r#"
mutation($input: RentInput!) {
  rent(input: $input) {
    id status months monthlyFee deliveryAddress customerId
    product { id name }
    payment { amount cardLast4 status }
  }
}"#;

pub fn rent_input(product_id: Uuid, card: &str, key: &str) -> serde_json::Value {
    json!({ "input": {
        "productId": product_id,
        "months": 12,
        "deliveryAddress": "12 Teheran-ro, Gangnam-gu, Seoul",
        "cardNumber": card,
        "idempotencyKey": key,
    }})
}

/// Rents `product_id` with the approved test card; returns the rental id.
pub async fn rent(stack: &TestStack, token: &str, product_id: Uuid, key: &str) -> String {
    let query = "mutation($input: RentInput!) { rent(input: $input) { id status } }";
    let (_, response) = stack.graphql(Some(token), query, rent_input(product_id, "4242424242424242", key)).await;
    assert_eq!(response["data"]["rent"]["status"], "ACCEPTED", "{response}");
    response["data"]["rent"]["id"].as_str().expect("rental id").to_owned()
}

/// The id of the rental's delivery, once delivery has created it.
pub async fn delivery_id(stack: &TestStack, rental_id: &str) -> serde_json::Value {
    let query = "query($id: ID!) { rental(id: $id) { delivery { id } } }";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, response) = stack.graphql(Some(&stack.operator_token()), query, json!({ "id": rental_id })).await;
        let id = response["data"]["rental"]["delivery"]["id"].clone();
        if !id.is_null() {
            return id;
        }
        assert!(std::time::Instant::now() < deadline, "no delivery for {rental_id}: {response}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Runs `startDelivery` or `completeDelivery` on the rental's delivery as an operator.
/// Completing waits, as an operator would, while inventory has not confirmed the unit
/// yet (WAITING_FOR_STOCK).
pub async fn operator_step(stack: &TestStack, step: &str, rental_id: &str) {
    let delivery = delivery_id(stack, rental_id).await;
    let mutation = format!("mutation($id: ID!) {{ {step}(id: $id) {{ status }} }}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, response) = stack.graphql(Some(&stack.operator_token()), &mutation, json!({ "id": delivery })).await;
        let waiting = super::error_codes(&response) == ["WAITING_FOR_STOCK"];
        if !waiting || std::time::Instant::now() > deadline {
            assert_eq!(response.get("errors"), None, "{step}: {response}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The product's stock, through the router.
pub async fn stock(stack: &TestStack, product_id: Uuid) -> i64 {
    let query = "query($id: ID!) { product(id: $id) { stock } }";
    let (_, response) = stack.graphql(Some(&stack.operator_token()), query, json!({ "id": product_id })).await;
    response["data"]["product"]["stock"].as_i64().unwrap_or_else(|| panic!("stock: {response}"))
}
