//! Renting through the router: paid or nothing (N1), idempotent, shielded from a
//! failing payment service by a circuit breaker (N3).

use std::time::Duration;

use crate::support::fixtures::{RENT, rent_input, rentable_product};
use crate::support::{StackOptions, TestStack, count, error_codes, eventually, first_message, post_graphql};
use reqwest::StatusCode;
use serde_json::json;
use subgraph_kit::Identity;
use uuid::Uuid;

use harness::workload::{APPROVED, DECLINED};

#[tokio::test]
async fn renting_charges_the_first_month_and_keeps_only_the_last_four_digits() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Rent model 1", 19_900, 5).await;
    let customer = Uuid::now_v7();

    let (status, response) =
        stack.graphql(Some(&stack.customer_token(customer)), RENT, rent_input(product_id, APPROVED, "first")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response.get("errors"), None, "{response}");
    let rental = &response["data"]["rent"];
    assert_eq!(rental["status"], "ACCEPTED");
    assert_eq!(rental["months"], 12);
    assert_eq!(rental["monthlyFee"], 19_900);
    assert_eq!(rental["customerId"], json!(customer));
    assert_eq!(rental["product"], json!({ "id": product_id, "name": "Rent model 1" }));
    assert_eq!(rental["payment"], json!({ "amount": 19_900, "cardLast4": "4242", "status": "PAID" }));

    let payment_db = &stack.subgraphs.payment.database;
    let rental_db = &stack.subgraphs.rental.database;
    assert_eq!(count(payment_db, "SELECT count(*) AS n FROM payments").await, 1);
    assert_eq!(count(rental_db, "SELECT count(*) AS n FROM rentals").await, 1);
    assert_eq!(count(rental_db, "SELECT count(*) AS n FROM rent_requests WHERE state = 'COMPLETED'").await, 1);
    // The full card number is nowhere: not in a table, not in an event.
    for (database, tables) in [
        (payment_db, ["payments", "outbox", "processed_messages"]),
        (rental_db, ["rentals", "outbox", "rent_requests"]),
    ] {
        for table in tables {
            let sql = format!("SELECT count(*) AS n FROM {table} t WHERE t::text LIKE '%{APPROVED}%'");
            assert_eq!(count(database, &sql).await, 0, "{table} holds the card number");
        }
    }
    stack.stop().await;
}

#[tokio::test]
async fn retrying_with_the_same_key_returns_the_same_rental_and_charges_once() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Rent model 2", 24_900, 5).await;
    let token = stack.customer_token(Uuid::now_v7());

    let (_, first) = stack.graphql(Some(&token), RENT, rent_input(product_id, APPROVED, "same-key")).await;
    let (_, again) = stack.graphql(Some(&token), RENT, rent_input(product_id, APPROVED, "same-key")).await;
    assert_eq!(first.get("errors"), None, "{first}");
    assert_eq!(first["data"]["rent"]["id"], again["data"]["rent"]["id"], "{again}");

    let mut different = rent_input(product_id, APPROVED, "same-key");
    different["input"]["months"] = json!(24);
    let (_, refused) = stack.graphql(Some(&token), RENT, different).await;
    assert_eq!(error_codes(&refused), ["IDEMPOTENCY_KEY_REUSED"], "{refused}");

    assert_eq!(count(&stack.subgraphs.payment.database, "SELECT count(*) AS n FROM payments").await, 1);
    assert_eq!(count(&stack.subgraphs.rental.database, "SELECT count(*) AS n FROM rentals").await, 1);
    stack.stop().await;
}

#[tokio::test]
async fn a_declined_card_leaves_nothing_anywhere() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Rent model 3", 29_900, 5).await;
    let token = stack.customer_token(Uuid::now_v7());

    let (_, response) = stack.graphql(Some(&token), RENT, rent_input(product_id, DECLINED, "declined")).await;
    assert_eq!(error_codes(&response), ["PAYMENT_DECLINED"], "{response}");
    assert_eq!(response["data"], json!(null));

    let rental_db = &stack.subgraphs.rental.database;
    assert_eq!(count(rental_db, "SELECT count(*) AS n FROM rentals").await, 0);
    assert_eq!(count(rental_db, "SELECT count(*) AS n FROM rent_requests WHERE state <> 'ABANDONED'").await, 0);
    assert_eq!(count(rental_db, "SELECT count(*) AS n FROM outbox").await, 0);
    let payment_db = &stack.subgraphs.payment.database;
    assert_eq!(count(payment_db, "SELECT count(*) AS n FROM payments").await, 0);
    assert_eq!(
        count(payment_db, "SELECT count(*) AS n FROM voided_rentals").await,
        1,
        "that attempt can never be charged"
    );

    // The same key works afterwards with a good card.
    let (_, response) = stack.graphql(Some(&token), RENT, rent_input(product_id, APPROVED, "declined")).await;
    assert_eq!(response["data"]["rent"]["status"], "ACCEPTED", "{response}");
    stack.stop().await;
}

#[tokio::test]
async fn bad_rent_input_is_refused_and_writes_nothing() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Rent model 4", 19_900, 5).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let cases = [
        ("months", json!(0), "BAD_USER_INPUT"),
        ("months", json!(-3), "BAD_USER_INPUT"),
        ("months", json!(61), "BAD_USER_INPUT"),
        ("deliveryAddress", json!("   "), "BAD_USER_INPUT"),
        ("deliveryAddress", json!("x".repeat(501)), "BAD_USER_INPUT"),
        ("cardNumber", json!("1234"), "BAD_USER_INPUT"),
        ("cardNumber", json!("4242424242424241"), "BAD_USER_INPUT"),
        ("idempotencyKey", json!(""), "BAD_USER_INPUT"),
        ("idempotencyKey", json!("k".repeat(101)), "BAD_USER_INPUT"),
        ("productId", json!("not-an-id"), "BAD_USER_INPUT"),
        ("productId", json!(Uuid::now_v7()), "NOT_FOUND"),
    ];
    for (field, value, code) in cases {
        let mut input = rent_input(product_id, APPROVED, "bad-input");
        input["input"][field] = value.clone();
        let (_, response) = stack.graphql(Some(&customer), RENT, input).await;
        assert_eq!(error_codes(&response), [code], "{field} = {value}: {response}");
    }
    let (_, response) =
        stack.graphql(Some(&stack.operator_token()), RENT, rent_input(product_id, APPROVED, "operator")).await;
    assert_eq!(error_codes(&response), ["FORBIDDEN"], "{response}");

    let rental_db = &stack.subgraphs.rental.database;
    assert_eq!(count(rental_db, "SELECT count(*) AS n FROM rent_requests").await, 0);
    assert_eq!(count(rental_db, "SELECT count(*) AS n FROM rentals").await, 0);
    assert_eq!(count(&stack.subgraphs.payment.database, "SELECT count(*) AS n FROM payments").await, 0);
    stack.stop().await;
}

#[tokio::test]
async fn with_payment_down_the_breaker_opens_fails_fast_and_closes_when_payment_returns() {
    let mut stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Rent model 5", 19_900, 5).await;
    let token = stack.customer_token(Uuid::now_v7());
    let address = stack.stop_payment().await;

    // Failures until the breaker opens (threshold 3 in tests).
    for attempt in 0..3 {
        let (_, response) =
            stack.graphql(Some(&token), RENT, rent_input(product_id, APPROVED, &format!("down-{attempt}"))).await;
        assert_eq!(error_codes(&response), ["PAYMENT_UNAVAILABLE"], "{response}");
    }
    // Open: refused before anything is written, with a retry hint.
    let requests_before = count(&stack.subgraphs.rental.database, "SELECT count(*) AS n FROM rent_requests").await;
    let started = std::time::Instant::now();
    let (_, response) = stack.graphql(Some(&token), RENT, rent_input(product_id, APPROVED, "while-open")).await;
    // Reported, not asserted: timing belongs in benchmarks (see docs/benchmarks.md).
    eprintln!("rent with the breaker open answered in {:?}", started.elapsed());
    assert_eq!(error_codes(&response), ["PAYMENT_UNAVAILABLE"], "{response}");
    assert!(response["errors"][0]["extensions"]["retryAfterSeconds"].as_u64().is_some(), "{response}");
    assert!(first_message(&response).contains("try again"), "{response}");
    let requests_after = count(&stack.subgraphs.rental.database, "SELECT count(*) AS n FROM rent_requests").await;
    assert_eq!(requests_after, requests_before, "an open breaker writes nothing");

    // Payment comes back: after the open period a probe goes through and closes it.
    stack.restart_payment(address).await;
    let recovered = eventually(Duration::from_secs(15), || async {
        let (_, response) = stack.graphql(Some(&token), RENT, rent_input(product_id, APPROVED, "after-recovery")).await;
        response["data"]["rent"]["status"] == "ACCEPTED"
    })
    .await;
    assert!(recovered, "rent works again once payment is back");
    stack.stop().await;
}

#[tokio::test]
async fn a_charge_whose_rental_never_committed_is_refunded() {
    let mut options = StackOptions::default();
    options.rental.reconcile_after = Duration::from_millis(500);
    let stack = TestStack::start_with(options).await;
    let customer = Uuid::now_v7();

    // The state a crash between the charge and the rental's commit leaves behind: a
    // PENDING request and a successful charge for its rental id.
    let crashed_rental = Uuid::now_v7();
    let never_charged = Uuid::now_v7();
    let rental_db = &stack.subgraphs.rental.database;
    for (rental_id, key) in [(crashed_rental, "crashed"), (never_charged, "never-charged")] {
        let mut connection = rental_db.connection().await.expect("connection");
        rental::storage::requests::claim(&mut connection, customer, key, "fingerprint", rental_id)
            .await
            .expect("pending request");
    }
    // What rental sends: a token signed with rental's own key, addressed to payment.
    let service = stack.identities.rental.issue(&Identity::Service { name: "rental".into() }, Duration::from_secs(60));
    let charge = |rental_id: Uuid| {
        json!({
            "query": "mutation($input: ChargeRentalInput!) { chargeRental(input: $input) { id status } }",
            "variables": { "input": { "rentalId": rental_id, "customerId": customer, "amount": 19_900, "cardNumber": APPROVED } },
        })
    };
    let payment_url = stack.subgraphs.payment.url();
    let (_, charged) = post_graphql(&stack.client, &payment_url, Some(&service), &charge(crashed_rental)).await;
    assert_eq!(charged["data"]["chargeRental"]["status"], "PAID", "{charged}");

    // The reconciler gives up on both: the charge is refunded, the other made impossible.
    let payment_db = &stack.subgraphs.payment.database;
    let settled = eventually(Duration::from_secs(15), || async {
        count(rental_db, "SELECT count(*) AS n FROM rent_requests WHERE state = 'ABANDONED'").await == 2
    })
    .await;
    assert!(settled, "both requests are called off");
    assert_eq!(count(payment_db, "SELECT count(*) AS n FROM payments WHERE status = 'REFUNDED'").await, 1);
    assert_eq!(count(rental_db, "SELECT count(*) AS n FROM rentals").await, 0);

    // A charge arriving late for the abandoned request is refused.
    let (_, late) = post_graphql(&stack.client, &payment_url, Some(&service), &charge(never_charged)).await;
    assert_eq!(error_codes(&late), ["CONFLICT"], "{late}");
    assert_eq!(count(payment_db, "SELECT count(*) AS n FROM payments").await, 1);
    stack.stop().await;
}

#[tokio::test]
async fn a_request_being_called_off_is_left_to_the_rent_that_gave_up_on_it() {
    // A declined card: `rent` marks its request VOIDING and calls the charge off
    // itself. The reconciler must not take the same request at once and void it a
    // second time; it only finishes requests left alone past the reconcile delay.
    let stack = TestStack::start().await;
    let rental_db = &stack.subgraphs.rental.database;
    let rental_id = Uuid::now_v7();
    {
        let mut connection = rental_db.connection().await.expect("connection");
        rental::storage::requests::claim(&mut connection, Uuid::now_v7(), "declined", "fingerprint", rental_id)
            .await
            .expect("request");
        rental::storage::requests::set_state(&mut connection, rental_id, rental::domain::RequestState::Voiding)
            .await
            .expect("voiding");
    }
    let mut config = harness::in_process::rental_settings().expect("settings");
    config.payments.url = stack.subgraphs.payment.url();
    config.payments.credential = stack.identities.rental.clone();
    let renting = rental::service::renting::Renting {
        database: rental_db.clone(),
        payments: rental::service::payments::PaymentClient::new(config.payments).expect("payment client"),
        reconcile_after: Duration::from_secs(30),
    };
    assert_eq!(renting.reconcile_once(rental_db).await.expect("reconciled"), 0, "a fresh VOIDING request is not taken");
    let voiding = "SELECT count(*) AS n FROM rent_requests WHERE state = 'VOIDING'";
    assert_eq!(count(rental_db, voiding).await, 1);
    assert_eq!(count(&stack.subgraphs.payment.database, "SELECT count(*) AS n FROM voided_rentals").await, 0);
    stack.stop().await;
}
