//! Field service, through the router, with months of a few seconds: care visits at the
//! product's interval within the term, the technicians' queue and its transitions, the
//! customer moving their own visit, the one pickup when a rental ends and the unit back
//! in stock, and the refusals.

use serde_json::{Value, json};
use subgraph_kit::clock::Calendar;
use uuid::Uuid;

use crate::support::contract::{APPROVED, Contract, deliver, kinds, read, rent, time, visits, wait_for};
use crate::support::fixtures::{create_product, rentable_product, stock};
use crate::support::{StackOptions, TestStack, error_codes, first_message};

/// Months of twelve seconds: a day is 400 ms, the customer's ±14 days are 5.6 s.
const MONTH_SECONDS: u32 = 12;

const QUEUE: &str = r#"query($kind: VisitKind, $status: VisitStatus) {
  visits(kind: $kind, status: $status, first: 100) {
    edges { node { id kind status number scheduledFor product { id name stock } rental { id customerId deliveryAddress } } }
  }
}"#;
const START: &str = "mutation($id: ID!) { startVisit(id: $id) { id status startedAt } }";
const COMPLETE: &str =
    "mutation($id: ID!, $notes: String) { completeVisit(id: $id, notes: $notes) { id status doneAt notes } }";
const RESCHEDULE: &str =
    "mutation($id: ID!, $at: DateTime!) { rescheduleVisit(id: $id, scheduledFor: $at) { id status scheduledFor } }";

/// A product visited every `interval` months, rentable.
async fn product_visited_every(stack: &TestStack, name: &str, interval: i32) -> Uuid {
    let product = rentable_product(stack, name, 20_000, 5).await;
    let set = "mutation($id: ID!, $months: Int!) { setCareInterval(productId: $id, careIntervalMonths: $months) { id careIntervalMonths } }";
    let (_, response) =
        stack.graphql(Some(&stack.operator_token()), set, json!({ "id": product, "months": interval })).await;
    assert_eq!(response["data"]["setCareInterval"]["careIntervalMonths"], interval, "{response}");
    product
}

/// The rental's visits of `kind`, with their ids, in date order.
fn visits_of<'a>(rental: &'a Value, kind: &str) -> Vec<&'a Value> {
    rental["visits"].as_array().expect("visits").iter().filter(|visit| visit["kind"] == kind).collect()
}

fn id(visit: &Value) -> String {
    visit["id"].as_str().expect("a visit id").to_owned()
}

/// Waits until the rental's care visits are planned (delivery hears of the activation).
async fn planned(stack: &TestStack, contract: &Contract, care_visits: usize) -> Value {
    wait_for(stack, contract, "the care plan", |rental| visits_of(rental, "CARE").len() == care_visits).await
}

#[tokio::test]
async fn care_visits_fall_at_the_interval_within_the_term_and_technicians_work_them() {
    let stack = TestStack::start_with(StackOptions::short_months(MONTH_SECONDS, &[1, 3, 7])).await;
    let product = product_visited_every(&stack, "Care model", 1).await;
    let contract = rent(&stack, product, 3, APPROVED).await;
    let active = deliver(&stack, &contract).await;
    let rental = planned(&stack, &contract, 2).await;
    let calendar = Calendar::short(MONTH_SECONDS);
    let starts = time(&active["term"]["startsOn"]);
    let care = visits_of(&rental, "CARE");
    // Visit n is due n months after the start; the third would fall on the end.
    for (n, visit) in care.iter().enumerate() {
        assert_eq!(visit["number"], n as i64 + 1);
        assert_eq!(visit["status"], "SCHEDULED");
        assert_eq!(time(&visit["scheduledFor"]), calendar.months_after(starts, n as i32 + 1), "{visit}");
    }

    // The technicians' queue, with the product and the rental from their subgraphs.
    let (_, response) =
        stack.graphql(Some(&stack.operator_token()), QUEUE, json!({ "kind": "CARE", "status": "SCHEDULED" })).await;
    let nodes: Vec<&Value> =
        response["data"]["visits"]["edges"].as_array().expect("edges").iter().map(|edge| &edge["node"]).collect();
    let first = nodes.iter().find(|node| node["id"] == care[0]["id"]).unwrap_or_else(|| panic!("queued: {response}"));
    assert_eq!(first["product"]["name"], "Care model");
    assert_eq!(first["rental"]["customerId"], contract.customer_id.to_string());
    assert_eq!(first["rental"]["deliveryAddress"], "12 Teheran-ro, Gangnam-gu, Seoul");
    let dates: Vec<String> =
        nodes.iter().map(|node| node["scheduledFor"].as_str().unwrap_or_default().to_owned()).collect();
    let mut sorted = dates.clone();
    sorted.sort();
    assert_eq!(dates, sorted, "oldest due first");
    let (_, response) = stack.graphql(Some(&contract.customer), QUEUE, json!({})).await;
    assert_eq!(error_codes(&response), ["FORBIDDEN"], "{response}");

    let visit = id(care[0]);
    let (_, response) = stack.graphql(Some(&contract.customer), START, json!({ "id": visit })).await;
    assert_eq!(error_codes(&response), ["FORBIDDEN"], "customers do not start visits: {response}");
    let (_, started) = stack.graphql(Some(&stack.operator_token()), START, json!({ "id": visit })).await;
    assert_eq!(started["data"]["startVisit"]["status"], "IN_PROGRESS", "{started}");
    let (_, again) = stack.graphql(Some(&stack.operator_token()), START, json!({ "id": visit })).await;
    assert_eq!(again, started, "starting twice changes nothing");
    let notes = json!({ "id": visit, "notes": "filters changed, tank cleaned" });
    let (_, done) = stack.graphql(Some(&stack.operator_token()), COMPLETE, notes.clone()).await;
    assert_eq!(done["data"]["completeVisit"]["status"], "DONE", "{done}");
    assert_eq!(done["data"]["completeVisit"]["notes"], "filters changed, tank cleaned");
    let (_, again) = stack.graphql(Some(&stack.operator_token()), COMPLETE, notes).await;
    assert_eq!(again, done, "completing twice changes nothing");
    let long = json!({ "id": id(care[1]), "notes": "x".repeat(2001) });
    let (_, response) = stack.graphql(Some(&stack.operator_token()), COMPLETE, long).await;
    assert_eq!(error_codes(&response), ["BAD_USER_INPUT"], "{response}");

    let rental = wait_for(&stack, &contract, "the visit in the timeline", |rental| {
        kinds(rental).contains(&"CARE_VISIT_DONE") && kinds(rental).contains(&"VISIT_STARTED")
    })
    .await;
    assert!(kinds(&rental).contains(&"VISIT_STARTED"), "{:?}", kinds(&rental));
    stack.stop().await;
}

#[tokio::test]
async fn a_terminated_rental_calls_off_its_care_visits_and_its_one_pickup_brings_the_unit_home() {
    let stack = TestStack::start_with(StackOptions::short_months(MONTH_SECONDS, &[1, 3, 7])).await;
    let product = product_visited_every(&stack, "Pickup model", 1).await;
    let on_shelf = stock(&stack, product).await;
    let contract = rent(&stack, product, 6, APPROVED).await;
    deliver(&stack, &contract).await;
    let planned = planned(&stack, &contract, 5).await;
    assert_eq!(stock(&stack, product).await, on_shelf - 1, "the unit is out");

    let terminate = "mutation($id: ID!) { terminateRental(id: $id) { status } }";
    let (_, response) = stack.graphql(Some(&contract.customer), terminate, json!({ "id": contract.rental_id })).await;
    assert_eq!(response["data"]["terminateRental"]["status"], "TERMINATED", "{response}");
    let ended = wait_for(&stack, &contract, "the pickup", |rental| !visits_of(rental, "PICKUP").is_empty()).await;
    assert!(visits_of(&ended, "CARE").iter().all(|visit| visit["status"] == "CANCELLED"), "{:?}", visits(&ended));
    let pickups = visits_of(&ended, "PICKUP");
    assert_eq!(pickups.len(), 1, "exactly one pickup");
    let pickup = id(pickups[0]);

    // A cancelled care visit cannot be done.
    let cancelled = id(visits_of(&planned, "CARE")[0]);
    let (_, response) =
        stack.graphql(Some(&stack.operator_token()), COMPLETE, json!({ "id": cancelled, "notes": null })).await;
    assert_eq!(error_codes(&response), ["CONFLICT"], "{response}");
    assert!(first_message(&response).contains("CANCELLED"), "{response}");

    // The customer was not home: the operator moves the pickup.
    let (_, started) = stack.graphql(Some(&stack.operator_token()), START, json!({ "id": pickup })).await;
    assert_eq!(started["data"]["startVisit"]["status"], "IN_PROGRESS", "{started}");
    let tomorrow = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (_, response) =
        stack.graphql(Some(&contract.customer), RESCHEDULE, json!({ "id": pickup, "at": tomorrow })).await;
    assert_eq!(error_codes(&response), ["FORBIDDEN"], "customers do not move pickups: {response}");
    let (_, moved) =
        stack.graphql(Some(&stack.operator_token()), RESCHEDULE, json!({ "id": pickup, "at": tomorrow })).await;
    assert_eq!(moved["data"]["rescheduleVisit"]["status"], "SCHEDULED", "{moved}");
    assert_eq!(stock(&stack, product).await, on_shelf - 1, "the unit is out until the pickup is done");

    let (_, done) =
        stack.graphql(Some(&stack.operator_token()), COMPLETE, json!({ "id": pickup, "notes": "collected" })).await;
    assert_eq!(done["data"]["completeVisit"]["status"], "DONE", "{done}");
    let (_, again) =
        stack.graphql(Some(&stack.operator_token()), COMPLETE, json!({ "id": pickup, "notes": "collected" })).await;
    assert_eq!(again, done);
    // RETURNED comes from inventory, the visit's steps from delivery: the history learns
    // them from two services' events, in either order.
    let steps = ["PICKUP_REQUESTED", "PICKUP_SCHEDULED", "VISIT_RESCHEDULED", "PICKED_UP", "RETURNED"];
    let home = wait_for(&stack, &contract, "the unit back in stock", |rental| {
        steps.iter().all(|kind| kinds(rental).contains(kind))
    })
    .await;
    for kind in steps {
        assert!(kinds(&home).contains(&kind), "{kind} in {:?}", kinds(&home));
    }
    assert_eq!(stock(&stack, product).await, on_shelf, "the unit is back, once");
    stack.stop().await;
}

#[tokio::test]
async fn a_customer_moves_their_own_upcoming_care_visit_within_fourteen_days() {
    // Months of 30 s: the customer's ±14 days are 14 s, the first visit 30 s away.
    let stack = TestStack::start_with(StackOptions::short_months(30, &[1, 3, 7])).await;
    let product = product_visited_every(&stack, "Moving model", 1).await;
    let contract = rent(&stack, product, 3, APPROVED).await;
    deliver(&stack, &contract).await;
    let rental = planned(&stack, &contract, 2).await;
    let visit = visits_of(&rental, "CARE")[0].clone();
    let planned_for = time(&visit["plannedFor"]);
    let day = Calendar::short(30).day();

    let within = (planned_for + day * 10).to_rfc3339();
    let beyond = (planned_for + day * 15).to_rfc3339();
    let (_, response) =
        stack.graphql(Some(&contract.customer), RESCHEDULE, json!({ "id": visit["id"], "at": beyond })).await;
    assert_eq!(error_codes(&response), ["BAD_USER_INPUT"], "{response}");
    assert!(first_message(&response).contains("14 days"), "{response}");
    let past = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    let (_, response) =
        stack.graphql(Some(&contract.customer), RESCHEDULE, json!({ "id": visit["id"], "at": past })).await;
    assert_eq!(error_codes(&response), ["BAD_USER_INPUT"], "{response}");
    let stranger = stack.customer_token(Uuid::now_v7());
    let (_, response) = stack.graphql(Some(&stranger), RESCHEDULE, json!({ "id": visit["id"], "at": within })).await;
    assert_eq!(error_codes(&response), ["NOT_FOUND"], "{response}");

    let (_, moved) =
        stack.graphql(Some(&contract.customer), RESCHEDULE, json!({ "id": visit["id"], "at": within })).await;
    assert_eq!(time(&moved["data"]["rescheduleVisit"]["scheduledFor"]), time(&json!(within)), "{moved}");
    let rental = read(&stack, &contract).await;
    let again = visits_of(&rental, "CARE")[0].clone();
    assert_eq!(again["plannedFor"], visit["plannedFor"], "the plan's date stays");
    stack.stop().await;
}

#[tokio::test]
async fn an_extension_plans_the_care_visits_of_its_months_and_the_interval_is_checked() {
    let stack = TestStack::start_with(StackOptions::short_months(30, &[1, 3, 7])).await;
    let product = product_visited_every(&stack, "Longer model", 1).await;
    let contract = rent(&stack, product, 2, APPROVED).await;
    deliver(&stack, &contract).await;
    planned(&stack, &contract, 1).await;
    let extend = "mutation($id: ID!) { extendRental(id: $id, months: 2) { months } }";
    let (_, response) = stack.graphql(Some(&contract.customer), extend, json!({ "id": contract.rental_id })).await;
    assert_eq!(response["data"]["extendRental"]["months"], 4, "{response}");
    let longer = planned(&stack, &contract, 3).await;
    let numbers: Vec<i64> = visits_of(&longer, "CARE").iter().filter_map(|visit| visit["number"].as_i64()).collect();
    assert_eq!(numbers, [1, 2, 3]);

    let set = "mutation($id: ID!, $months: Int!) { setCareInterval(productId: $id, careIntervalMonths: $months) { careIntervalMonths } }";
    for months in [0, 25] {
        let (_, response) =
            stack.graphql(Some(&stack.operator_token()), set, json!({ "id": product, "months": months })).await;
        assert_eq!(error_codes(&response), ["BAD_USER_INPUT"], "{months}: {response}");
    }
    let (_, response) = stack.graphql(Some(&contract.customer), set, json!({ "id": product, "months": 6 })).await;
    assert_eq!(error_codes(&response), ["FORBIDDEN"], "{response}");
    let other = create_product(&stack, "Default care model", 10_000, 1).await;
    let read_interval = "query($id: ID!) { product(id: $id) { careIntervalMonths } }";
    let (_, response) = stack.graphql(Some(&contract.customer), read_interval, json!({ "id": other })).await;
    assert_eq!(response["data"]["product"]["careIntervalMonths"], 4, "the default: {response}");
    stack.stop().await;
}
