//! A rental's contract through the router, for the tests of billing and field service:
//! rent, deliver, read everything about the rental, wait for the clock to move it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use super::TestStack;
use super::fixtures::operator_step;

pub use harness::workload::{APPROVED, DECLINES_LATER};

/// Everything a test reads about a rental, from every subgraph.
pub const RENTAL: &str = r#"query($id: ID!) {
  rental(id: $id) {
    id status months monthlyFee endReason endedAt terminationFee
    term { startsOn endsOn periodsPaid nextChargeOn }
    timeline { kind at period invoice { id } }
    invoices { id kind period periodStart periodEnd status amount attempts nextAttemptAt failureReason paidAt }
    paymentMethod { brand last4 expMonth expYear }
    visits { id kind status number scheduledFor plannedFor doneAt notes }
    product { id stock careIntervalMonths }
    delivery { id status }
  }
}"#;

/// One customer's rental.
pub struct Contract {
    pub customer_id: Uuid,
    pub customer: String,
    pub rental_id: String,
}

/// Rents `product_id` for `months` with `card`, as a new customer.
pub async fn rent(stack: &TestStack, product_id: Uuid, months: i32, card: &str) -> Contract {
    let customer_id = Uuid::now_v7();
    let customer = stack.customer_token(customer_id);
    let query = "mutation($input: RentInput!) { rent(input: $input) { id status } }";
    let input = json!({ "input": {
        "productId": product_id,
        "months": months,
        "deliveryAddress": "12 Teheran-ro, Gangnam-gu, Seoul",
        "cardNumber": card,
        "idempotencyKey": Uuid::now_v7().to_string(),
    }});
    let (_, response) = stack.graphql(Some(&customer), query, input).await;
    assert_eq!(response["data"]["rent"]["status"], "ACCEPTED", "{response}");
    let rental_id = response["data"]["rent"]["id"].as_str().expect("rental id").to_owned();
    Contract { customer_id, customer, rental_id }
}

/// Ships and hands over the rental's dispenser (operators), then waits until the rental
/// has heard of it: its term has started.
pub async fn deliver(stack: &TestStack, contract: &Contract) -> Value {
    operator_step(stack, "startDelivery", &contract.rental_id).await;
    operator_step(stack, "completeDelivery", &contract.rental_id).await;
    wait_for(stack, contract, "the term to start", |rental| !rental["term"].is_null()).await
}

/// The rental as `RENTAL` reads it, with an operator's token.
pub async fn read(stack: &TestStack, contract: &Contract) -> Value {
    let (_, response) = stack.graphql(Some(&stack.operator_token()), RENTAL, json!({ "id": contract.rental_id })).await;
    assert_eq!(response.get("errors"), None, "{response}");
    response["data"]["rental"].clone()
}

/// Waits (up to a minute: the clock runs in seconds) until the rental satisfies
/// `done`; returns it then.
pub async fn wait_for(stack: &TestStack, contract: &Contract, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rental = read(stack, contract).await;
        if done(&rental) {
            return rental;
        }
        assert!(Instant::now() < deadline, "waited a minute for {what}; the rental is {rental:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The rental's invoice of `period`, if it has one.
pub fn invoice_of(rental: &Value, period: i64) -> Option<&Value> {
    rental["invoices"].as_array()?.iter().find(|invoice| invoice["period"].as_i64() == Some(period))
}

/// The kinds of the rental's timeline, in order.
pub fn kinds(rental: &Value) -> Vec<&str> {
    rental["timeline"]
        .as_array()
        .map_or_else(Vec::new, |steps| steps.iter().filter_map(|step| step["kind"].as_str()).collect())
}

/// The kinds of the rental's visits, with their status, in date order.
pub fn visits(rental: &Value) -> Vec<(String, String)> {
    rental["visits"]
        .as_array()
        .map(|visits| {
            visits
                .iter()
                .map(|visit| {
                    (
                        visit["kind"].as_str().unwrap_or_default().to_owned(),
                        visit["status"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A timestamp of the API, parsed.
pub fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value.as_str().unwrap_or_else(|| panic!("not a time: {value}")).parse().expect("RFC 3339")
}
