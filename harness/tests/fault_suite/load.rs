//! The bounded load of one run, through the router: customers renting (unique keys,
//! same-key retries, declined cards, cancellations) and then living with their contracts
//! (extending some, ending some early, and, on a card that declines the later months,
//! putting a new card on file or paying the failed invoice at once while dunning
//! retries it); operators starting and completing deliveries and working the visit
//! queue (care visits and pickups, some pickups moved because nobody was home),
//! repeating some steps; and an operator restocking. Every answer is recorded by its
//! kind.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use subgraph_kit::{Identity, TokenIssuer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use harness::workload::{APPROVED, DECLINED, DECLINES_LATER};

/// How much load a run offers.
#[derive(Debug, Clone, Copy)]
pub struct Intensity {
    pub customers: usize,
    pub operators: usize,
    /// Pause between one customer's rents.
    pub rent_pause: Duration,
}

/// What one rent asked and what it got.
#[derive(Debug, Clone)]
pub struct RentRecord {
    pub customer: Uuid,
    pub product: Uuid,
    pub key: String,
    pub card: &'static str,
    /// `ok`, an error code, or `transport`.
    pub answer: String,
    pub rental_id: Option<String>,
    pub finished_at: Instant,
}

#[derive(Default)]
pub struct Record {
    /// operation → answer kind → count.
    pub answers: BTreeMap<String, BTreeMap<String, u64>>,
    pub rents: Vec<RentRecord>,
    /// Units whose restock the router confirmed, per product.
    pub restocked: BTreeMap<Uuid, i64>,
    /// Broken promises seen by the clients themselves (a retry under the same key
    /// answered with another rental, say).
    pub violations: Vec<String>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    issuer: TokenIssuer,
    pub record: Arc<Mutex<Record>>,
}

/// The kind of an answer: `ok`, the first error's code, or how the transport failed.
fn kind_of(answer: &Result<Value, String>) -> String {
    match answer {
        Err(transport) => transport.clone(),
        Ok(body) => match body["errors"][0]["extensions"]["code"].as_str() {
            Some(code) => code.to_owned(),
            None if body.get("errors").is_some() => "ERROR_WITHOUT_CODE".to_owned(),
            None => "ok".to_owned(),
        },
    }
}

impl Client {
    pub fn new(url: String, issuer: &TokenIssuer) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client");
        Self { http, url, issuer: issuer.clone(), record: Arc::default() }
    }

    pub fn token(&self, identity: &Identity) -> String {
        self.issuer.issue(identity, Duration::from_secs(3600))
    }

    /// Runs one operation and records its answer under `operation`.
    pub async fn call(&self, operation: &str, token: &str, query: &str, variables: Value) -> Result<Value, String> {
        let sent =
            self.http.post(&self.url).bearer_auth(token).json(&json!({ "query": query, "variables": variables }));
        let answer = match sent.send().await {
            Err(error) if error.is_timeout() => Err("timeout".to_owned()),
            Err(_) => Err("transport".to_owned()),
            Ok(response) => match response.json::<Value>().await {
                Ok(body) => Ok(body),
                Err(_) => Err("unreadable answer".to_owned()),
            },
        };
        let kind = kind_of(&answer);
        let mut record = self.record.lock().expect("record");
        *record.answers.entry(operation.to_owned()).or_default().entry(kind).or_default() += 1;
        answer
    }

    fn violation(&self, text: String) {
        self.record.lock().expect("record").violations.push(text);
    }
}

const RENT: &str = "mutation($input: RentInput!) { rent(input: $input) { id status } }";

/// Short contracts: with the suite's month of `MONTH_SECONDS` (4 s), a rental delivered
/// during the run has its second month charged and its term completed (and a pickup
/// scheduled) within seconds, under whatever fault the run injects.
pub const MONTHS: i32 = 2;

fn rent_input(product: Uuid, card: &str, key: &str) -> Value {
    json!({ "input": { "productId": product, "months": MONTHS, "deliveryAddress": "12 Teheran-ro, Gangnam-gu, Seoul",
                       "cardNumber": card, "idempotencyKey": key } })
}

/// What a customer does with a contract once it runs, chosen when it is rented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Extend it by a month while it is active.
    Extend,
    /// End it early while it is active (the termination fee is charged).
    Terminate,
    /// Once past due, put a card that approves on file: its retry of the failed month
    /// races dunning's own retries.
    NewCard,
    /// Once past due, pay the failed month at once (the card still declines).
    PayNow,
}

/// The card of a customer's `round`th rent: one in six declined at rent, one in six
/// declined for every later month (dunning), the rest approved.
fn card_for(round: usize) -> &'static str {
    match round % 6 {
        0 => DECLINED,
        3 => DECLINES_LATER,
        _ => APPROVED,
    }
}

/// What happens to the contract of a customer's `round`th rent besides running its
/// course (completing, or ending for non-payment on [`DECLINES_LATER`]).
fn plan_for(round: usize, card: &str) -> Option<Plan> {
    if card == DECLINES_LATER {
        return match (round / 6) % 3 {
            0 => Some(Plan::NewCard),
            1 => Some(Plan::PayNow),
            _ => None,
        };
    }
    match round % 4 {
        1 => Some(Plan::Extend),
        2 => Some(Plan::Terminate),
        _ => None,
    }
}

const MY_RUNNING_CONTRACTS: &str = "query { \
    active: myRentals(status: ACTIVE, first: 50) { edges { node { id status } } } \
    pastDue: myRentals(status: PAST_DUE, first: 50) { edges { node { id status invoices { id status } } } } }";

/// Carries out the plans whose moment has come: reads the customer's running contracts
/// and acts on those that are in the status their plan waits for. A plan is carried out
/// once; a contract that has moved on meanwhile answers CONFLICT, which is recorded.
async fn tend(client: &Client, token: &str, plans: &mut HashMap<String, Plan>) {
    let Ok(page) = client.call("myRentals (running)", token, MY_RUNNING_CONTRACTS, json!({})).await else {
        return;
    };
    let nodes: Vec<Value> = ["active", "pastDue"]
        .iter()
        .filter_map(|list| page["data"][list]["edges"].as_array())
        .flatten()
        .map(|edge| edge["node"].clone())
        .collect();
    for node in nodes {
        let Some(id) = node["id"].as_str() else { continue };
        let Some(plan) = plans.get(id).copied() else { continue };
        match (plan, node["status"].as_str().unwrap_or_default()) {
            (Plan::Extend, "ACTIVE") => {
                let extend = "mutation($id: ID!) { extendRental(id: $id, months: 1) { id status months } }";
                let answer = client.call("extendRental", token, extend, json!({ "id": id })).await;
                if let Ok(body) = &answer
                    && body.get("errors").is_none()
                    && (body["data"]["extendRental"]["status"] != "ACTIVE"
                        || body["data"]["extendRental"]["months"] != MONTHS + 1)
                {
                    client.violation(format!("extendRental({id}, 1) answered {body}"));
                }
            }
            (Plan::Terminate, "ACTIVE") => {
                let terminate = "mutation($id: ID!) { terminateRental(id: $id) { id status } }";
                let answer = client.call("terminateRental", token, terminate, json!({ "id": id })).await;
                if let Ok(body) = &answer
                    && body.get("errors").is_none()
                    && body["data"]["terminateRental"]["status"] != "TERMINATED"
                {
                    client.violation(format!("terminateRental({id}) answered without terminating: {body}"));
                }
            }
            (Plan::NewCard, "PAST_DUE") => {
                let update = "mutation($id: ID!, $card: String!) { updatePaymentMethod(rentalId: $id, \
                              cardNumber: $card, expMonth: 12, expYear: 2030) { last4 } }";
                let answer =
                    client.call("updatePaymentMethod", token, update, json!({ "id": id, "card": APPROVED })).await;
                if let Ok(body) = &answer
                    && body.get("errors").is_none()
                    && body["data"]["updatePaymentMethod"]["last4"] != "4242"
                {
                    client.violation(format!("updatePaymentMethod({id}) answered another card: {body}"));
                }
            }
            (Plan::PayNow, "PAST_DUE") => {
                let failed = node["invoices"]
                    .as_array()
                    .and_then(|invoices| invoices.iter().find(|invoice| invoice["status"] == "FAILED"))
                    .and_then(|invoice| invoice["id"].as_str());
                let Some(invoice) = failed else { continue };
                let pay = "mutation($id: ID!) { payInvoice(id: $id) { id status } }";
                let answer = client.call("payInvoice", token, pay, json!({ "id": invoice })).await;
                if let Ok(body) = &answer
                    && body["data"]["payInvoice"]["status"] == "PAID"
                {
                    client.violation(format!("invoice {invoice} was paid by a card that declines every month: {body}"));
                }
            }
            _ => continue,
        }
        plans.remove(id);
    }
}

/// One customer until `stop`.
pub async fn customer(client: Client, products: Vec<Uuid>, stop: CancellationToken, pause: Duration) {
    let customer = Uuid::now_v7();
    let token = client.token(&Identity::Customer { customer_id: customer });
    let mut plans: HashMap<String, Plan> = HashMap::new();
    let mut round = 0usize;
    while !stop.is_cancelled() {
        round += 1;
        let product = products[round % products.len()];
        let card = card_for(round);
        let key = Uuid::now_v7().to_string();
        let answer = client.call("rent", &token, RENT, rent_input(product, card, &key)).await;
        let kind = kind_of(&answer);
        let rental_id = answer.as_ref().ok().and_then(|body| body["data"]["rent"]["id"].as_str()).map(str::to_owned);
        client.record.lock().expect("record").rents.push(RentRecord {
            customer,
            product,
            key: key.clone(),
            card,
            answer: kind.clone(),
            rental_id: rental_id.clone(),
            finished_at: Instant::now(),
        });
        if let Some(rental_id) = &rental_id {
            // A client that lost the answer retries with the same key.
            if round % 4 == 0 {
                let again = client.call("rent (same key)", &token, RENT, rent_input(product, card, &key)).await;
                if let Some(other) = again.as_ref().ok().and_then(|body| body["data"]["rent"]["id"].as_str())
                    && other != rental_id
                {
                    client.violation(format!("the same key {key} answered rental {rental_id} and then {other}"));
                }
            }
            if round % 5 == 0 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let cancel = "mutation($id: ID!) { cancelRental(id: $id) { id status } }";
                let answer = client.call("cancelRental", &token, cancel, json!({ "id": rental_id })).await;
                if let Ok(body) = &answer
                    && body.get("errors").is_none()
                    && body["data"]["cancelRental"]["status"] != "CANCELLED"
                {
                    client.violation(format!("cancelRental({rental_id}) answered without cancelling: {body}"));
                }
            } else if let Some(plan) = plan_for(round, card) {
                plans.insert(rental_id.clone(), plan);
            }
        }
        if round % 2 == 0 && !plans.is_empty() {
            tend(&client, &token, &mut plans).await;
        }
        tokio::time::sleep(pause).await;
    }
}

/// One operator working the delivery queue and the visit queue until `stop`.
pub async fn operator(client: Client, number: usize, stop: CancellationToken) {
    let token = client.token(&Identity::Operator { subject: format!("operator-{number}") });
    let queue =
        "query($status: DeliveryStatus) { deliveries(status: $status, first: 10) { edges { node { id status } } } }";
    let mut round = 0usize;
    while !stop.is_cancelled() {
        round += 1;
        for (status, step) in [("REQUESTED", "startDelivery"), ("SHIPPING", "completeDelivery")] {
            let Ok(page) = client.call("deliveries", &token, queue, json!({ "status": status })).await else {
                continue;
            };
            let ids: Vec<String> = page["data"]["deliveries"]["edges"]
                .as_array()
                .map(|edges| edges.iter().filter_map(|edge| edge["node"]["id"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            // Operators share the queue: take every other one, from either end.
            let mine = ids.iter().enumerate().filter(|(index, _)| (index + number) % 2 == 0).map(|(_, id)| id);
            for id in mine {
                let mutation = format!("mutation($id: ID!) {{ {step}(id: $id) {{ id status }} }}");
                let answer = client.call(step, &token, &mutation, json!({ "id": id })).await;
                // A retry after a lost answer must find the delivery where it asked (it
                // may have moved on meanwhile: a cancellation, another operator).
                let reached = if step == "startDelivery" { "SHIPPING" } else { "DELIVERED" };
                if round % 3 == 0 && answer.as_ref().is_ok_and(|body| body.get("errors").is_none()) {
                    let again = client.call(&format!("{step} (again)"), &token, &mutation, json!({ "id": id })).await;
                    if let Ok(body) = &again
                        && body["errors"][0]["extensions"]["code"] == "CONFLICT"
                        && body["errors"][0]["message"].as_str().is_some_and(|message| message.contains(reached))
                    {
                        client.violation(format!("repeating {step} on {id} was refused: {body}"));
                    }
                }
            }
        }
        work_visits(&client, &token, number, round).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One pass over the visits that are due (care visits and pickups): start each, then
/// complete it, except one pickup in five whose customer was not home, which is moved
/// a second later and completed on a later pass.
async fn work_visits(client: &Client, token: &str, number: usize, round: usize) {
    let queue = "query($before: DateTime) { visits(status: SCHEDULED, dueBefore: $before, first: 10) \
                 { edges { node { id kind status } } } }";
    let now = chrono::Utc::now();
    let Ok(page) = client.call("visits", token, queue, json!({ "before": now.to_rfc3339() })).await else {
        return;
    };
    let visits: Vec<(String, String)> = page["data"]["visits"]["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .filter_map(|edge| {
                    Some((edge["node"]["id"].as_str()?.to_owned(), edge["node"]["kind"].as_str()?.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    let start = "mutation($id: ID!) { startVisit(id: $id) { id status } }";
    let complete = "mutation($id: ID!) { completeVisit(id: $id, notes: \"done\") { id status } }";
    let reschedule = "mutation($id: ID!, $at: DateTime!) { rescheduleVisit(id: $id, scheduledFor: $at) { id status } }";
    for (index, (id, kind)) in visits.iter().enumerate() {
        // Operators share the queue: take every other one.
        if (index + number) % 2 != 0 {
            continue;
        }
        let started = client.call("startVisit", token, start, json!({ "id": id })).await;
        if !started.as_ref().is_ok_and(|body| body.get("errors").is_none()) {
            continue;
        }
        if kind == "PICKUP" && (round + index) % 5 == 0 {
            let later = (now + chrono::Duration::seconds(1)).to_rfc3339();
            let moved = client.call("rescheduleVisit", token, reschedule, json!({ "id": id, "at": later })).await;
            if let Ok(body) = &moved
                && body.get("errors").is_none()
                && body["data"]["rescheduleVisit"]["status"] != "SCHEDULED"
            {
                client.violation(format!("a pickup moved after nobody was home is not SCHEDULED again: {body}"));
            }
            continue;
        }
        let done = client.call("completeVisit", token, complete, json!({ "id": id })).await;
        // A retry after a lost answer finds the visit done, not refused.
        if round % 3 == 0 && done.as_ref().is_ok_and(|body| body.get("errors").is_none()) {
            let again = client.call("completeVisit (again)", token, complete, json!({ "id": id })).await;
            if let Ok(body) = &again
                && body["errors"][0]["extensions"]["code"] == "CONFLICT"
            {
                client.violation(format!("repeating completeVisit on {id} was refused: {body}"));
            }
        }
    }
}

/// An operator adding two units of each product every few seconds until `until`.
pub async fn restocker(client: Client, products: Vec<Uuid>, stop: CancellationToken) {
    let token = client.token(&Identity::Operator { subject: "restocker".into() });
    let mutation = "mutation($id: ID!) { restockProduct(productId: $id, quantity: 2) { id stock } }";
    while !stop.is_cancelled() {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(3)) => {}
            () = stop.cancelled() => return,
        }
        for product in &products {
            let answer = client.call("restockProduct", &token, mutation, json!({ "id": product })).await;
            if answer.as_ref().is_ok_and(|body| body.get("errors").is_none()) {
                *client.record.lock().expect("record").restocked.entry(*product).or_default() += 2;
            }
        }
    }
}

/// Creates a product through the router and waits until rental can rent it (its
/// copy of the catalog has heard of it).
pub async fn product(client: &Client, rental: &subgraph_kit::Database, name: &str, stock: i32) -> anyhow::Result<Uuid> {
    let token = client.token(&Identity::Operator { subject: "setup".into() });
    let create = "mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }";
    let answer = client
        .call(
            "createProduct",
            &token,
            create,
            // A care visit every month: with two-month contracts, one per contract.
            json!({ "input": { "name": name, "monthlyFee": 19_900, "initialStock": stock, "careIntervalMonths": 1 } }),
        )
        .await
        .map_err(anyhow::Error::msg)?;
    let id: Uuid =
        answer["data"]["createProduct"]["id"].as_str().ok_or_else(|| anyhow::anyhow!("{answer}"))?.parse()?;
    harness::workload::rental_knows_product(rental, id).await?;
    Ok(id)
}
