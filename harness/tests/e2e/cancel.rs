//! Cancelling through the router: the delivery is cancelled, the payment refunded and a
//! shipped unit returned, on every service; a cancel racing a shipment ends in one
//! consistent state.

use std::time::Duration;

use crate::support::fixtures::{delivery_id, operator_step, rent, rentable_product};
use crate::support::{TestStack, count, error_codes, eventually};
use serde_json::{Value, json};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

const STATE: &str =
    "query($id: ID!) { rental(id: $id) { status payment { status } delivery { status } product { stock } } }";

/// (rental status, payment status, delivery status, stock) as the operator sees them.
async fn state(stack: &TestStack, rental_id: &str) -> (String, String, String, i64) {
    let (_, response) = stack.graphql(Some(&stack.operator_token()), STATE, json!({ "id": rental_id })).await;
    let rental = &response["data"]["rental"];
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    (
        text(&rental["status"]),
        text(&rental["payment"]["status"]),
        text(&rental["delivery"]["status"]),
        rental["product"]["stock"].as_i64().unwrap_or(-1),
    )
}

async fn settles_to(
    stack: &TestStack,
    rental_id: &str,
    expected: (&str, &str, &str, i64),
) -> (String, String, String, i64) {
    let mut last = state(stack, rental_id).await;
    let deadline = std::time::Instant::now() + WAIT;
    while (last.0.as_str(), last.1.as_str(), last.2.as_str(), last.3) != expected
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = state(stack, rental_id).await;
    }
    last
}

#[tokio::test]
async fn cancelling_before_shipping_cancels_the_delivery_and_refunds() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Cancel model 1", 19_900, 3).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let rental_id = rent(&stack, &customer, product_id, "cancel-1").await;
    delivery_id(&stack, &rental_id).await;

    let mutation = "mutation($id: ID!) { cancelRental(id: $id) { status } }";
    let (_, response) = stack.graphql(Some(&customer), mutation, json!({ "id": rental_id })).await;
    assert_eq!(response["data"]["cancelRental"]["status"], "CANCELLED", "{response}");

    let settled = settles_to(&stack, &rental_id, ("CANCELLED", "REFUNDED", "CANCELLED", 3)).await;
    assert_eq!(settled, ("CANCELLED".into(), "REFUNDED".into(), "CANCELLED".into(), 3));

    // Cancelling twice (a retry after a lost answer) answers the rental as it is and
    // changes nothing.
    let (_, again) = stack.graphql(Some(&customer), mutation, json!({ "id": rental_id })).await;
    assert_eq!(again["data"]["cancelRental"]["status"], "CANCELLED", "{again}");
    let timeline = "query($id: ID!) { rental(id: $id) { timeline { kind } } }";
    let recorded = eventually(WAIT, || async {
        let (_, response) = stack.graphql(Some(&customer), timeline, json!({ "id": rental_id })).await;
        let kinds: Vec<String> = response["data"]["rental"]["timeline"]
            .as_array()
            .map(|entries| entries.iter().filter_map(|entry| entry["kind"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        kinds.contains(&"CANCELLED".to_owned()) && kinds.contains(&"REFUNDED".to_owned())
    })
    .await;
    assert!(recorded, "the timeline shows the cancellation and the refund");
    stack.stop().await;
}

#[tokio::test]
async fn cancelling_a_shipped_rental_returns_the_unit() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Cancel model 2", 19_900, 3).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let rental_id = rent(&stack, &customer, product_id, "cancel-2").await;
    let delivery = delivery_id(&stack, &rental_id).await;
    let (_, started) = stack
        .graphql(
            Some(&stack.operator_token()),
            "mutation($id: ID!) { startDelivery(id: $id) { status } }",
            json!({ "id": delivery }),
        )
        .await;
    assert_eq!(started["data"]["startDelivery"]["status"], "SHIPPING", "{started}");
    assert_eq!(settles_to(&stack, &rental_id, ("ACCEPTED", "PAID", "SHIPPING", 2)).await.3, 2, "the unit left");

    let (_, response) = stack
        .graphql(
            Some(&stack.operator_token()),
            "mutation($id: ID!) { cancelRental(id: $id) { status } }",
            json!({ "id": rental_id }),
        )
        .await;
    assert_eq!(response["data"]["cancelRental"]["status"], "CANCELLED", "an operator may cancel: {response}");
    let settled = settles_to(&stack, &rental_id, ("CANCELLED", "REFUNDED", "CANCELLED", 3)).await;
    assert_eq!(settled, ("CANCELLED".into(), "REFUNDED".into(), "CANCELLED".into(), 3));
    stack.stop().await;
}

#[tokio::test]
async fn another_customer_cannot_cancel_and_a_delivered_rental_cannot_be_cancelled() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Cancel model 3", 19_900, 3).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let rental_id = rent(&stack, &customer, product_id, "cancel-3").await;
    let mutation = "mutation($id: ID!) { cancelRental(id: $id) { status } }";

    let stranger = stack.customer_token(Uuid::now_v7());
    let (_, response) = stack.graphql(Some(&stranger), mutation, json!({ "id": rental_id })).await;
    assert_eq!(error_codes(&response), ["NOT_FOUND"], "{response}");
    let (_, response) = stack.graphql(Some(&customer), mutation, json!({ "id": "nope" })).await;
    assert_eq!(error_codes(&response), ["BAD_USER_INPUT"], "{response}");

    for step in ["startDelivery", "completeDelivery"] {
        operator_step(&stack, step, &rental_id).await;
    }
    assert_eq!(settles_to(&stack, &rental_id, ("ACTIVE", "PAID", "DELIVERED", 2)).await.0, "ACTIVE");
    let (_, response) = stack.graphql(Some(&customer), mutation, json!({ "id": rental_id })).await;
    assert_eq!(error_codes(&response), ["CONFLICT"], "{response}");
    assert_eq!(
        count(&stack.subgraphs.payment.database, "SELECT count(*) AS n FROM payments WHERE status = 'REFUNDED'").await,
        0
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_cancel_racing_a_shipment_ends_in_one_consistent_state_everywhere() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Race model", 19_900, 20).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let mut rentals = Vec::new();
    for index in 0..6 {
        let rental_id = rent(&stack, &customer, product_id, &format!("race-{index}")).await;
        let delivery = delivery_id(&stack, &rental_id).await;
        rentals.push((rental_id, delivery));
    }
    // Start and cancel each at the same moment.
    let races = rentals.iter().map(|(rental_id, delivery)| {
        let stack = &stack;
        let customer = &customer;
        async move {
            let operator = stack.operator_token();
            let start = stack.graphql(
                Some(&operator),
                "mutation($id: ID!) { startDelivery(id: $id) { status } }",
                json!({ "id": delivery }),
            );
            let cancel = stack.graphql(
                Some(customer),
                "mutation($id: ID!) { cancelRental(id: $id) { status } }",
                json!({ "id": rental_id }),
            );
            tokio::join!(start, cancel)
        }
    });
    futures::future::join_all(races).await;

    // Every rental ends cancelled, refunded, its delivery cancelled; every unit back.
    for (rental_id, _) in &rentals {
        let settled = settles_to(&stack, rental_id, ("CANCELLED", "REFUNDED", "CANCELLED", 20)).await;
        assert_eq!(settled, ("CANCELLED".into(), "REFUNDED".into(), "CANCELLED".into(), 20), "rental {rental_id}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_cancellation_that_reaches_a_delivered_delivery_is_refused_and_the_rental_reinstated() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Late cancel model", 19_900, 3).await;
    let customer_id = Uuid::now_v7();
    let customer = stack.customer_token(customer_id);
    let rental_id = rent(&stack, &customer, product_id, "late-cancel").await;
    for step in ["startDelivery", "completeDelivery"] {
        operator_step(&stack, step, &rental_id).await;
    }
    assert_eq!(settles_to(&stack, &rental_id, ("ACTIVE", "PAID", "DELIVERED", 2)).await.0, "ACTIVE");

    // The race lost: rental had cancelled (it had not heard of the delivery yet) and
    // its rental.cancelled reaches delivery after the delivery completed.
    {
        use diesel_async::RunQueryDsl;
        let mut connection = stack.subgraphs.rental.database.connection().await.expect("connection");
        diesel::sql_query("UPDATE rentals SET status = 'CANCELLED' WHERE id = $1::uuid")
            .bind::<diesel::sql_types::Text, _>(&rental_id)
            .execute(&mut connection)
            .await
            .expect("cancelled");
    }
    let cancelled = contracts::RentalCancelled {
        rental_id: rental_id.parse().expect("rental id"),
        customer_id,
        product_id,
        delivery_address: "12 Teheran-ro, Gangnam-gu, Seoul".into(),
        payment_id: Uuid::now_v7(),
        at: chrono::Utc::now(),
    };
    crate::support::publish(&stack, "rental.cancelled", &crate::support::envelope(&cancelled)).await;

    // Delivery refuses; rental is reinstated; nothing is refunded; the unit stays out.
    let settled = settles_to(&stack, &rental_id, ("ACTIVE", "PAID", "DELIVERED", 2)).await;
    assert_eq!(settled, ("ACTIVE".into(), "PAID".into(), "DELIVERED".into(), 2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(state(&stack, &rental_id).await, ("ACTIVE".into(), "PAID".into(), "DELIVERED".into(), 2));
    stack.stop().await;
}

#[tokio::test]
async fn a_cancellation_that_overtakes_the_acceptance_leaves_a_cancelled_delivery_only() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Overtaken model", 19_900, 3).await;
    let rental_id = Uuid::now_v7();
    let (customer_id, payment_id, address) = (Uuid::now_v7(), Uuid::now_v7(), "1 Sejong-daero, Jung-gu, Seoul");
    let cancelled = contracts::RentalCancelled {
        rental_id,
        customer_id,
        product_id,
        delivery_address: address.into(),
        payment_id,
        at: chrono::Utc::now(),
    };
    crate::support::publish(&stack, "rental.cancelled", &crate::support::envelope(&cancelled)).await;
    let delivery_db = &stack.subgraphs.delivery.database;
    let sql = format!("SELECT count(*) AS n FROM deliveries WHERE rental_id = '{rental_id}' AND status = 'CANCELLED'");
    assert!(
        eventually(WAIT, || async { count(delivery_db, &sql).await == 1 }).await,
        "a cancelled delivery is recorded"
    );

    let accepted = contracts::RentalAccepted {
        rental_id,
        customer_id,
        product_id,
        months: 12,
        monthly_fee: 19_900,
        delivery_address: address.into(),
        payment_id,
        at: chrono::Utc::now(),
    };
    crate::support::publish(&stack, "rental.accepted", &crate::support::envelope(&accepted)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = format!("SELECT count(*) AS n FROM deliveries WHERE rental_id = '{rental_id}'");
    assert_eq!(count(delivery_db, &all).await, 1, "the late acceptance requests nothing");
    assert_eq!(count(delivery_db, &sql).await, 1, "and the delivery stays cancelled");
    // Payment was told too: this rental can never be charged.
    let voided = format!("SELECT count(*) AS n FROM voided_rentals WHERE rental_id = '{rental_id}'");
    assert!(eventually(WAIT, || async { count(&stack.subgraphs.payment.database, &voided).await == 1 }).await);
    stack.stop().await;
}
