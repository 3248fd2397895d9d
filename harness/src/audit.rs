//! The invariant audit of a process cluster once it has settled: over all four
//! databases, the queues, and what the clients were told. Each broken invariant is one
//! sentence. The fault suite and the operations tests (two replicas, rolling restart)
//! both end with it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};

use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel_async::RunQueryDsl;
use serde_json::json;
use subgraph_kit::clock::Calendar;
use subgraph_kit::{Database, Identity};
use uuid::Uuid;

use crate::cluster::{ProcessCluster, SERVICES};
use crate::workload::DECLINED;

async fn rows<T: QueryableByName<Pg> + Send + 'static>(database: &Database, sql: &str) -> anyhow::Result<Vec<T>> {
    let mut connection = database.connection().await.map_err(|error| anyhow::anyhow!(error.message))?;
    Ok(diesel::sql_query(sql).load(&mut connection).await?)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The single number `sql` selects as `n`.
pub async fn count(database: &Database, sql: &str) -> anyhow::Result<i64> {
    let counted: Vec<Count> = rows(database, sql).await?;
    Ok(counted.into_iter().next().map_or(0, |row| row.n))
}

#[derive(QueryableByName)]
struct Rental {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    customer_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    payment_id: Uuid,
}

#[derive(QueryableByName)]
struct Request {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    customer_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    idempotency_key: String,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    rental_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    state: String,
}

#[derive(QueryableByName)]
struct Payment {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    rental_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
}

#[derive(QueryableByName)]
struct Delivery {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    rental_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    unit: String,
}

#[derive(QueryableByName)]
struct Shipment {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    delivery_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    state: String,
}

#[derive(QueryableByName)]
struct Stock {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    stock: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    ledger: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    supplied: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    restocked: i64,
}

#[derive(QueryableByName, PartialEq, Eq, Debug)]
struct History {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    rental_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    timeline: String,
}

#[derive(QueryableByName)]
struct Repeated {
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    subject: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// What a client asked of `rent` and what it was told.
#[derive(Debug, Clone)]
pub struct RentTold {
    pub customer: Uuid,
    pub product: Uuid,
    pub key: String,
    pub card: String,
    /// The contract's length asked for (a same-key retry must ask the same).
    pub months: i32,
    /// `ok`, an error code, or how the transport failed.
    pub answer: String,
    pub rental_id: Option<String>,
}

/// What the clients were told that a definitive refusal (nothing was created).
fn definitive_refusal(answer: &str) -> bool {
    matches!(answer, "PAYMENT_DECLINED" | "BAD_USER_INPUT" | "NOT_FOUND" | "IDEMPOTENCY_KEY_REUSED" | "FORBIDDEN")
}

pub struct Audit {
    pub violations: Vec<String>,
    /// Rents answered with an error whose outcome the client could not know, and
    /// which a retry under the same key showed committed.
    pub unknown_but_committed: usize,
}

/// What the audit reads once from the four databases.
struct Records {
    rentals: Vec<Rental>,
    payments: Vec<Payment>,
    deliveries: Vec<Delivery>,
    requests: Vec<Request>,
    shipments: Vec<Shipment>,
    /// The terms of the delivered rentals.
    terms: Vec<TermRow>,
}

impl Records {
    async fn read(cluster: &ProcessCluster) -> anyhow::Result<Self> {
        let rental_db = cluster.database(rental::SERVICE)?;
        let payment_db = cluster.database(payment::SERVICE)?;
        let delivery_db = cluster.database(delivery::SERVICE)?;
        let inventory_db = cluster.database(inventory::SERVICE)?;
        Ok(Self {
            rentals: rows(&rental_db, "SELECT id, customer_id, status, payment_id FROM rentals").await?,
            payments: rows(&payment_db, "SELECT id, rental_id, status FROM payments").await?,
            deliveries: rows(&delivery_db, "SELECT id, rental_id, status, unit FROM deliveries").await?,
            requests: rows(&rental_db, "SELECT customer_id, idempotency_key, rental_id, state FROM rent_requests")
                .await?,
            shipments: rows(&inventory_db, "SELECT delivery_id, state FROM shipments").await?,
            terms: rows(
                &rental_db,
                "SELECT id, months, term_starts_at, term_ends_at, ended_at FROM rentals WHERE term_starts_at IS NOT NULL",
            )
            .await?,
        })
    }

    fn rental(&self, id: Uuid) -> Option<&Rental> {
        self.rentals.iter().find(|rental| rental.id == id)
    }

    fn payments_of(&self) -> HashMap<Uuid, Vec<&Payment>> {
        let mut by_rental: HashMap<Uuid, Vec<&Payment>> = HashMap::new();
        for payment in &self.payments {
            by_rental.entry(payment.rental_id).or_default().push(payment);
        }
        by_rental
    }

    fn deliveries_of(&self) -> HashMap<Uuid, Vec<&Delivery>> {
        let mut by_rental: HashMap<Uuid, Vec<&Delivery>> = HashMap::new();
        for delivery in &self.deliveries {
            by_rental.entry(delivery.rental_id).or_default().push(delivery);
        }
        by_rental
    }
}

/// Every invariant, numbered as docs/reliability.md numbers them, each its own function
/// below: 1 to 10 about renting, 11 to 14 and 18 about billing, 15 to 17 and 19 about
/// field service.
/// The history rebuild (10) rewrites the read model, so it runs last.
///
/// `queues` are the depths of the cluster's queues; `restocked` the units per product
/// whose restock the clients saw confirmed.
pub async fn audit(
    cluster: &ProcessCluster,
    queues: &[(String, u64)],
    rents: &[RentTold],
    restocked: &BTreeMap<Uuid, i64>,
) -> anyhow::Result<Audit> {
    let records = Records::read(cluster).await?;
    let mut violations = Vec::new();
    violations.extend(n1_paid_or_nothing(&records));
    violations.extend(n2_one_delivery_per_rental(&records));
    violations.extend(n3_services_agree(&records));
    violations.extend(n4_no_charge_without_a_rental(&records));
    violations.extend(n5_no_delivery_without_a_rental(&records));
    violations.extend(n6_stock_and_deliveries_agree(&records));
    violations.extend(n7_stock_is_exact(cluster, restocked).await?);
    violations.extend(n8_nothing_left_behind(cluster, &records, queues).await?);
    let (told, unknown_but_committed) = n9_clients_were_told_what_happened(cluster, &records, rents).await?;
    violations.extend(told);
    violations.extend(n11_each_month_charged_at_most_once(cluster).await?);
    violations.extend(n12_charges_match_paid_invoices(cluster).await?);
    violations.extend(n13_nothing_charged_after_the_end(cluster).await?);
    violations.extend(n14_standing_matches_invoices(cluster, &records).await?);
    violations.extend(n15_one_pickup_per_rental_ended_after_delivery(cluster, &records).await?);
    violations.extend(n16_each_pickup_returned_one_unit(cluster).await?);
    violations.extend(n17_no_care_visit_after_the_end(cluster, &records).await?);
    violations.extend(n18_every_started_month_was_invoiced(cluster, &records).await?);
    violations.extend(n19_care_visits_at_the_interval(cluster, &records).await?);
    // Last: the rebuild rewrites the read model.
    violations.extend(n10_history_equals_a_rebuild(cluster, &records).await?);
    Ok(Audit { violations, unknown_but_committed })
}

/// 1. Every rental has exactly one payment, the one it names.
fn n1_paid_or_nothing(records: &Records) -> Vec<String> {
    let payments_of = records.payments_of();
    let mut violations = Vec::new();
    for rental in &records.rentals {
        let charges = payments_of.get(&rental.id).map_or(&[][..], Vec::as_slice);
        if !matches!(charges, [payment] if payment.id == rental.payment_id) {
            violations.push(format!("rental {} has {} charges (expected exactly its own)", rental.id, charges.len()));
        }
    }
    violations
}

/// 2. Every rental has exactly one delivery.
fn n2_one_delivery_per_rental(records: &Records) -> Vec<String> {
    let deliveries_of = records.deliveries_of();
    records
        .rentals
        .iter()
        .filter_map(|rental| {
            let found = deliveries_of.get(&rental.id).map_or(0, Vec::len);
            (found != 1).then(|| format!("rental {} has {found} deliveries (expected one)", rental.id))
        })
        .collect()
}

/// 3. The rental, its delivery and its payment agree on where it stands.
fn n3_services_agree(records: &Records) -> Vec<String> {
    let payments_of = records.payments_of();
    let deliveries_of = records.deliveries_of();
    let mut violations = Vec::new();
    for rental in &records.rentals {
        let charges = payments_of.get(&rental.id).map_or(&[][..], Vec::as_slice);
        let Some([delivery]) = deliveries_of.get(&rental.id).map(Vec::as_slice) else { continue };
        let refunded = charges.first().is_some_and(|payment| payment.status == "REFUNDED");
        let agrees = match (rental.status.as_str(), delivery.status.as_str()) {
            ("ACCEPTED", "REQUESTED" | "SHIPPING") => !refunded,
            // The contract after delivery: its first month stays paid however it ends.
            ("ACTIVE" | "PAST_DUE" | "COMPLETED" | "TERMINATED", "DELIVERED") => !refunded,
            ("CANCELLED", "CANCELLED") => refunded,
            _ => false,
        };
        if !agrees {
            violations.push(format!(
                "rental {} is {} but its delivery is {} and its payment {}",
                rental.id,
                rental.status,
                delivery.status,
                charges.first().map_or("missing", |payment| payment.status.as_str())
            ));
        }
    }
    violations
}

/// 4. A payment whose rental does not exist was refunded.
fn n4_no_charge_without_a_rental(records: &Records) -> Vec<String> {
    records
        .payments
        .iter()
        .filter(|payment| records.rental(payment.rental_id).is_none() && payment.status != "REFUNDED")
        .map(|payment| format!("charge {} has no rental and was not refunded", payment.id))
        .collect()
}

/// 5. Every delivery belongs to a rental.
fn n5_no_delivery_without_a_rental(records: &Records) -> Vec<String> {
    records
        .deliveries
        .iter()
        .filter(|delivery| records.rental(delivery.rental_id).is_none())
        .map(|delivery| format!("delivery {} belongs to no rental", delivery.id))
        .collect()
}

/// 6. A delivery's status and inventory's shipment for it agree. A delivered unit is
/// out (`TAKEN`) until its pickup brings it home (`COLLECTED`: invariant 16 checks that
/// each such return has its done pickup).
fn n6_stock_and_deliveries_agree(records: &Records) -> Vec<String> {
    let shipment_of: HashMap<Uuid, &str> =
        records.shipments.iter().map(|shipment| (shipment.delivery_id, shipment.state.as_str())).collect();
    let mut violations = Vec::new();
    for delivery in &records.deliveries {
        let shipment = shipment_of.get(&delivery.id).copied();
        match delivery.status.as_str() {
            "DELIVERED" if !matches!(shipment, Some("TAKEN" | "COLLECTED")) || delivery.unit != "TAKEN" => violations
                .push(format!(
                    "delivery {} is DELIVERED but inventory's shipment is {shipment:?} (unit {})",
                    delivery.id, delivery.unit
                )),
            "SHIPPING" if !matches!(shipment, Some("TAKEN" | "SHORT")) => violations
                .push(format!("delivery {} is SHIPPING but inventory's shipment is {shipment:?}", delivery.id)),
            "CANCELLED" if matches!(shipment, Some("TAKEN" | "SHORT")) => violations.push(format!(
                "delivery {} is CANCELLED but inventory still holds its shipment {shipment:?}",
                delivery.id
            )),
            "REQUESTED" if shipment.is_some_and(|state| state != "CANCELLED") => violations
                .push(format!("delivery {} is REQUESTED but inventory has a shipment {shipment:?}", delivery.id)),
            _ => {}
        }
    }
    violations
}

/// 7. Stock is never negative, equals its ledger and supply minus units out, and every
/// restock confirmed to a client is recorded.
async fn n7_stock_is_exact(cluster: &ProcessCluster, restocked: &BTreeMap<Uuid, i64>) -> anyhow::Result<Vec<String>> {
    let inventory_db = cluster.database(inventory::SERVICE)?;
    let stocks: Vec<Stock> = rows(
        &inventory_db,
        "SELECT p.id, p.stock, \
                COALESCE((SELECT sum(change) FROM stock_movements m WHERE m.product_id = p.id), 0)::bigint AS ledger, \
                COALESCE((SELECT sum(change) FROM stock_movements m WHERE m.product_id = p.id \
                          AND reason IN ('CREATED', 'RESTOCKED')), 0)::bigint AS supplied, \
                COALESCE((SELECT sum(change) FROM stock_movements m WHERE m.product_id = p.id \
                          AND reason = 'RESTOCKED'), 0)::bigint AS restocked \
         FROM products p",
    )
    .await?;
    let mut violations = Vec::new();
    for product in &stocks {
        let out = count(
            &inventory_db,
            &format!("SELECT count(*) AS n FROM shipments WHERE product_id = '{}' AND state = 'TAKEN'", product.id),
        )
        .await?;
        if product.stock < 0 || i64::from(product.stock) != product.ledger || product.ledger != product.supplied - out {
            violations.push(format!(
                "product {}: stock {} but ledger {} and supplied {} minus {} units out",
                product.id, product.stock, product.ledger, product.supplied, out
            ));
        }
        let acknowledged = restocked.get(&product.id).copied().unwrap_or(0);
        if product.restocked < acknowledged {
            violations.push(format!(
                "product {}: {} units of restock were confirmed to clients but only {} recorded",
                product.id, acknowledged, product.restocked
            ));
        }
    }
    Ok(violations)
}

/// 8. Nothing left behind: outboxes and `queues` empty, no rent request unfinished.
async fn n8_nothing_left_behind(
    cluster: &ProcessCluster,
    records: &Records,
    queues: &[(String, u64)],
) -> anyhow::Result<Vec<String>> {
    let mut violations = Vec::new();
    for service in SERVICES {
        let database = cluster.database(service)?;
        let waiting = count(&database, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").await?;
        if waiting > 0 {
            violations.push(format!("{service}'s outbox still holds {waiting} events"));
        }
    }
    for (queue, messages) in queues {
        if *messages > 0 {
            violations.push(format!("{queue} holds {messages} messages"));
        }
    }
    let unfinished =
        records.requests.iter().filter(|request| matches!(request.state.as_str(), "PENDING" | "VOIDING")).count();
    if unfinished > 0 {
        violations.push(format!("{unfinished} rent requests are still unfinished"));
    }
    Ok(violations)
}

/// 9. What each client was told about its rent is what happened; an unknown outcome is
/// settled by a same-key retry through the router. Returns the violations and how many
/// unknown outcomes had committed.
async fn n9_clients_were_told_what_happened(
    cluster: &ProcessCluster,
    records: &Records,
    rents: &[RentTold],
) -> anyhow::Result<(Vec<String>, usize)> {
    let request_of: HashMap<(Uuid, &str), &Request> = records
        .requests
        .iter()
        .map(|request| ((request.customer_id, request.idempotency_key.as_str()), request))
        .collect();
    let issuer = cluster.identities.users.clone();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build()?;
    let mut violations = Vec::new();
    let mut unknown_but_committed = 0;
    for rent in rents {
        let request = request_of.get(&(rent.customer, rent.key.as_str()));
        let committed = request.filter(|request| request.state == "COMPLETED");
        match (rent.answer.as_str(), &rent.rental_id) {
            ("ok", Some(id)) => {
                let stored = id.parse().ok().and_then(|id: Uuid| records.rental(id));
                if stored.is_none_or(|rental| rental.customer_id != rent.customer) {
                    violations.push(format!("rent {} was answered with rental {id}, which does not exist", rent.key));
                }
                if rent.card == DECLINED {
                    violations.push(format!("rent {} with a declined card was accepted", rent.key));
                }
            }
            (answer, _) if definitive_refusal(answer) => {
                if let Some(request) = committed {
                    violations.push(format!(
                        "rent {} was refused ({answer}) but rental {} exists",
                        rent.key, request.rental_id
                    ));
                }
            }
            (told, _) => {
                // The outcome was not known to the client: retrying with the same key must
                // return the rental if it was created.
                let Some(request) = committed else { continue };
                let token = issuer.issue(&Identity::Customer { customer_id: rent.customer }, Duration::from_secs(600));
                let query = "mutation($input: RentInput!) { rent(input: $input) { id } }";
                let input = json!({ "input": { "productId": rent.product, "months": rent.months,
                    "deliveryAddress": "12 Teheran-ro, Gangnam-gu, Seoul", "cardNumber": rent.card,
                    "idempotencyKey": rent.key } });
                let sent = http
                    .post(cluster.router_url())
                    .bearer_auth(token)
                    .json(&json!({ "query": query, "variables": input }))
                    .send()
                    .await;
                let answer = match sent {
                    Ok(response) => response.json::<serde_json::Value>().await.ok(),
                    Err(_) => None,
                };
                let returned = answer.and_then(|body| body["data"]["rent"]["id"].as_str().map(str::to_owned));
                if returned.as_deref() == Some(request.rental_id.to_string().as_str()) {
                    unknown_but_committed += 1;
                } else {
                    violations.push(format!(
                        "rent {} was answered {told}, committed as rental {}, and a same-key retry returned {returned:?}",
                        rent.key, request.rental_id
                    ));
                }
            }
        }
    }
    Ok((violations, unknown_but_committed))
}

/// 10. The history read model has one row per rental and equals its rebuild from every
/// service's records (which rewrites it: this comes last).
async fn n10_history_equals_a_rebuild(cluster: &ProcessCluster, records: &Records) -> anyhow::Result<Vec<String>> {
    let rental_db = cluster.database(rental::SERVICE)?;
    let history = "SELECT rental_id, status, timeline::text AS timeline FROM rental_history ORDER BY rental_id";
    let live: Vec<History> = rows(&rental_db, history).await?;
    let mut violations = Vec::new();
    if live.len() != records.rentals.len() {
        violations.push(format!("{} rentals but {} history rows", records.rentals.len(), live.len()));
    }
    rental::service::rebuild::rebuild(
        &rental_db,
        &cluster.database(payment::SERVICE)?,
        &cluster.database(delivery::SERVICE)?,
        &cluster.database(inventory::SERVICE)?,
    )
    .await
    .map_err(|error| anyhow::anyhow!(error.message))?;
    let rebuilt: Vec<History> = rows(&rental_db, history).await?;
    for (kept, fresh) in live.iter().zip(&rebuilt) {
        if kept != fresh {
            violations.push(format!("history of {} differs from its rebuild: {kept:?} vs {fresh:?}", kept.rental_id));
        }
    }
    Ok(violations)
}

#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = diesel::sql_types::Text)]
    what: String,
}

/// The violations `sql` finds, one per row, each the row's `what`.
async fn found(database: &Database, sql: &str) -> anyhow::Result<Vec<String>> {
    Ok(rows::<Found>(database, sql).await?.into_iter().map(|row| row.what).collect())
}

#[derive(QueryableByName)]
struct Ended {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Double)]
    ended_at: f64,
}

/// 11. Each (rental, month) has one invoice, and no invoice was ever captured twice.
async fn n11_each_month_charged_at_most_once(cluster: &ProcessCluster) -> anyhow::Result<Vec<String>> {
    let payment_db = cluster.database(payment::SERVICE)?;
    let mut violations = found(
        &payment_db,
        "SELECT 'rental ' || rental_id || ' has ' || count(*) || ' invoices for period ' || period AS what \
         FROM invoices WHERE kind = 'PERIOD' GROUP BY rental_id, period HAVING count(*) > 1",
    )
    .await?;
    violations.extend(
        found(
            &payment_db,
            "SELECT 'invoice ' || invoice_id || ' was captured ' || count(*) || ' times' AS what \
             FROM invoice_attempts WHERE outcome = 'APPROVED' GROUP BY invoice_id HAVING count(*) > 1",
        )
        .await?,
    );
    Ok(violations)
}

/// 12. What was charged is what the invoices say was paid: an invoice with an approved
/// capture is PAID (or REFUNDED since), and a PAID invoice of a later month or a fee has
/// exactly one (the first month is paid by the rent's own charge).
async fn n12_charges_match_paid_invoices(cluster: &ProcessCluster) -> anyhow::Result<Vec<String>> {
    let payment_db = cluster.database(payment::SERVICE)?;
    found(
        &payment_db,
        "SELECT 'invoice ' || i.id || ' is ' || i.status || ' with ' || count(a.invoice_id) || ' approved captures' AS what \
         FROM invoices i LEFT JOIN invoice_attempts a ON a.invoice_id = i.id AND a.outcome = 'APPROVED' \
         GROUP BY i.id, i.status, i.kind, i.period, i.payment_id \
         HAVING (count(a.invoice_id) > 0 AND i.status NOT IN ('PAID', 'REFUNDED')) \
             OR (i.status = 'PAID' AND i.payment_id IS NULL AND count(a.invoice_id) <> 1)",
    )
    .await
}

/// 13. Nothing is charged for a month that starts after the rental ended.
async fn n13_nothing_charged_after_the_end(cluster: &ProcessCluster) -> anyhow::Result<Vec<String>> {
    let rental_db = cluster.database(rental::SERVICE)?;
    let payment_db = cluster.database(payment::SERVICE)?;
    let ended: Vec<Ended> = rows(
        &rental_db,
        "SELECT id, extract(epoch FROM ended_at)::float8 AS ended_at FROM rentals WHERE ended_at IS NOT NULL",
    )
    .await?;
    let ended: HashMap<Uuid, f64> = ended.into_iter().map(|rental| (rental.id, rental.ended_at)).collect();
    let charged: Vec<Ended> = rows(
        &payment_db,
        "SELECT i.rental_id AS id, extract(epoch FROM i.period_start)::float8 AS ended_at \
         FROM invoices i JOIN invoice_attempts a ON a.invoice_id = i.id AND a.outcome = 'APPROVED' \
         WHERE i.kind = 'PERIOD' AND i.period_start IS NOT NULL",
    )
    .await?;
    Ok(charged
        .iter()
        .filter(|month| ended.get(&month.id).is_some_and(|end| month.ended_at > *end))
        .map(|month| format!("rental {} was charged for a month starting after it ended", month.id))
        .collect())
}

/// 14. A rental's standing agrees with its invoices: `PAST_DUE` has a failed one, and
/// `ACTIVE` none.
async fn n14_standing_matches_invoices(cluster: &ProcessCluster, records: &Records) -> anyhow::Result<Vec<String>> {
    let payment_db = cluster.database(payment::SERVICE)?;
    #[derive(QueryableByName)]
    struct Failed {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        rental_id: Uuid,
    }
    let failed: Vec<Failed> =
        rows(&payment_db, "SELECT DISTINCT rental_id FROM invoices WHERE status = 'FAILED'").await?;
    let failed: std::collections::HashSet<Uuid> = failed.into_iter().map(|row| row.rental_id).collect();
    Ok(records
        .rentals
        .iter()
        .filter_map(|rental| match (rental.status.as_str(), failed.contains(&rental.id)) {
            ("PAST_DUE", false) => Some(format!("rental {} is PAST_DUE with no failed invoice", rental.id)),
            ("ACTIVE", true) => Some(format!("rental {} is ACTIVE with a failed invoice", rental.id)),
            _ => None,
        })
        .collect())
}

#[derive(QueryableByName)]
struct PerRental {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    rental_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// 15. A rental that ended after delivery (completed or terminated) has exactly one
/// pickup; any other has none.
async fn n15_one_pickup_per_rental_ended_after_delivery(
    cluster: &ProcessCluster,
    records: &Records,
) -> anyhow::Result<Vec<String>> {
    let delivery_db = cluster.database(delivery::SERVICE)?;
    let pickups: Vec<PerRental> =
        rows(&delivery_db, "SELECT rental_id, count(*) AS n FROM visits WHERE kind = 'PICKUP' GROUP BY rental_id")
            .await?;
    let pickups: HashMap<Uuid, i64> = pickups.into_iter().map(|row| (row.rental_id, row.n)).collect();
    Ok(records
        .rentals
        .iter()
        .filter_map(|rental| {
            let expected = i64::from(matches!(rental.status.as_str(), "COMPLETED" | "TERMINATED"));
            let found = pickups.get(&rental.id).copied().unwrap_or(0);
            (found != expected).then(|| format!("rental {} is {} with {found} pickups", rental.id, rental.status))
        })
        .collect())
}

/// 16. Every completed pickup brought exactly one unit home (its shipment COLLECTED, one
/// COLLECTED movement), and no unit came home without one.
async fn n16_each_pickup_returned_one_unit(cluster: &ProcessCluster) -> anyhow::Result<Vec<String>> {
    let delivery_db = cluster.database(delivery::SERVICE)?;
    let inventory_db = cluster.database(inventory::SERVICE)?;
    #[derive(QueryableByName)]
    struct Done {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Uuid>)]
        delivery_id: Option<Uuid>,
    }
    let done: Vec<Done> =
        rows(&delivery_db, "SELECT delivery_id FROM visits WHERE kind = 'PICKUP' AND status = 'DONE'").await?;
    let returned: Vec<PerRental> = rows(
        &inventory_db,
        "SELECT delivery_id AS rental_id, count(*) AS n FROM stock_movements \
         WHERE reason = 'COLLECTED' AND delivery_id IS NOT NULL GROUP BY delivery_id",
    )
    .await?;
    let returned: HashMap<Uuid, i64> = returned.into_iter().map(|row| (row.rental_id, row.n)).collect();
    let mut violations = Vec::new();
    let picked: std::collections::HashSet<Uuid> = done.iter().filter_map(|visit| visit.delivery_id).collect();
    for delivery_id in &picked {
        let units = returned.get(delivery_id).copied().unwrap_or(0);
        if units != 1 {
            violations.push(format!("the pickup of delivery {delivery_id} brought {units} units home"));
        }
    }
    for delivery_id in returned.keys().filter(|delivery_id| !picked.contains(delivery_id)) {
        violations.push(format!("a unit of delivery {delivery_id} came home without a completed pickup"));
    }
    Ok(violations)
}

/// 17. No care visit is still planned or under way for a rental that has ended.
async fn n17_no_care_visit_after_the_end(cluster: &ProcessCluster, records: &Records) -> anyhow::Result<Vec<String>> {
    let delivery_db = cluster.database(delivery::SERVICE)?;
    let open: Vec<PerRental> = rows(
        &delivery_db,
        "SELECT rental_id, count(*) AS n FROM visits \
         WHERE kind = 'CARE' AND status IN ('SCHEDULED', 'IN_PROGRESS') GROUP BY rental_id",
    )
    .await?;
    Ok(open
        .iter()
        .filter_map(|visit| {
            let rental = records.rental(visit.rental_id)?;
            matches!(rental.status.as_str(), "COMPLETED" | "TERMINATED" | "CANCELLED")
                .then(|| format!("rental {} is {} with {} care visits still open", rental.id, rental.status, visit.n))
        })
        .collect())
}

/// A delivered rental's term as rental keeps it: when it started, when it ends (after
/// every extension), and when it ended, if it did.
#[derive(QueryableByName)]
struct TermRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    months: i32,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    term_starts_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    term_ends_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    ended_at: Option<DateTime<Utc>>,
}

/// The month the cluster's services run on (`MONTH_SECONDS`, calendar months without it).
fn calendar_of(cluster: &ProcessCluster) -> Calendar {
    cluster
        .spec
        .env
        .iter()
        .find(|(name, _)| name == "MONTH_SECONDS")
        .and_then(|(_, seconds)| seconds.parse().ok())
        .map_or(Calendar::CALENDAR, Calendar::short)
}

/// 18. Every month that started before its rental ended (or, for a running rental,
/// before now) was invoiced, and the invoice is paid, being collected or dunned, or
/// written off: no month of a delivered rental goes unbilled, including one that had
/// started when the contract was ended but that the contract clock had not announced yet.
async fn n18_every_started_month_was_invoiced(
    cluster: &ProcessCluster,
    records: &Records,
) -> anyhow::Result<Vec<String>> {
    #[derive(QueryableByName)]
    struct Invoice {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        rental_id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        period: i32,
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
    }
    let calendar = calendar_of(cluster);
    let payment_db = cluster.database(payment::SERVICE)?;
    let invoices: Vec<Invoice> =
        rows(&payment_db, "SELECT rental_id, period, status FROM invoices WHERE kind = 'PERIOD'").await?;
    let invoices: HashMap<(Uuid, i32), String> =
        invoices.into_iter().map(|invoice| ((invoice.rental_id, invoice.period), invoice.status)).collect();
    // The clock announces a month within a tick (a second at most) of its start.
    let now = Utc::now() - chrono::Duration::seconds(2);
    let mut violations = Vec::new();
    for term in &records.terms {
        let until = term.ended_at.unwrap_or(now);
        let started = (1..=term.months).filter(|period| calendar.months_after(term.term_starts_at, period - 1) < until);
        for period in started {
            match invoices.get(&(term.id, period)).map(String::as_str) {
                Some("PAID" | "PENDING" | "FAILED" | "VOID") => {}
                Some(status) => violations.push(format!(
                    "month {period} of rental {} started before its end and its invoice is {status}",
                    term.id
                )),
                None => violations.push(format!(
                    "month {period} of rental {} started before its end and was never invoiced",
                    term.id
                )),
            }
        }
    }
    Ok(violations)
}

/// 19. A delivered rental's care visits fall exactly at its product's interval within
/// the term, as rental drew it (after every extension): visit n is planned n intervals
/// after the term's start, one for every such date before the term's end and none
/// other (invariant 17 sees that those left open at an end were called off).
async fn n19_care_visits_at_the_interval(cluster: &ProcessCluster, records: &Records) -> anyhow::Result<Vec<String>> {
    #[derive(QueryableByName)]
    struct CareVisit {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        rental_id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        number: i32,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        planned_for: DateTime<Utc>,
    }
    #[derive(QueryableByName)]
    struct Plan {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        rental_id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        care_interval_months: i32,
    }
    let calendar = calendar_of(cluster);
    let delivery_db = cluster.database(delivery::SERVICE)?;
    let plans: Vec<Plan> = rows(&delivery_db, "SELECT rental_id, care_interval_months FROM visit_plans").await?;
    let intervals: HashMap<Uuid, i32> =
        plans.into_iter().map(|plan| (plan.rental_id, plan.care_interval_months)).collect();
    let visits: Vec<CareVisit> =
        rows(&delivery_db, "SELECT rental_id, number, planned_for FROM visits WHERE kind = 'CARE'").await?;
    let mut visits_of: HashMap<Uuid, BTreeMap<i32, CareVisit>> = HashMap::new();
    for visit in visits {
        visits_of.entry(visit.rental_id).or_default().insert(visit.number, visit);
    }
    let mut violations = Vec::new();
    for term in &records.terms {
        let Some(&interval) = intervals.get(&term.id) else {
            violations.push(format!("rental {} was delivered but field service has no care plan for it", term.id));
            continue;
        };
        let planned = visits_of.remove(&term.id).unwrap_or_default();
        let due: Vec<(i32, DateTime<Utc>)> = (1..)
            .map(|number| (number, calendar.months_after(term.term_starts_at, number * interval)))
            .take_while(|(_, due)| *due < term.term_ends_at)
            .collect();
        let numbers: Vec<i32> = planned.keys().copied().collect();
        let expected: Vec<i32> = due.iter().map(|(number, _)| *number).collect();
        if numbers != expected {
            violations.push(format!(
                "rental {} has care visits {numbers:?}, but its term calls for {expected:?} (every {interval} months)",
                term.id
            ));
            continue;
        }
        for (number, due_at) in due {
            let visit = &planned[&number];
            // The databases keep microseconds.
            if (visit.planned_for - due_at).num_milliseconds().abs() > 1 {
                violations.push(format!(
                    "care visit {number} of rental {} is planned for {}, not {due_at}",
                    term.id, visit.planned_for
                ));
            }
        }
    }
    for rental_id in visits_of.keys() {
        violations.push(format!("rental {rental_id} has care visits but was never delivered"));
    }
    Ok(violations)
}

/// What one effect is about: its visit or its invoice, a rental's period, or else the
/// rental. A rental has many visits and invoices; each of those happens once.
const EFFECT_SUBJECT: &str = "coalesce('visit ' || (payload->'data'->>'visitId'), \
     'invoice ' || (payload->'data'->>'invoiceId'), \
     'rental ' || (payload->'data'->>'rentalId') || coalesce(' period ' || (payload->'data'->>'period'), ''))";

/// Events that may rightly repeat for one subject: a visit moved again, each failed
/// attempt of one invoice, another extension, a newer card, and `product.created` (the
/// demo seeding may announce a product again).
const REPEATABLE: &str =
    "'product.created', 'visit.rescheduled', 'invoice.failed', 'rental.extended', 'payment_method.updated'";

/// Effects that happened twice: a step recorded twice in a service's outbox (every
/// step writes its event in the same transaction as its change, so two events of one
/// kind for one subject mean the change was made twice: two refunds, two shipments, two
/// deliveries requested, a visit scheduled twice), or a stock movement counted twice for
/// one delivery.
pub async fn doubled_effects(cluster: &ProcessCluster) -> anyhow::Result<Vec<String>> {
    let mut doubled = Vec::new();
    for service in SERVICES {
        let database = cluster.database(service)?;
        let repeated: Vec<Repeated> = rows(
            &database,
            &format!(
                "SELECT event_type, {EFFECT_SUBJECT} AS subject, count(*) AS n FROM outbox \
                 WHERE event_type NOT IN ({REPEATABLE}) \
                 GROUP BY event_type, {EFFECT_SUBJECT} HAVING count(*) > 1"
            ),
        )
        .await?;
        for row in repeated {
            doubled.push(format!("{service} recorded {} {} times for {}", row.event_type, row.n, row.subject));
        }
    }
    let inventory_db = cluster.database(inventory::SERVICE)?;
    let movements: Vec<Repeated> = rows(
        &inventory_db,
        "SELECT reason AS event_type, delivery_id::text AS subject, count(*) AS n FROM stock_movements \
         WHERE delivery_id IS NOT NULL GROUP BY reason, delivery_id HAVING count(*) > 1",
    )
    .await?;
    for row in movements {
        doubled.push(format!("inventory moved stock {} {} times for delivery {}", row.event_type, row.n, row.subject));
    }
    Ok(doubled)
}

/// Waits until `quiet` finds nothing in flight twice in a row, half a second apart (one
/// quiet look can fall between a consumer taking a message and its own event reaching
/// the outbox); the time it took, or `None` if that did not happen within `limit`.
/// Every suite settles with this before its audit.
pub async fn settle<F, Fut>(limit: Duration, mut quiet: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    let mut quiet_rounds = 0;
    while started.elapsed() < limit {
        if quiet().await {
            quiet_rounds += 1;
            if quiet_rounds == 2 {
                return Some(started.elapsed());
            }
        } else {
            quiet_rounds = 0;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// True once nothing is in flight: outboxes and `queues` (but dead-letter queues)
/// empty, no rent request unfinished.
pub async fn quiet(cluster: &ProcessCluster, queues: &[(String, u64)]) -> anyhow::Result<bool> {
    for service in SERVICES {
        let database = cluster.database(service)?;
        if count(&database, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").await? > 0 {
            return Ok(false);
        }
    }
    let rental_db = cluster.database(rental::SERVICE)?;
    if count(&rental_db, "SELECT count(*) AS n FROM rent_requests WHERE state IN ('PENDING', 'VOIDING')").await? > 0 {
        return Ok(false);
    }
    Ok(queues.iter().filter(|(name, _)| !name.ends_with(".dead")).all(|(_, messages)| *messages == 0))
}
