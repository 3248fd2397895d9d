//! The contract, through the router, with months of a few seconds: each later month
//! charged once from the card on file, dunning, a new card, paying and voiding an
//! invoice, extension, early termination and its fee, completion, the live activity,
//! and every refusal in words.

use serde_json::{Value, json};
use subgraph_kit::clock::Calendar;
use uuid::Uuid;

use crate::support::contract::{
    APPROVED, DECLINES_LATER, deliver, invoice_of, kinds, read, rent, time, visits, wait_for,
};
use crate::support::fixtures::rentable_product;
use crate::support::{StackOptions, TestStack, error_codes, first_message};
use harness::live_clients::WsClient;

/// Months of six seconds: a day is 200 ms.
const MONTH_SECONDS: u32 = 6;

fn short_stack(retry_days: &[u32]) -> StackOptions {
    StackOptions::short_months(MONTH_SECONDS, retry_days)
}

#[tokio::test]
async fn each_later_month_is_charged_once_from_the_card_on_file_and_the_term_completes() {
    let stack = TestStack::start_with(short_stack(&[1, 3, 7])).await;
    let product = rentable_product(&stack, "Billing model", 20_000, 3).await;
    let contract = rent(&stack, product, 2, APPROVED).await;

    let accepted = read(&stack, &contract).await;
    assert_eq!(accepted["term"], Value::Null, "the term starts at delivery: {accepted:#}");
    assert_eq!(
        accepted["paymentMethod"],
        json!({ "brand": "VISA", "last4": "4242", "expMonth": 12, "expYear": accepted["paymentMethod"]["expYear"] })
    );
    let first = invoice_of(&accepted, 1).expect("the first month's invoice");
    assert_eq!((first["status"].as_str(), first["amount"].as_i64()), (Some("PAID"), Some(20_000)), "{first}");

    let active = deliver(&stack, &contract).await;
    let starts = time(&active["term"]["startsOn"]);
    let calendar = Calendar::short(MONTH_SECONDS);
    assert_eq!(time(&active["term"]["endsOn"]), calendar.months_after(starts, 2), "{active:#}");
    assert_eq!(time(&active["term"]["nextChargeOn"]), calendar.months_after(starts, 1));
    assert_eq!(active["term"]["periodsPaid"], 1);
    let dated = wait_for(&stack, &contract, "the first invoice's dates", |rental| {
        !invoice_of(rental, 1).expect("first")["periodStart"].is_null()
    })
    .await;
    assert_eq!(time(&invoice_of(&dated, 1).expect("first")["periodEnd"]), calendar.months_after(starts, 1));

    let completed = wait_for(&stack, &contract, "completion", |rental| rental["status"] == "COMPLETED").await;
    let second = invoice_of(&completed, 2).expect("the second month's invoice");
    assert_eq!((second["status"].as_str(), second["attempts"].as_i64()), (Some("PAID"), Some(1)), "{second}");
    assert_eq!(time(&second["periodStart"]), calendar.months_after(starts, 1));
    assert_eq!(completed["invoices"].as_array().expect("invoices").len(), 2, "no third month: {completed:#}");
    assert_eq!(completed["term"]["periodsPaid"], 2);
    assert_eq!(completed["term"]["nextChargeOn"], Value::Null);
    assert_eq!(completed["endReason"], "COMPLETED");
    assert_eq!(time(&completed["endedAt"]), calendar.months_after(starts, 2), "it ends when its last month ends");
    let charged: Vec<&Value> =
        completed["timeline"].as_array().expect("timeline").iter().filter(|step| step["kind"] == "CHARGED").collect();
    assert_eq!(charged.len(), 1, "{completed:#}");
    assert_eq!(charged[0]["period"], 2);
    assert_eq!(charged[0]["invoice"]["id"], second["id"]);
    for kind in ["COMPLETED", "PICKUP_REQUESTED"] {
        assert!(kinds(&completed).contains(&kind), "{kind} in {:?}", kinds(&completed));
    }
    let picked = wait_for(&stack, &contract, "the pickup", |rental| {
        visits(rental).iter().any(|(kind, status)| kind == "PICKUP" && status == "SCHEDULED")
    })
    .await;
    assert_eq!(visits(&picked).iter().filter(|(kind, _)| kind == "PICKUP").count(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn a_declined_month_makes_the_rental_past_due_until_a_new_card_pays_it() {
    // Retries 4, 8 and 12 s after the first decline: time to put a new card on file.
    let stack = TestStack::start_with(short_stack(&[20, 40, 60])).await;
    let product = rentable_product(&stack, "Dunning model", 30_000, 3).await;
    let contract = rent(&stack, product, 3, DECLINES_LATER).await;
    deliver(&stack, &contract).await;

    let past_due = wait_for(&stack, &contract, "PAST_DUE", |rental| rental["status"] == "PAST_DUE").await;
    let failed = invoice_of(&past_due, 2).expect("the second month's invoice");
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(failed["failureReason"].as_str().is_some_and(|reason| reason.contains("card on file")), "{failed}");
    assert!(!failed["nextAttemptAt"].is_null(), "it is retried: {failed}");
    for kind in ["PAYMENT_FAILED", "PAST_DUE"] {
        assert!(kinds(&past_due).contains(&kind), "{kind} in {:?}", kinds(&past_due));
    }

    let update = "mutation($id: ID!, $card: String!) { updatePaymentMethod(rentalId: $id, cardNumber: $card, expMonth: 12, expYear: 2030) { brand last4 expMonth expYear } }";
    let variables = json!({ "id": contract.rental_id, "card": APPROVED });
    let (_, response) = stack.graphql(Some(&contract.customer), update, variables.clone()).await;
    assert_eq!(
        response["data"]["updatePaymentMethod"],
        json!({ "brand": "VISA", "last4": "4242", "expMonth": 12, "expYear": 2030 }),
        "{response}"
    );
    // The past-due month was charged to the new card at once, in that request.
    let recovered = read(&stack, &contract).await;
    let paid = invoice_of(&recovered, 2).expect("second");
    assert_eq!(paid["status"], "PAID", "{recovered:#}");
    assert!(paid["attempts"].as_i64().expect("attempts") >= 2);
    // ACTIVE comes with the month's payment, CARD_UPDATED with the card's own event: the
    // history learns each from its own event, in either order.
    let active = wait_for(&stack, &contract, "ACTIVE again, the new card in the history", |rental| {
        rental["status"] == "ACTIVE" && kinds(rental).contains(&"CARD_UPDATED")
    })
    .await;
    assert!(kinds(&active).contains(&"CARD_UPDATED"), "{:?}", kinds(&active));

    let third = wait_for(&stack, &contract, "the third month", |rental| {
        invoice_of(rental, 3).is_some_and(|invoice| invoice["status"] == "PAID")
    })
    .await;
    assert_eq!(invoice_of(&third, 3).expect("third")["attempts"], 1, "the new card pays at once");

    // Someone else's rental, an operator, an expired card, a bad number: refused, nothing changes.
    let stranger = stack.customer_token(Uuid::now_v7());
    let (_, response) = stack.graphql(Some(&stranger), update, variables.clone()).await;
    assert_eq!(error_codes(&response), ["NOT_FOUND"], "{response}");
    let (_, response) = stack.graphql(Some(&stack.operator_token()), update, variables).await;
    assert_eq!(error_codes(&response), ["FORBIDDEN"], "{response}");
    let expired = "mutation($id: ID!) { updatePaymentMethod(rentalId: $id, cardNumber: \"4242424242424242\", expMonth: 1, expYear: 2026) { last4 } }";
    let (_, response) = stack.graphql(Some(&contract.customer), expired, json!({ "id": contract.rental_id })).await;
    assert_eq!(error_codes(&response), ["BAD_USER_INPUT"], "{response}");
    assert!(first_message(&response).contains("expired"), "{response}");
    let bad = "mutation($id: ID!) { updatePaymentMethod(rentalId: $id, cardNumber: \"4242424242424241\", expMonth: 12, expYear: 2030) { last4 } }";
    let (_, response) = stack.graphql(Some(&contract.customer), bad, json!({ "id": contract.rental_id })).await;
    assert_eq!(error_codes(&response), ["BAD_USER_INPUT"], "{response}");
    assert_eq!(read(&stack, &contract).await["paymentMethod"]["last4"], "4242", "the refusals changed nothing");
    stack.stop().await;
}

#[tokio::test]
async fn when_the_last_retry_fails_the_rental_ends_for_non_payment_and_no_later_month_is_charged() {
    let stack = TestStack::start_with(short_stack(&[1, 2])).await;
    let product = rentable_product(&stack, "Non-payment model", 25_000, 3).await;
    let contract = rent(&stack, product, 3, DECLINES_LATER).await;
    let active = deliver(&stack, &contract).await;

    let ended = wait_for(&stack, &contract, "termination", |rental| rental["status"] == "TERMINATED").await;
    assert_eq!(ended["endReason"], "TERMINATED_FOR_NON_PAYMENT", "{ended:#}");
    assert_eq!(ended["terminationFee"], Value::Null, "no fee for non-payment");
    let second = invoice_of(&ended, 2).expect("second");
    assert_eq!((second["status"].as_str(), second["attempts"].as_i64()), (Some("FAILED"), Some(3)), "{second}");
    assert_eq!(second["nextAttemptAt"], Value::Null, "no more automatic attempts");
    assert_eq!(kinds(&ended).iter().filter(|kind| **kind == "PAYMENT_FAILED").count(), 3);

    // Past the start of the third month, nothing more was invoiced.
    let third_month = Calendar::short(MONTH_SECONDS).months_after(time(&active["term"]["startsOn"]), 2);
    let wait = (third_month - chrono::Utc::now()).to_std().unwrap_or_default() + std::time::Duration::from_secs(2);
    tokio::time::sleep(wait).await;
    let later = read(&stack, &contract).await;
    assert!(invoice_of(&later, 3).is_none(), "a month after the end was invoiced: {later:#}");
    assert!(visits(&later).contains(&("PICKUP".into(), "SCHEDULED".into())), "{later:#}");
    stack.stop().await;
}

#[tokio::test]
async fn a_customer_pays_a_failed_invoice_and_an_operator_voids_one() {
    let stack = TestStack::start_with(short_stack(&[100])).await;
    let product = rentable_product(&stack, "Accounts model", 15_000, 3).await;
    // Two months: the second is the only one to fail.
    let contract = rent(&stack, product, 2, DECLINES_LATER).await;
    deliver(&stack, &contract).await;
    let past_due = wait_for(&stack, &contract, "PAST_DUE", |rental| rental["status"] == "PAST_DUE").await;
    let failed = invoice_of(&past_due, 2).expect("second").clone();
    let id = failed["id"].as_str().expect("id").to_owned();

    let pay = "mutation($id: ID!) { payInvoice(id: $id) { id status attempts failureReason } }";
    let (_, response) = stack.graphql(Some(&contract.customer), pay, json!({ "id": id })).await;
    let paid_now = &response["data"]["payInvoice"];
    assert_eq!(paid_now["status"], "FAILED", "the same card declines again: {response}");
    assert_eq!(paid_now["attempts"], failed["attempts"].as_i64().expect("attempts") + 1);

    // The accounts team: every failed invoice, then a write-off.
    let failing = "query { invoices(status: FAILED, first: 50) { edges { node { id status rental { id } } } } }";
    let (_, response) = stack.graphql(Some(&stack.operator_token()), failing, json!({})).await;
    let ids: Vec<&str> = response["data"]["invoices"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|edge| edge["node"]["id"].as_str())
        .collect();
    assert!(ids.contains(&id.as_str()), "{response}");
    let (_, response) = stack.graphql(Some(&contract.customer), failing, json!({})).await;
    assert_eq!(error_codes(&response), ["FORBIDDEN"], "{response}");

    let void = "mutation($id: ID!) { voidInvoice(id: $id) { id status voidedAt } }";
    let (_, response) = stack.graphql(Some(&contract.customer), void, json!({ "id": id })).await;
    assert_eq!(error_codes(&response), ["FORBIDDEN"], "{response}");
    let (_, response) = stack.graphql(Some(&stack.operator_token()), void, json!({ "id": id })).await;
    assert_eq!(response["data"]["voidInvoice"]["status"], "VOID", "{response}");
    let (_, again) = stack.graphql(Some(&stack.operator_token()), void, json!({ "id": id })).await;
    assert_eq!(again["data"]["voidInvoice"], response["data"]["voidInvoice"], "voiding twice changes nothing");
    let active = wait_for(&stack, &contract, "ACTIVE after the write-off", |rental| rental["status"] == "ACTIVE").await;
    assert!(kinds(&active).contains(&"INVOICE_VOIDED"), "{:?}", kinds(&active));

    let (_, response) = stack.graphql(Some(&contract.customer), pay, json!({ "id": id })).await;
    assert_eq!(error_codes(&response), ["CONFLICT"], "{response}");
    assert!(first_message(&response).contains("VOID"), "{response}");
    let first_invoice = invoice_of(&active, 1).expect("first")["id"].clone();
    let (_, response) = stack.graphql(Some(&contract.customer), pay, json!({ "id": first_invoice })).await;
    assert_eq!(error_codes(&response), ["CONFLICT"], "paying a paid invoice: {response}");
    let stranger = stack.customer_token(Uuid::now_v7());
    let (_, response) = stack.graphql(Some(&stranger), pay, json!({ "id": first_invoice })).await;
    assert_eq!(error_codes(&response), ["NOT_FOUND"], "{response}");
    stack.stop().await;
}

#[tokio::test]
async fn an_active_rental_is_extended_by_its_customer_and_refusals_change_nothing() {
    // Months of 30 s: time to extend within the term.
    let stack = TestStack::start_with(StackOptions::short_months(30, &[1, 3, 7])).await;
    let product = rentable_product(&stack, "Extension model", 18_000, 3).await;
    let contract = rent(&stack, product, 1, APPROVED).await;
    let extend = "mutation($id: ID!, $months: Int!) { extendRental(id: $id, months: $months) { id months status term { endsOn nextChargeOn } } }";

    let (_, response) =
        stack.graphql(Some(&contract.customer), extend, json!({ "id": contract.rental_id, "months": 2 })).await;
    assert_eq!(error_codes(&response), ["CONFLICT"], "before delivery: {response}");

    let active = deliver(&stack, &contract).await;
    assert_eq!(active["term"]["nextChargeOn"], Value::Null, "a one-month term has no later month");
    let calendar = Calendar::short(30);
    let starts = time(&active["term"]["startsOn"]);
    for (months, code) in [(0, "BAD_USER_INPUT"), (61, "BAD_USER_INPUT")] {
        let (_, response) = stack
            .graphql(Some(&contract.customer), extend, json!({ "id": contract.rental_id, "months": months }))
            .await;
        assert_eq!(error_codes(&response), [code], "{months}: {response}");
    }
    let stranger = stack.customer_token(Uuid::now_v7());
    let (_, response) = stack.graphql(Some(&stranger), extend, json!({ "id": contract.rental_id, "months": 2 })).await;
    assert_eq!(error_codes(&response), ["NOT_FOUND"], "{response}");
    let (_, response) =
        stack.graphql(Some(&stack.operator_token()), extend, json!({ "id": contract.rental_id, "months": 2 })).await;
    assert_eq!(error_codes(&response), ["FORBIDDEN"], "{response}");
    assert_eq!(read(&stack, &contract).await["months"], 1, "the refusals changed nothing");

    let (_, response) =
        stack.graphql(Some(&contract.customer), extend, json!({ "id": contract.rental_id, "months": 2 })).await;
    let extended = &response["data"]["extendRental"];
    assert_eq!(extended["months"], 3, "{response}");
    assert_eq!(time(&extended["term"]["endsOn"]), calendar.months_after(starts, 3));
    assert_eq!(time(&extended["term"]["nextChargeOn"]), calendar.months_after(starts, 1), "billing goes on");
    let rental = read(&stack, &contract).await;
    assert!(kinds(&rental).contains(&"EXTENDED"), "{:?}", kinds(&rental));
    stack.stop().await;
}

#[tokio::test]
async fn terminating_early_charges_the_fee_for_the_days_left_and_ends_billing() {
    let stack = TestStack::start_with(short_stack(&[1, 3, 7])).await;
    let product = rentable_product(&stack, "Termination model", 30_000, 3).await;
    let contract = rent(&stack, product, 12, APPROVED).await;
    let terminate = "mutation($id: ID!) { terminateRental(id: $id) { id status endReason endedAt terminationFee term { endsOn } } }";

    let (_, response) = stack.graphql(Some(&contract.customer), terminate, json!({ "id": contract.rental_id })).await;
    assert_eq!(error_codes(&response), ["CONFLICT"], "before delivery: {response}");
    assert!(first_message(&response).contains("cancelRental"), "{response}");
    deliver(&stack, &contract).await;
    let stranger = stack.customer_token(Uuid::now_v7());
    let (_, response) = stack.graphql(Some(&stranger), terminate, json!({ "id": contract.rental_id })).await;
    assert_eq!(error_codes(&response), ["NOT_FOUND"], "{response}");

    let (_, response) = stack.graphql(Some(&contract.customer), terminate, json!({ "id": contract.rental_id })).await;
    let terminated = response["data"]["terminateRental"].clone();
    assert_eq!(terminated["status"], "TERMINATED", "{response}");
    assert_eq!(terminated["endReason"], "TERMINATED_BY_CUSTOMER");
    // 60 % of the daily fee (30,000 / 30) for each whole day left, rounded down.
    let days_left = Calendar::short(MONTH_SECONDS)
        .whole_days_between(time(&terminated["endedAt"]), time(&terminated["term"]["endsOn"]));
    let fee = 30_000 * 60 * days_left / (100 * 30);
    assert!(days_left > 300, "almost the whole year is left: {days_left}");
    assert_eq!(terminated["terminationFee"].as_i64(), Some(fee), "{terminated}");
    let (_, again) = stack.graphql(Some(&contract.customer), terminate, json!({ "id": contract.rental_id })).await;
    assert_eq!(again["data"]["terminateRental"], terminated, "terminating twice changes nothing");

    // The invoice is payment's at once; the history's CHARGED follows from its event.
    let charged = wait_for(&stack, &contract, "the fee charged, and in the history", |rental| {
        rental["invoices"].as_array().is_some_and(|invoices| {
            invoices.iter().any(|invoice| invoice["kind"] == "TERMINATION_FEE" && invoice["status"] == "PAID")
        }) && kinds(rental).contains(&"CHARGED")
    })
    .await;
    let fee_invoice = charged["invoices"]
        .as_array()
        .expect("invoices")
        .iter()
        .find(|invoice| invoice["kind"] == "TERMINATION_FEE")
        .expect("fee");
    assert_eq!(fee_invoice["amount"].as_i64(), Some(fee));
    assert_eq!(fee_invoice["period"], Value::Null);
    for kind in ["TERMINATED", "PICKUP_REQUESTED", "CHARGED"] {
        assert!(kinds(&charged).contains(&kind), "{kind} in {:?}", kinds(&charged));
    }
    // The second month would have started by now: it was never invoiced.
    tokio::time::sleep(std::time::Duration::from_secs(u64::from(MONTH_SECONDS) + 2)).await;
    let later = read(&stack, &contract).await;
    assert!(invoice_of(&later, 2).is_none(), "{later:#}");
    stack.stop().await;
}

#[tokio::test]
async fn the_rental_activity_streams_every_change_with_other_subgraphs_fields() {
    let stack = TestStack::start_with(short_stack(&[1, 3, 7])).await;
    let product = rentable_product(&stack, "Activity model", 22_000, 3).await;
    let contract = rent(&stack, product, 2, APPROVED).await;
    let activity = "subscription($id: ID!) { rentalActivity(rentalId: $id) { kind at period invoice { id amount status } rental { id status product { id name } } } }";

    let stranger = stack.customer_token(Uuid::now_v7());
    let mut refused = WsClient::connect(&stack.router.as_ref().expect("router").websocket_url(), Some(&stranger)).await;
    refused.subscribe("theirs", activity, json!({ "id": contract.rental_id })).await;
    let answer = refused.next_message().await.expect("an answer");
    assert_eq!(answer["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND", "{answer}");
    refused.close().await;

    let mut ws =
        WsClient::connect(&stack.router.as_ref().expect("router").websocket_url(), Some(&contract.customer)).await;
    ws.subscribe("activity", activity, json!({ "id": contract.rental_id })).await;
    let first = ws.next_message().await.expect("the current state");
    assert_eq!(first["type"], "next", "{first}");
    assert_eq!(first["payload"]["data"]["rentalActivity"]["rental"]["status"], "ACCEPTED", "{first}");
    assert_eq!(first["payload"]["data"]["rentalActivity"]["rental"]["product"]["name"], "Activity model");

    deliver(&stack, &contract).await;
    let mut seen = Vec::new();
    let mut charged = None;
    while !seen.contains(&"COMPLETED".to_owned()) {
        let message = ws.next_message().await.expect("an activity");
        assert_eq!(message["type"], "next", "{message}");
        let event = message["payload"]["data"]["rentalActivity"].clone();
        assert_eq!(event["rental"]["product"]["name"], "Activity model", "{message}");
        let kind = event["kind"].as_str().expect("kind").to_owned();
        if kind == "CHARGED" {
            charged = Some(event.clone());
        }
        seen.push(kind);
    }
    let charged = charged.expect("the second month's charge streamed");
    assert_eq!(charged["period"], 2);
    assert_eq!(charged["invoice"]["amount"], 22_000, "{charged}");
    assert_eq!(charged["invoice"]["status"], "PAID");
    for kind in ["DELIVERED", "CHARGED", "COMPLETED"] {
        assert!(seen.contains(&kind.to_owned()), "{kind} in {seen:?}");
    }
    assert_eq!(seen.iter().filter(|kind| *kind == "CHARGED").count(), 1, "each step once: {seen:?}");
    ws.close().await;
    stack.stop().await;
}

#[tokio::test]
async fn the_history_after_a_contract_equals_its_rebuild_from_every_services_records() {
    let stack = TestStack::start_with(short_stack(&[1])).await;
    let product = rentable_product(&stack, "Rebuild model", 10_000, 3).await;
    let paying = rent(&stack, product, 2, APPROVED).await;
    let declining = rent(&stack, product, 3, DECLINES_LATER).await;
    deliver(&stack, &paying).await;
    deliver(&stack, &declining).await;
    let extend = "mutation($id: ID!) { extendRental(id: $id, months: 1) { id } }";
    let (_, response) = stack.graphql(Some(&paying.customer), extend, json!({ "id": paying.rental_id })).await;
    assert_eq!(response.get("errors"), None, "{response}");
    wait_for(&stack, &paying, "completion", |rental| rental["status"] == "COMPLETED").await;
    wait_for(&stack, &declining, "termination", |rental| rental["status"] == "TERMINATED").await;

    let history = "query { myRentals(first: 10) { edges { node { id status timeline { kind at period invoice { id } } term { startsOn endsOn periodsPaid nextChargeOn } endReason } } } }";
    let before_paying = stack.graphql(Some(&paying.customer), history, json!({})).await.1;
    let before_declining = stack.graphql(Some(&declining.customer), history, json!({})).await.1;
    let projected = rental::service::rebuild::rebuild(
        &stack.subgraphs.rental.database,
        &stack.subgraphs.payment.database,
        &stack.subgraphs.delivery.database,
        &stack.subgraphs.inventory.database,
    )
    .await
    .expect("rebuilt");
    assert_eq!(projected, 2);
    assert_eq!(stack.graphql(Some(&paying.customer), history, json!({})).await.1, before_paying);
    assert_eq!(stack.graphql(Some(&declining.customer), history, json!({})).await.1, before_declining);
    stack.stop().await;
}
