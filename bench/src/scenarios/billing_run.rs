//! The billing run: a month of many rentals falls due at once, and the whole pipeline
//! charges it: rental's contract clock announces each due period (`rental.period_due`,
//! under the rental's row lock), the relay publishes, payment invoices each period once
//! and its collector charges the card on file in batches (claim, ask the network, record),
//! and rental hears every `invoice.paid`.
//!
//! The rentals are written straight into the databases as running contracts whose
//! second month is about to start (every other step of their life is what the other
//! benchmarks measure), then released together. Only correct answers count: an invoice
//! PAID with exactly one approved capture of its amount; anything else (a decline, a
//! second capture, a period invoiced twice, a rental that never heard) is reported as an
//! error of the run.

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Double};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use subgraph_kit::Database;
use uuid::Uuid;

use crate::{BenchStack, machine};

/// How long the run may take before it is given up on.
const LIMIT: Duration = Duration::from_secs(1800);

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(database: &Database, sql: &str) -> anyhow::Result<i64> {
    let mut connection = database.connection().await.map_err(|error| anyhow::anyhow!(error.message))?;
    let rows: Vec<Count> = diesel::sql_query(sql).load(&mut connection).await?;
    Ok(rows.into_iter().next().map_or(0, |row| row.n))
}

async fn execute(database: &Database, sql: &str) -> anyhow::Result<usize> {
    let mut connection = database.connection().await.map_err(|error| anyhow::anyhow!(error.message))?;
    Ok(diesel::sql_query(sql).execute(&mut connection).await?)
}

/// Writes `rentals` running contracts of two months whose second month is not due yet
/// (no `next_period_at`), each with the approved test card on file in payment.
async fn seed(stack: &BenchStack, rentals: usize, monthly_fee: i32) -> anyhow::Result<()> {
    let rental = &stack.subgraphs.rental.database;
    let payment = &stack.subgraphs.payment.database;
    execute(
        rental,
        &format!(
            "INSERT INTO rentals (id, customer_id, product_id, months, monthly_fee, delivery_address, status, \
                                  created_at, updated_at, payment_id, term_starts_at, term_ends_at, next_period, \
                                  next_period_at, periods_paid) \
             SELECT gen_random_uuid(), gen_random_uuid(), '{product}', 2, {monthly_fee}, '1 Bench-ro, Seoul', \
                    'ACTIVE', now(), now(), gen_random_uuid(), now() - interval '1 month', now() + interval '1 month', \
                    2, NULL, 1 \
             FROM generate_series(1, {rentals})",
            product = Uuid::now_v7(),
        ),
    )
    .await?;
    execute(
        payment,
        "INSERT INTO network_cards (token, brand, last4, exp_month, exp_year, behaviour) \
         VALUES ('tok_bench', 'VISA', '4242', 12, 2099, 'APPROVE')",
    )
    .await?;
    // Each rental's card on file, in chunks (the ids come from rental's database).
    let mut connection = rental.connection().await.map_err(|error| anyhow::anyhow!(error.message))?;
    #[derive(QueryableByName)]
    struct Pair {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        customer_id: Uuid,
    }
    let pairs: Vec<Pair> = diesel::sql_query("SELECT id, customer_id FROM rentals").load(&mut connection).await?;
    drop(connection);
    let mut connection = payment.connection().await.map_err(|error| anyhow::anyhow!(error.message))?;
    for chunk in pairs.chunks(10_000) {
        diesel::sql_query(
            "INSERT INTO payment_methods (rental_id, customer_id, token, brand, last4, exp_month, exp_year, updated_at) \
             SELECT r, c, 'tok_bench', 'VISA', '4242', 12, 2099, now() FROM unnest($1::uuid[], $2::uuid[]) AS u(r, c)",
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(chunk.iter().map(|pair| pair.id).collect::<Vec<_>>())
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(
            chunk.iter().map(|pair| pair.customer_id).collect::<Vec<_>>(),
        )
        .execute(&mut connection)
        .await?;
    }
    Ok(())
}

/// Runs one billing run over `rentals` due rentals and returns the results as JSON;
/// with `physical_limit`, also measures `pgbench -N` on the same server afterwards.
pub async fn run(rentals: usize, physical_limit: bool) -> anyhow::Result<Value> {
    let stack = BenchStack::start().await?;
    let monthly_fee = 19_900;
    let seeding = Instant::now();
    seed(&stack, rentals, monthly_fee).await?;
    let seeded_in = seeding.elapsed();
    let rental = stack.subgraphs.rental.database.clone();
    let payment = stack.subgraphs.payment.database.clone();

    // Every second month starts now: the run begins.
    let started = Instant::now();
    execute(&rental, "UPDATE rentals SET next_period_at = now() WHERE next_period = 2").await?;
    let mut announced_at = None;
    let mut invoiced_at = None;
    let mut charged_at = None;
    let mut heard_at = None;
    let mut samples = Vec::new();
    let target = rentals as i64;
    while started.elapsed() < LIMIT {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let announced = count(&rental, "SELECT count(*) AS n FROM rentals WHERE next_period = 3").await?;
        let invoiced = count(&payment, "SELECT count(*) AS n FROM invoices WHERE period = 2").await?;
        let paid = count(&payment, "SELECT count(*) AS n FROM invoices WHERE period = 2 AND status = 'PAID'").await?;
        let heard = count(&rental, "SELECT count(*) AS n FROM rentals WHERE periods_paid = 2").await?;
        let now = started.elapsed();
        samples.push(json!({ "seconds": now.as_secs_f64(), "announced": announced, "invoiced": invoiced, "paid": paid, "heard": heard }));
        if announced >= target && announced_at.is_none() {
            announced_at = Some(now);
        }
        if invoiced >= target && invoiced_at.is_none() {
            invoiced_at = Some(now);
        }
        if paid >= target && charged_at.is_none() {
            charged_at = Some(now);
        }
        if heard >= target {
            heard_at = Some(now);
            break;
        }
    }
    let charged_in = charged_at.ok_or_else(|| anyhow::anyhow!("not every period was charged within {LIMIT:?}"))?;

    // Only correct answers count.
    let not_paid = count(&payment, "SELECT count(*) AS n FROM invoices WHERE period = 2 AND status <> 'PAID'").await?;
    let doubled = count(
        &payment,
        "SELECT count(*) AS n FROM (SELECT i.id FROM invoices i \
           JOIN invoice_attempts a ON a.invoice_id = i.id AND a.outcome = 'APPROVED' \
           JOIN network_captures c ON c.idempotency_key = a.idempotency_key AND c.approved AND c.amount = i.amount \
         GROUP BY i.id HAVING count(*) <> 1) wrong",
    )
    .await?;
    let captures = count(&payment, "SELECT count(*) AS n FROM network_captures WHERE approved").await?;
    let paid = count(&payment, "SELECT count(*) AS n FROM invoices WHERE status = 'PAID'").await?;
    let errors = not_paid + doubled + (captures - paid).abs() + (target - paid).max(0);

    #[derive(QueryableByName)]
    struct Lag {
        #[diesel(sql_type = Double)]
        p50: f64,
        #[diesel(sql_type = Double)]
        p99: f64,
    }
    // From a period's announcement (its invoice's creation) to its charge.
    let mut connection = payment.connection().await.map_err(|error| anyhow::anyhow!(error.message))?;
    let lag: Vec<Lag> = diesel::sql_query(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM paid_at - created_at))::float8 * 1000 AS p50, \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM paid_at - created_at))::float8 * 1000 AS p99 \
         FROM invoices WHERE period = 2 AND status = 'PAID'",
    )
    .load(&mut connection)
    .await?;
    drop(connection);
    stack.stop().await?;

    let seconds = |duration: Option<Duration>| duration.map(|duration| duration.as_secs_f64());
    let charges_per_second = rentals as f64 / charged_in.as_secs_f64();
    let mut result = json!({
        "scenario": "billing-run",
        "machine": machine(),
        "rentals": rentals,
        "seedSeconds": seeded_in.as_secs_f64(),
        "announcedSeconds": seconds(announced_at),
        "invoicedSeconds": seconds(invoiced_at),
        "chargedSeconds": charged_in.as_secs_f64(),
        "heardSeconds": seconds(heard_at),
        "chargesPerSecond": charges_per_second,
        "millionRentalsMinutes": 1_000_000.0 / charges_per_second / 60.0,
        "chargeLagMs": { "p50": lag.iter().next().map(|lag| lag.p50), "p99": lag.iter().next().map(|lag| lag.p99) },
        "errors": errors,
        "progress": samples,
    });
    if physical_limit && let Some(tps) = crate::pgbench_tps(20, 16).await? {
        result["pgbenchTps"] = json!(tps);
        result["chargesPerPgbenchTransaction"] = json!(charges_per_second / tps);
    }
    Ok(result)
}
