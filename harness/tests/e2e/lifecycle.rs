//! The rental's life across services, through the router: rent → delivery requested →
//! shipped (stock taken) → delivered (rental active); shortages held, not lost; an
//! inventory outage blocks nothing.

use std::time::Duration;

use crate::support::fixtures::{rent, rentable_product, stock};
use crate::support::{TestStack, error_codes, eventually};
use serde_json::{Value, json};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// The rental's delivery as the operator sees it, once delivery has created it.
async fn delivery_of(stack: &TestStack, rental_id: &str) -> Value {
    let query =
        "query($id: ID!) { rental(id: $id) { status delivery { id status waitingForStock product { stock } } } }";
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, response) = stack.graphql(Some(&stack.operator_token()), query, json!({ "id": rental_id })).await;
        let found = response["data"]["rental"].clone();
        if !found["delivery"].is_null() {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "no delivery was requested for rental {rental_id}: {response}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn operator(stack: &TestStack, mutation: &str, delivery_id: &Value) -> Value {
    let query = format!("mutation($id: ID!) {{ {mutation}(id: $id) {{ status shippedAt deliveredAt }} }}");
    let (_, response) = stack.graphql(Some(&stack.operator_token()), &query, json!({ "id": delivery_id })).await;
    response
}

async fn rental_status(stack: &TestStack, rental_id: &str) -> String {
    let (_, response) = stack
        .graphql(
            Some(&stack.operator_token()),
            "query($id: ID!) { rental(id: $id) { status } }",
            json!({ "id": rental_id }),
        )
        .await;
    response["data"]["rental"]["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn rent_ship_and_deliver_with_stock_following_the_shipment() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Journey model", 19_900, 2).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let rental_id = rent(&stack, &customer, product_id, "journey").await;

    let rental = delivery_of(&stack, &rental_id).await;
    assert_eq!(rental["status"], "ACCEPTED");
    assert_eq!(rental["delivery"]["status"], "REQUESTED");
    assert_eq!(rental["delivery"]["product"]["stock"], 2, "the operator sees the stock on the delivery");
    let delivery_id = rental["delivery"]["id"].clone();

    // The customer cannot ship; an operator can, once.
    let (_, refused) = stack
        .graphql(
            Some(&customer),
            "mutation($id: ID!) { startDelivery(id: $id) { status } }",
            json!({ "id": delivery_id }),
        )
        .await;
    assert_eq!(error_codes(&refused), ["FORBIDDEN"], "{refused}");
    let early = operator(&stack, "completeDelivery", &delivery_id).await;
    assert_eq!(error_codes(&early), ["CONFLICT"], "a requested delivery cannot be completed: {early}");
    let started = operator(&stack, "startDelivery", &delivery_id).await;
    assert_eq!(started["data"]["startDelivery"]["status"], "SHIPPING", "{started}");
    // A retry after a lost answer finds it where it asked: the same delivery, no error.
    let again = operator(&stack, "startDelivery", &delivery_id).await;
    assert_eq!(again["data"]["startDelivery"], started["data"]["startDelivery"], "{again}");

    assert!(eventually(WAIT, || async { stock(&stack, product_id).await == 1 }).await, "one unit taken");
    // It can be completed only once inventory has confirmed the unit.
    let query = "query($id: ID!) { rental(id: $id) { delivery { unitConfirmed } } }";
    let confirmed = eventually(WAIT, || async {
        let (_, response) = stack.graphql(Some(&customer), query, json!({ "id": rental_id })).await;
        response["data"]["rental"]["delivery"]["unitConfirmed"] == true
    })
    .await;
    assert!(confirmed, "inventory confirms the unit it took");

    let completed = operator(&stack, "completeDelivery", &delivery_id).await;
    assert_eq!(completed["data"]["completeDelivery"]["status"], "DELIVERED", "{completed}");
    let again = operator(&stack, "completeDelivery", &delivery_id).await;
    assert_eq!(again["data"]["completeDelivery"], completed["data"]["completeDelivery"], "completing twice: {again}");
    assert!(eventually(WAIT, || async { rental_status(&stack, &rental_id).await == "ACTIVE" }).await, "rental active");

    // Exactly one unit, however long we wait.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stock(&stack, product_id).await, 1);

    // The customer's timeline shows each step, in order.
    let query = "query($id: ID!) { rental(id: $id) { timeline { kind at } } }";
    let complete = eventually(WAIT, || async {
        let (_, response) = stack.graphql(Some(&customer), query, json!({ "id": rental_id })).await;
        let kinds: Vec<&str> = response["data"]["rental"]["timeline"]
            .as_array()
            .map(|entries| entries.iter().filter_map(|entry| entry["kind"].as_str()).collect())
            .unwrap_or_default();
        kinds == ["PAID", "DELIVERY_REQUESTED", "SHIPPED", "DELIVERED"]
    })
    .await;
    assert!(complete, "the timeline records paid, requested, shipped and delivered in order");
    stack.stop().await;
}

#[tokio::test]
async fn a_shipment_without_stock_is_held_visibly_until_a_restock() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Scarce model", 19_900, 0).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let rental_id = rent(&stack, &customer, product_id, "scarce").await;
    let delivery_id = delivery_of(&stack, &rental_id).await["delivery"]["id"].clone();

    let started = operator(&stack, "startDelivery", &delivery_id).await;
    assert_eq!(started["data"]["startDelivery"]["status"], "SHIPPING", "{started}");
    let query = "query($id: ID!) { rental(id: $id) { delivery { status waitingForStock } } }";
    let held = eventually(WAIT, || async {
        let (_, response) = stack.graphql(Some(&customer), query, json!({ "id": rental_id })).await;
        response["data"]["rental"]["delivery"]["waitingForStock"] == true
    })
    .await;
    assert!(held, "the customer sees the shipment waiting for stock");
    assert_eq!(stock(&stack, product_id).await, 0, "stock never goes negative");
    let blocked = operator(&stack, "completeDelivery", &delivery_id).await;
    assert_eq!(error_codes(&blocked), ["WAITING_FOR_STOCK"], "{blocked}");

    let (_, restocked) = stack
        .graphql(
            Some(&stack.operator_token()),
            "mutation($id: ID!) { restockProduct(productId: $id, quantity: 3) { stock } }",
            json!({ "id": product_id }),
        )
        .await;
    assert_eq!(restocked["data"]["restockProduct"]["stock"], 2, "one of the three units went to the waiting shipment");
    let released = eventually(WAIT, || async {
        let (_, response) = stack.graphql(Some(&customer), query, json!({ "id": rental_id })).await;
        response["data"]["rental"]["delivery"]["waitingForStock"] == false
    })
    .await;
    assert!(released, "the shipment is released");
    let query = "query($id: ID!) { rental(id: $id) { delivery { unitConfirmed } } }";
    let (_, response) = stack.graphql(Some(&customer), query, json!({ "id": rental_id })).await;
    assert_eq!(response["data"]["rental"]["delivery"]["unitConfirmed"], true, "{response}");
    let completed = operator(&stack, "completeDelivery", &delivery_id).await;
    assert_eq!(completed["data"]["completeDelivery"]["status"], "DELIVERED", "{completed}");
    stack.stop().await;
}

#[tokio::test]
async fn with_inventory_down_renting_and_shipping_go_on_and_stock_catches_up() {
    let mut stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Outage model", 19_900, 10).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let inventory_address = stack.stop_service(inventory::SERVICE).await;

    let mut deliveries = Vec::new();
    for index in 0..4 {
        let rental_id = rent(&stack, &customer, product_id, &format!("outage-{index}")).await;
        // `product { stock }` would need inventory; the delivery itself does not.
        let query = "query($id: ID!) { rental(id: $id) { delivery { id } } }";
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (_, response) = stack.graphql(Some(&stack.operator_token()), query, json!({ "id": rental_id })).await;
            let delivery_id = response["data"]["rental"]["delivery"]["id"].clone();
            if !delivery_id.is_null() {
                deliveries.push(delivery_id);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no delivery for {rental_id}: {response}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    for delivery_id in &deliveries[..3] {
        let query = "mutation($id: ID!) { startDelivery(id: $id) { status } }";
        let (_, response) = stack.graphql(Some(&stack.operator_token()), query, json!({ "id": delivery_id })).await;
        assert_eq!(response["data"]["startDelivery"]["status"], "SHIPPING", "{response}");
    }

    stack.restart_service(inventory::SERVICE, inventory_address).await;
    assert!(eventually(WAIT, || async { stock(&stack, product_id).await == 7 }).await, "three units taken");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stock(&stack, product_id).await, 7, "exactly three");
    stack.stop().await;
}

#[tokio::test]
async fn a_delivery_is_completed_only_after_inventory_took_its_unit() {
    let mut stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Confirmed model", 19_900, 2).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let rental_id = rent(&stack, &customer, product_id, "confirmed").await;
    let delivery_id = delivery_of(&stack, &rental_id).await["delivery"]["id"].clone();

    // Inventory is away: the shipment leaves, but nobody has taken a unit for it.
    let inventory_address = stack.stop_service(inventory::SERVICE).await;
    let started = operator(&stack, "startDelivery", &delivery_id).await;
    assert_eq!(started["data"]["startDelivery"]["status"], "SHIPPING", "{started}");
    let refused = operator(&stack, "completeDelivery", &delivery_id).await;
    assert_eq!(error_codes(&refused), ["WAITING_FOR_STOCK"], "{refused}");
    assert_eq!(refused["errors"][0]["extensions"]["retryAfterSeconds"], 1, "{refused}");
    let query = "query($id: ID!) { rental(id: $id) { status delivery { status unitConfirmed waitingForStock } } }";
    let (_, response) = stack.graphql(Some(&customer), query, json!({ "id": rental_id })).await;
    assert_eq!(response["data"]["rental"]["delivery"]["unitConfirmed"], false, "{response}");
    assert_eq!(response["data"]["rental"]["status"], "ACCEPTED", "{response}");

    // Inventory comes back, takes the unit and says so; now it can be completed.
    stack.restart_service(inventory::SERVICE, inventory_address).await;
    let confirmed = eventually(WAIT, || async {
        let (_, response) = stack.graphql(Some(&customer), query, json!({ "id": rental_id })).await;
        response["data"]["rental"]["delivery"]["unitConfirmed"] == true
    })
    .await;
    assert!(confirmed, "inventory confirms the unit");
    assert_eq!(stock(&stack, product_id).await, 1);
    let completed = operator(&stack, "completeDelivery", &delivery_id).await;
    assert_eq!(completed["data"]["completeDelivery"]["status"], "DELIVERED", "{completed}");
    stack.stop().await;
}

#[tokio::test]
async fn stock_news_never_holds_a_delivery_that_is_not_shipping() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Stale news model", 19_900, 2).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let rental_id = rent(&stack, &customer, product_id, "stale-news").await;
    let delivery_id = delivery_of(&stack, &rental_id).await["delivery"]["id"].clone();
    let (_, cancelled) = stack
        .graphql(Some(&customer), "mutation($id: ID!) { cancelRental(id: $id) { status } }", json!({ "id": rental_id }))
        .await;
    assert_eq!(cancelled["data"]["cancelRental"]["status"], "CANCELLED", "{cancelled}");
    let query = "query($id: ID!) { rental(id: $id) { delivery { status waitingForStock } } }";
    let settled = eventually(WAIT, || async {
        let (_, response) = stack.graphql(Some(&customer), query, json!({ "id": rental_id })).await;
        response["data"]["rental"]["delivery"]["status"] == "CANCELLED"
    })
    .await;
    assert!(settled, "the delivery is cancelled");

    // A stale shortage for the cancelled delivery (as a redelivery or a bug would send).
    let news = contracts::StockNews {
        delivery_id: delivery_id.as_str().expect("id").parse().expect("uuid"),
        rental_id: rental_id.parse().expect("uuid"),
        product_id,
        at: chrono::Utc::now(),
    };
    crate::support::publish(&stack, "stock.shortage", &crate::support::envelope(&contracts::StockShortage(news))).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, response) = stack.graphql(Some(&customer), query, json!({ "id": rental_id })).await;
    assert_eq!(response["data"]["rental"]["delivery"]["waitingForStock"], false, "{response}");
    assert_eq!(response["data"]["rental"]["delivery"]["status"], "CANCELLED", "{response}");
    stack.stop().await;
}
