//! Nothing lost, nothing doubled (N5), through the real router and broker: broker
//! connections cut under a stream of rentals and shipments, redelivered and poison
//! messages.

use std::time::Duration;

use crate::support::fixtures::{rent, rentable_product, stock};
use crate::support::{TestStack, count, eventually, publish};
use serde_json::json;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// Cuts every broker connection of this stack, once all of them are up.
async fn cut_connections(stack: &TestStack) {
    for service in stack.subgraphs.all() {
        assert!(service.bus_connected(WAIT).await, "{} reconnected", service.name);
    }
    assert!(stack.events.close_connections().expect("rabbitmqctl") >= 1, "there were connections to cut");
}

#[tokio::test]
async fn broker_connections_cut_under_a_stream_of_rentals_lose_and_double_nothing() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Fault model", 19_900, 100).await;
    let customer = stack.customer_token(Uuid::now_v7());
    const RENTALS: usize = 30;

    let mut rental_ids = Vec::new();
    for index in 0..RENTALS {
        rental_ids.push(rent(&stack, &customer, product_id, &format!("fault-{index}")).await);
        if index % 10 == 5 {
            cut_connections(&stack).await;
        }
    }
    let delivery_db = &stack.subgraphs.delivery.database;
    let all_requested = eventually(WAIT, || async {
        count(delivery_db, "SELECT count(*) AS n FROM deliveries").await == RENTALS as i64
    })
    .await;
    assert!(all_requested, "every rental has its delivery");

    // Ship them all, cutting the connections again on the way.
    let deliveries: Vec<String> = {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: Uuid,
        }
        use diesel_async::RunQueryDsl;
        let mut connection = delivery_db.connection().await.expect("connection");
        let rows: Vec<Row> = diesel::sql_query("SELECT id FROM deliveries").load(&mut connection).await.expect("ids");
        rows.into_iter().map(|row| row.id.to_string()).collect()
    };
    for (index, delivery) in deliveries.iter().enumerate() {
        let query = "mutation($id: ID!) { startDelivery(id: $id) { status } }";
        let (_, response) = stack.graphql(Some(&stack.operator_token()), query, json!({ "id": delivery })).await;
        assert_eq!(response["data"]["startDelivery"]["status"], "SHIPPING", "{response}");
        if index % 10 == 3 {
            cut_connections(&stack).await;
        }
    }

    let expected = 100 - RENTALS as i64;
    assert!(eventually(WAIT, || async { stock(&stack, product_id).await == expected }).await, "stock caught up");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stock(&stack, product_id).await, expected, "no unit taken twice");
    assert_eq!(count(delivery_db, "SELECT count(*) AS n FROM deliveries").await, RENTALS as i64, "no delivery doubled");
    for service in ["inventory", "rental", "delivery", "payment"] {
        let dead = stack.events.queue_length(&stack.events.config.dead_letter_queue(service)).await.expect("length");
        assert_eq!(dead, 0, "nothing dead-lettered in {service}");
    }
    for service in stack.subgraphs.all() {
        let sql = "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL";
        let drained = eventually(WAIT, || async { count(&service.database, sql).await == 0 }).await;
        assert!(drained, "{} published everything", service.name);
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_redelivered_event_has_one_effect_and_poison_is_dead_lettered() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Redelivery model", 19_900, 5).await;
    let rental_id = Uuid::now_v7();
    let accepted = contracts::RentalAccepted {
        rental_id,
        customer_id: Uuid::now_v7(),
        product_id,
        months: 12,
        monthly_fee: 19_900,
        delivery_address: "1 Sejong-daero, Jung-gu, Seoul".into(),
        payment_id: Uuid::now_v7(),
        at: chrono::Utc::now(),
    };
    let envelope = serde_json::to_value(event_bus::Envelope::wrap(&accepted)).expect("json");
    let body = serde_json::to_vec(&envelope).expect("json");
    publish(&stack, "rental.accepted", &body).await;
    publish(&stack, "rental.accepted", &body).await;
    publish(&stack, "rental.accepted", b"{ not an envelope").await;
    let mut wrong_shape = envelope.clone();
    wrong_shape["id"] = json!(Uuid::now_v7());
    wrong_shape["data"] = json!({ "rentalId": "not a uuid" });
    publish(&stack, "rental.accepted", &serde_json::to_vec(&wrong_shape).expect("json")).await;

    let delivery_db = &stack.subgraphs.delivery.database;
    let dead_letters = stack.events.config.dead_letter_queue("delivery");
    let settled = eventually(WAIT, || async { stack.events.queue_length(&dead_letters).await.unwrap_or(0) == 2 }).await;
    assert!(settled, "both poison messages are dead-lettered");
    let sql = format!("SELECT count(*) AS n FROM deliveries WHERE rental_id = '{rental_id}'");
    assert_eq!(count(delivery_db, &sql).await, 1, "one delivery for the message delivered twice");

    // The consumer keeps going: a real rental still gets its delivery.
    let customer = stack.customer_token(Uuid::now_v7());
    let rental = rent(&stack, &customer, product_id, "after-poison").await;
    let sql = format!("SELECT count(*) AS n FROM deliveries WHERE rental_id = '{rental}'");
    assert!(eventually(WAIT, || async { count(delivery_db, &sql).await == 1 }).await);
    stack.stop().await;
}
