//! The customer's history (CQRS): one indexed read per page, converging under
//! duplicated and reordered events, and rebuilt identically from the records.

use std::time::Duration;

use crate::support::fixtures::{operator_step, rent_input, rentable_product};
use crate::support::{TestStack, eventually};
use diesel_async::RunQueryDsl;
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use serde_json::{Value, json};
use uuid::Uuid;

use harness::workload::APPROVED;
const WAIT: Duration = Duration::from_secs(30);
const HISTORY: &str = r#"query($first: Int, $after: String, $status: RentalStatus) {
  myRentals(first: $first, after: $after, status: $status) {
    edges { node { id status timeline { kind at } } }
    pageInfo { hasNextPage endCursor }
  }
}"#;

async fn rent(stack: &TestStack, token: &str, product_id: Uuid, key: &str) -> String {
    let query = "mutation($input: RentInput!) { rent(input: $input) { id } }";
    let (_, response) = stack.graphql(Some(token), query, rent_input(product_id, APPROVED, key)).await;
    response["data"]["rent"]["id"].as_str().unwrap_or_else(|| panic!("rent: {response}")).to_owned()
}

async fn cancel(stack: &TestStack, token: &str, rental_id: &str) {
    let (_, response) = stack
        .graphql(Some(token), "mutation($id: ID!) { cancelRental(id: $id) { status } }", json!({ "id": rental_id }))
        .await;
    assert_eq!(response["data"]["cancelRental"]["status"], "CANCELLED", "{response}");
}

/// Every page of the history, with `first` per page.
async fn whole_history(stack: &TestStack, token: &str, first: i32) -> Vec<Value> {
    let mut nodes = Vec::new();
    let mut after = Value::Null;
    loop {
        let (_, response) = stack.graphql(Some(token), HISTORY, json!({ "first": first, "after": after })).await;
        assert_eq!(response.get("errors"), None, "{response}");
        let page = &response["data"]["myRentals"];
        nodes.extend(page["edges"].as_array().expect("edges").iter().map(|edge| edge["node"].clone()));
        if page["pageInfo"]["hasNextPage"] == json!(false) {
            return nodes;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
}

fn kinds(node: &Value) -> Vec<String> {
    node["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn history_shows_each_rentals_timeline_converges_and_rebuilds_the_same() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "History model", 19_900, 10).await;
    let customer = stack.customer_token(Uuid::now_v7());

    let delivered = rent(&stack, &customer, product_id, "h-delivered").await;
    let cancelled_early = rent(&stack, &customer, product_id, "h-cancelled-early").await;
    let cancelled_shipped = rent(&stack, &customer, product_id, "h-cancelled-shipped").await;
    let waiting = rent(&stack, &customer, product_id, "h-waiting").await;
    operator_step(&stack, "startDelivery", &delivered).await;
    operator_step(&stack, "completeDelivery", &delivered).await;
    operator_step(&stack, "startDelivery", &cancelled_shipped).await;
    cancel(&stack, &customer, &cancelled_early).await;
    cancel(&stack, &customer, &cancelled_shipped).await;

    let expected: Vec<(String, &str, Vec<&str>)> = vec![
        (waiting.clone(), "ACCEPTED", vec!["PAID", "DELIVERY_REQUESTED"]),
        (
            cancelled_shipped.clone(),
            "CANCELLED",
            vec!["PAID", "DELIVERY_REQUESTED", "SHIPPED", "CANCELLED", "REFUNDED"],
        ),
        (cancelled_early.clone(), "CANCELLED", vec!["PAID", "DELIVERY_REQUESTED", "CANCELLED", "REFUNDED"]),
        (delivered.clone(), "ACTIVE", vec!["PAID", "DELIVERY_REQUESTED", "SHIPPED", "DELIVERED"]),
    ];
    let matches = |nodes: &[Value]| {
        nodes.len() == expected.len()
            && nodes.iter().zip(&expected).all(|(node, (id, status, steps))| {
                node["id"] == json!(id) && node["status"] == json!(status) && kinds(node) == *steps
            })
    };
    let settled = eventually(WAIT, || async { matches(&whole_history(&stack, &customer, 10).await) }).await;
    let history = whole_history(&stack, &customer, 10).await;
    assert!(settled, "newest first, each with its full timeline in order: {history:#?}");

    // Paging one at a time visits every rental once, in the same order.
    assert_eq!(whole_history(&stack, &customer, 1).await, history);
    // The status filter.
    let (_, response) = stack.graphql(Some(&customer), HISTORY, json!({ "status": "CANCELLED" })).await;
    let ids: Vec<&Value> =
        response["data"]["myRentals"]["edges"].as_array().expect("edges").iter().map(|e| &e["node"]["id"]).collect();
    assert_eq!(ids, [&json!(cancelled_shipped), &json!(cancelled_early)]);
    // One indexed read per page, however long the timelines.
    let rental_db = &stack.subgraphs.rental.database;
    let before = rental_db.statements_executed();
    let (_, response) = stack.graphql(Some(&customer), HISTORY, json!({ "first": 10 })).await;
    assert_eq!(response.get("errors"), None);
    assert_eq!(rental_db.statements_executed() - before, 1, "one statement for the page and its timelines");

    // Every payment and delivery event again, as new messages, newest first: the
    // history does not change.
    let mut replayed = 0;
    for service in [&stack.subgraphs.payment, &stack.subgraphs.delivery] {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Jsonb)]
            payload: Value,
        }
        let mut connection = service.database.connection().await.expect("connection");
        let rows: Vec<Row> = diesel::sql_query("SELECT payload FROM outbox ORDER BY id DESC")
            .load(&mut connection)
            .await
            .expect("outbox");
        let broker =
            lapin::Connection::connect(&stack.events.config.amqp_url, Default::default()).await.expect("broker");
        let channel = broker.create_channel().await.expect("channel");
        for row in rows {
            let mut envelope = row.payload;
            envelope["id"] = json!(Uuid::now_v7());
            let routing_key = envelope["type"].as_str().expect("type").to_owned();
            channel
                .basic_publish(
                    stack.events.config.exchange().as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &serde_json::to_vec(&envelope).expect("json"),
                    BasicProperties::default(),
                )
                .await
                .expect("publish");
            replayed += 1;
        }
        let _ = broker.close(200, "done".into()).await;
    }
    assert!(replayed > 10);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(whole_history(&stack, &customer, 10).await, history, "replayed events change nothing");

    // Rebuilt from the services' own records, from empty: the same history.
    {
        let mut connection = rental_db.connection().await.expect("connection");
        diesel::sql_query("DELETE FROM rental_history").execute(&mut connection).await.expect("emptied");
        diesel::sql_query("DELETE FROM rental_timeline").execute(&mut connection).await.expect("emptied");
    }
    assert!(whole_history(&stack, &customer, 10).await.is_empty());
    let rebuilt = rental::service::rebuild::rebuild(
        rental_db,
        &stack.subgraphs.payment.database,
        &stack.subgraphs.delivery.database,
        &stack.subgraphs.inventory.database,
    )
    .await
    .map_err(|error| error.message)
    .expect("rebuilt");
    assert_eq!(rebuilt, 4);
    assert_eq!(whole_history(&stack, &customer, 10).await, history, "the rebuild gives the same history");
    stack.stop().await;
}

#[tokio::test]
async fn a_cancellation_shows_in_my_rentals_at_once_whatever_the_other_services_do() {
    let mut stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Read-your-writes model", 19_900, 3).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let rental_id = rent(&stack, &customer, product_id, "ryw").await;
    // Nobody else can answer: payment and delivery are down.
    stack.stop_service(payment::SERVICE).await;
    stack.stop_service(delivery::SERVICE).await;
    cancel(&stack, &customer, &rental_id).await;
    let history = whole_history(&stack, &customer, 10).await;
    assert_eq!(history[0]["id"], json!(rental_id));
    assert_eq!(history[0]["status"], "CANCELLED", "the customer's own change is visible at once: {history:?}");
    assert!(kinds(&history[0]).contains(&"CANCELLED".to_owned()), "{history:?}");
    stack.stop().await;
}
