//! Invoices (one per period of a rental, and at most one termination fee) and every
//! attempt to charge them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subgraph_kit::graphql::PageRequest;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::{InvoiceKind, InvoiceStatus};

diesel::table! {
    invoices (id) {
        id -> Uuid,
        rental_id -> Uuid,
        customer_id -> Uuid,
        kind -> Text,
        period -> Nullable<Int4>,
        period_start -> Nullable<Timestamptz>,
        period_end -> Nullable<Timestamptz>,
        amount -> Int4,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Nullable<Timestamptz>,
        first_failed_at -> Nullable<Timestamptz>,
        failure_reason -> Nullable<Text>,
        paid_at -> Nullable<Timestamptz>,
        voided_at -> Nullable<Timestamptz>,
        refunded_at -> Nullable<Timestamptz>,
        payment_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    invoice_attempts (invoice_id, attempt) {
        invoice_id -> Uuid,
        attempt -> Int4,
        idempotency_key -> Text,
        token -> Text,
        started_at -> Timestamptz,
        outcome -> Nullable<Text>,
        decline_reason -> Nullable<Text>,
        finished_at -> Nullable<Timestamptz>,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, QueryableByName)]
#[diesel(table_name = invoices)]
pub struct InvoiceRow {
    pub id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub kind: InvoiceKind,
    pub period: Option<i32>,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub amount: i32,
    pub status: InvoiceStatus,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub first_failed_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub voided_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
    pub payment_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl InvoiceRow {
    /// A new invoice, due at once.
    pub fn due(
        rental_id: Uuid,
        customer_id: Uuid,
        kind: InvoiceKind,
        period: Option<i32>,
        span: Option<(DateTime<Utc>, DateTime<Utc>)>,
        amount: i32,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            rental_id,
            customer_id,
            kind,
            period,
            period_start: span.map(|(start, _)| start),
            period_end: span.map(|(_, end)| end),
            amount,
            status: InvoiceStatus::Pending,
            attempts: 0,
            next_attempt_at: Some(now),
            first_failed_at: None,
            failure_reason: None,
            paid_at: None,
            voided_at: None,
            refunded_at: None,
            payment_id: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// One attempt to charge an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = invoice_attempts)]
pub struct AttemptRow {
    pub invoice_id: Uuid,
    pub attempt: i32,
    pub idempotency_key: String,
    pub token: String,
    pub started_at: DateTime<Utc>,
    pub outcome: Option<String>,
    pub decline_reason: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub const APPROVED: &str = "APPROVED";
pub const DECLINED: &str = "DECLINED";

/// Inserts an invoice unless its (rental, period) or its rental's termination fee is
/// invoiced already; true if inserted.
pub async fn insert_once(connection: &mut AsyncPgConnection, row: &InvoiceRow) -> QueryResult<bool> {
    let inserted =
        diesel::insert_into(invoices::table).values(row).on_conflict_do_nothing().execute(connection).await?;
    Ok(inserted == 1)
}

pub async fn insert_attempts(connection: &mut AsyncPgConnection, rows: &[AttemptRow]) -> QueryResult<()> {
    if !rows.is_empty() {
        diesel::insert_into(invoice_attempts::table).values(rows).execute(connection).await?;
    }
    Ok(())
}

/// Invoices by their own ids, in one statement.
pub async fn find_many(database: &Database, ids: &[Uuid]) -> Result<Vec<InvoiceRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(invoices::table.filter(invoices::id.eq_any(ids)).select(InvoiceRow::as_select()).load(&mut connection).await?)
}

/// The invoices of the given rentals, oldest first, in one statement.
pub async fn find_by_rentals(database: &Database, rental_ids: &[Uuid]) -> Result<Vec<InvoiceRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(invoices::table
        .filter(invoices::rental_id.eq_any(rental_ids))
        .order((invoices::rental_id, invoices::created_at, invoices::id))
        .select(InvoiceRow::as_select())
        .load(&mut connection)
        .await?)
}

/// One page of every customer's invoices, oldest first, optionally of one status.
pub async fn page(
    database: &Database,
    status: Option<InvoiceStatus>,
    page: &PageRequest,
) -> Result<Vec<InvoiceRow>, ApiError> {
    let mut connection = database.connection().await?;
    let mut query = invoices::table.select(InvoiceRow::as_select()).order(invoices::id.asc()).into_boxed();
    if let Some(status) = status {
        query = query.filter(invoices::status.eq(status));
    }
    if let Some(after) = page.after {
        query = query.filter(invoices::id.gt(after));
    }
    Ok(query.limit(page.fetch_limit()).load(&mut connection).await?)
}

pub async fn find(connection: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<InvoiceRow>> {
    invoices::table.find(id).select(InvoiceRow::as_select()).first(connection).await.optional()
}

/// The invoice, locked until the end of the transaction.
pub async fn lock(connection: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<InvoiceRow>> {
    invoices::table.find(id).select(InvoiceRow::as_select()).for_update().first(connection).await.optional()
}

/// The invoices of `ids`, locked until the end of the transaction.
pub async fn lock_many(connection: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<InvoiceRow>> {
    invoices::table
        .filter(invoices::id.eq_any(ids))
        .order(invoices::id)
        .select(InvoiceRow::as_select())
        .for_update()
        .load(connection)
        .await
}

/// Up to `limit` invoices due for an attempt at `now`, oldest due first, locked; those
/// another collector holds are skipped.
pub async fn lock_due(
    connection: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<InvoiceRow>> {
    invoices::table
        .filter(invoices::next_attempt_at.le(now))
        .order(invoices::next_attempt_at)
        .limit(limit)
        .select(InvoiceRow::as_select())
        .for_update()
        .skip_locked()
        .load(connection)
        .await
}

/// The failed invoices of a rental that are still being retried.
pub async fn retrying(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<Vec<Uuid>> {
    invoices::table
        .filter(invoices::rental_id.eq(rental_id))
        .filter(invoices::status.eq(InvoiceStatus::Failed))
        .filter(invoices::next_attempt_at.is_not_null())
        .select(invoices::id)
        .load(connection)
        .await
}

/// The open attempt of each of `invoice_ids` that has one.
pub async fn open_attempts(connection: &mut AsyncPgConnection, invoice_ids: &[Uuid]) -> QueryResult<Vec<AttemptRow>> {
    invoice_attempts::table
        .filter(invoice_attempts::invoice_id.eq_any(invoice_ids))
        .filter(invoice_attempts::outcome.is_null())
        .select(AttemptRow::as_select())
        .load(connection)
        .await
}

/// Writes back what an attempt changed on each invoice: status, attempts, when it is
/// tried next, the failure, and when it was paid.
pub async fn save_all(connection: &mut AsyncPgConnection, rows: &[InvoiceRow], now: DateTime<Utc>) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&InvoiceRow) -> Option<DateTime<Utc>>| rows.iter().map(f).collect::<Vec<_>>();
    diesel::sql_query(
        "UPDATE invoices i SET status = u.status, attempts = u.attempts, next_attempt_at = u.next_attempt_at, \
                first_failed_at = u.first_failed_at, failure_reason = u.failure_reason, paid_at = u.paid_at, \
                voided_at = u.voided_at, refunded_at = u.refunded_at, period_start = u.period_start, \
                period_end = u.period_end, updated_at = $12 \
         FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[], $5::timestamptz[], $6::text[], \
                     $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[]) \
              AS u(id, status, attempts, next_attempt_at, first_failed_at, failure_reason, paid_at, voided_at, \
                   refunded_at, period_start, period_end) \
         WHERE i.id = u.id",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(rows.iter().map(|row| row.id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|row| row.status).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(rows.iter().map(|row| row.attempts).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(column(|row| row.next_attempt_at))
    .bind::<Array<Nullable<Timestamptz>>, _>(column(|row| row.first_failed_at))
    .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|row| row.failure_reason.clone()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(column(|row| row.paid_at))
    .bind::<Array<Nullable<Timestamptz>>, _>(column(|row| row.voided_at))
    .bind::<Array<Nullable<Timestamptz>>, _>(column(|row| row.refunded_at))
    .bind::<Array<Nullable<Timestamptz>>, _>(column(|row| row.period_start))
    .bind::<Array<Nullable<Timestamptz>>, _>(column(|row| row.period_end))
    .bind::<Timestamptz, _>(now)
    .execute(connection)
    .await?;
    Ok(())
}

/// Closes the open attempts of `outcomes` (invoice, attempt, APPROVED or DECLINED, the
/// reason), at `now`.
pub async fn close_attempts(
    connection: &mut AsyncPgConnection,
    outcomes: &[(Uuid, i32, &'static str, Option<String>)],
    now: DateTime<Utc>,
) -> QueryResult<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "UPDATE invoice_attempts a SET outcome = u.outcome, decline_reason = u.reason, finished_at = $5 \
         FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[]) AS u(invoice_id, attempt, outcome, reason) \
         WHERE a.invoice_id = u.invoice_id AND a.attempt = u.attempt AND a.outcome IS NULL",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(outcomes.iter().map(|o| o.0).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(outcomes.iter().map(|o| o.1).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(outcomes.iter().map(|o| o.2).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(outcomes.iter().map(|o| o.3.clone()).collect::<Vec<_>>())
    .bind::<Timestamptz, _>(now)
    .execute(connection)
    .await?;
    Ok(())
}

/// For each of `rental_ids`: how many of its invoices are FAILED.
pub async fn outstanding(connection: &mut AsyncPgConnection, rental_ids: &[Uuid]) -> QueryResult<HashMap<Uuid, i32>> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        rental_id: Uuid,
        #[diesel(sql_type = Integer)]
        failed: i32,
    }
    let counts: Vec<Count> = diesel::sql_query(
        "SELECT r.id AS rental_id, (SELECT count(*) FROM invoices i WHERE i.rental_id = r.id AND i.status = 'FAILED')::int \
                AS failed \
         FROM unnest($1::uuid[]) AS r(id)",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(rental_ids)
    .load(connection)
    .await?;
    Ok(counts.into_iter().map(|count| (count.rental_id, count.failed)).collect())
}

/// `count` numbers that order the changes of rentals' accounts.
pub async fn next_seqs(connection: &mut AsyncPgConnection, count: usize) -> QueryResult<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Seq {
        #[diesel(sql_type = BigInt)]
        seq: i64,
    }
    let seqs: Vec<Seq> = diesel::sql_query("SELECT nextval('billing_seq') AS seq FROM generate_series(1, $1)")
        .bind::<Integer, _>(count as i32)
        .load(connection)
        .await?;
    Ok(seqs.into_iter().map(|row| row.seq).collect())
}

/// The first-month invoice of a rental (paid at rent), locked.
pub async fn lock_first(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<Option<InvoiceRow>> {
    invoices::table
        .filter(invoices::rental_id.eq(rental_id))
        .filter(invoices::period.eq(1))
        .select(InvoiceRow::as_select())
        .for_update()
        .first(connection)
        .await
        .optional()
}

/// Every attempt of every invoice (for the history's rebuild and the audit): invoice,
/// attempt, outcome, when it finished.
pub async fn finished_attempts(
    connection: &mut AsyncPgConnection,
) -> QueryResult<Vec<(Uuid, i32, Option<String>, Option<DateTime<Utc>>)>> {
    invoice_attempts::table
        .filter(invoice_attempts::outcome.is_not_null())
        .select((
            invoice_attempts::invoice_id,
            invoice_attempts::attempt,
            invoice_attempts::outcome,
            invoice_attempts::finished_at,
        ))
        .load(connection)
        .await
}
