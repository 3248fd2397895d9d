//! The bounded load of one run, through the router: customers renting (unique keys,
//! same-key retries, declined cards, cancellations), operators starting and completing
//! deliveries (and repeating some steps), and an operator restocking. Every answer is
//! recorded by its kind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use subgraph_kit::{Identity, TokenIssuer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const APPROVED: &str = "4242424242424242";
pub const DECLINED: &str = "4000000000000002";

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

/// One customer until `until`.
pub async fn customer(client: Client, products: Vec<Uuid>, stop: CancellationToken, pause: Duration) {
    let customer = Uuid::now_v7();
    let token = client.token(&Identity::Customer { customer_id: customer });
    let mut round = 0usize;
    while !stop.is_cancelled() {
        round += 1;
        let product = products[round % products.len()];
        let card = if round % 6 == 0 { DECLINED } else { APPROVED };
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
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// One operator working the delivery queue until `until`.
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
        tokio::time::sleep(Duration::from_millis(100)).await;
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
            json!({ "input": { "name": name, "monthlyFee": 19_900, "initialStock": stock } }),
        )
        .await
        .map_err(anyhow::Error::msg)?;
    let id: Uuid =
        answer["data"]["createProduct"]["id"].as_str().ok_or_else(|| anyhow::anyhow!("{answer}"))?.parse()?;
    harness::workload::rental_knows_product(rental, id).await?;
    Ok(id)
}
