//! The rentals themselves, with their contract: the term, the next period to be
//! announced as due, how it ended.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Integer, Nullable, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subgraph_kit::{ApiError, Database, Tx};
use uuid::Uuid;

use crate::domain::{EndReason, RentalStatus, Term};

diesel::table! {
    rentals (id) {
        id -> Uuid,
        customer_id -> Uuid,
        product_id -> Uuid,
        months -> Int4,
        monthly_fee -> Int4,
        delivery_address -> Text,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        payment_id -> Uuid,
        term_starts_at -> Nullable<Timestamptz>,
        term_ends_at -> Nullable<Timestamptz>,
        next_period -> Int4,
        next_period_at -> Nullable<Timestamptz>,
        periods_paid -> Int4,
        billing_seq -> Int8,
        end_reason -> Nullable<Text>,
        ended_at -> Nullable<Timestamptz>,
        termination_fee -> Nullable<Int4>,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = rentals)]
pub struct RentalRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub months: i32,
    pub monthly_fee: i32,
    pub delivery_address: String,
    pub status: RentalStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub payment_id: Uuid,
    pub term_starts_at: Option<DateTime<Utc>>,
    pub term_ends_at: Option<DateTime<Utc>>,
    /// The next period to be announced as due, and when it starts (none: every period
    /// of the term has been announced).
    pub next_period: i32,
    pub next_period_at: Option<DateTime<Utc>>,
    pub periods_paid: i32,
    /// The newest change of the rental's account applied here (payment's `seq`).
    pub billing_seq: i64,
    pub end_reason: Option<EndReason>,
    pub ended_at: Option<DateTime<Utc>>,
    pub termination_fee: Option<i32>,
}

impl RentalRow {
    /// A rental as `rent` commits it: paid for its first month, not delivered yet.
    pub fn accepted(
        id: Uuid,
        customer_id: Uuid,
        product_id: Uuid,
        months: i32,
        monthly_fee: i32,
        delivery_address: String,
        payment_id: Uuid,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            customer_id,
            product_id,
            months,
            monthly_fee,
            delivery_address,
            status: RentalStatus::Accepted,
            created_at: now,
            updated_at: now,
            payment_id,
            term_starts_at: None,
            term_ends_at: None,
            next_period: 2,
            next_period_at: None,
            periods_paid: 1,
            billing_seq: 0,
            end_reason: None,
            ended_at: None,
            termination_fee: None,
        }
    }

    /// The term, once it has started.
    pub fn term(&self) -> Option<Term> {
        self.term_starts_at.map(|starts_at| Term { starts_at, months: self.months })
    }
}

/// All rentals among `ids`, in one statement.
pub async fn find_many(database: &Database, ids: &[Uuid]) -> Result<Vec<RentalRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(rentals::table.filter(rentals::id.eq_any(ids)).select(RentalRow::as_select()).load(&mut connection).await?)
}

pub async fn insert(tx: &mut Tx<'_>, row: &RentalRow) -> QueryResult<()> {
    diesel::insert_into(rentals::table).values(row).execute(&mut **tx).await?;
    tx.touch(row.id);
    Ok(())
}

pub async fn find(connection: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<RentalRow>> {
    rentals::table.find(id).select(RentalRow::as_select()).first(connection).await.optional()
}

/// The rental, locked until the end of the transaction.
pub async fn lock(connection: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<RentalRow>> {
    rentals::table.find(id).select(RentalRow::as_select()).for_update().first(connection).await.optional()
}

/// Writes back everything a use case may change on a rental (status, term, schedule,
/// account, end), with `updated_at`.
pub async fn save(tx: &mut Tx<'_>, row: &RentalRow) -> QueryResult<()> {
    save_all(tx, std::slice::from_ref(row)).await
}

/// [`save`] for many rentals, in one statement.
pub async fn save_all(tx: &mut Tx<'_>, rows: &[RentalRow]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let times = |f: fn(&RentalRow) -> Option<DateTime<Utc>>| rows.iter().map(f).collect::<Vec<_>>();
    diesel::sql_query(
        "UPDATE rentals r SET status = u.status, months = u.months, term_starts_at = u.term_starts_at, \
                term_ends_at = u.term_ends_at, next_period = u.next_period, next_period_at = u.next_period_at, \
                periods_paid = u.periods_paid, billing_seq = u.billing_seq, end_reason = u.end_reason, \
                ended_at = u.ended_at, termination_fee = u.termination_fee, updated_at = u.updated_at \
         FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[], $5::timestamptz[], $6::int[], \
                     $7::timestamptz[], $8::int[], $9::bigint[], $10::text[], $11::timestamptz[], $12::int[], \
                     $13::timestamptz[]) \
              AS u(id, status, months, term_starts_at, term_ends_at, next_period, next_period_at, periods_paid, \
                   billing_seq, end_reason, ended_at, termination_fee, updated_at) \
         WHERE r.id = u.id",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(rows.iter().map(|row| row.id).collect::<Vec<_>>())
    .bind::<Array<diesel::sql_types::Text>, _>(rows.iter().map(|row| row.status).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(rows.iter().map(|row| row.months).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(times(|row| row.term_starts_at))
    .bind::<Array<Nullable<Timestamptz>>, _>(times(|row| row.term_ends_at))
    .bind::<Array<Integer>, _>(rows.iter().map(|row| row.next_period).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(times(|row| row.next_period_at))
    .bind::<Array<Integer>, _>(rows.iter().map(|row| row.periods_paid).collect::<Vec<_>>())
    .bind::<Array<diesel::sql_types::BigInt>, _>(rows.iter().map(|row| row.billing_seq).collect::<Vec<_>>())
    .bind::<Array<Nullable<diesel::sql_types::Text>>, _>(rows.iter().map(|row| row.end_reason).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(times(|row| row.ended_at))
    .bind::<Array<Nullable<Integer>>, _>(rows.iter().map(|row| row.termination_fee).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(rows.iter().map(|row| row.updated_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    for row in rows {
        tx.touch(row.id);
    }
    Ok(())
}

/// Up to `limit` running rentals whose next period has started by `now`, locked; those
/// another replica's contract clock holds are skipped.
pub async fn lock_with_period_due(
    connection: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<RentalRow>> {
    rentals::table
        .filter(rentals::status.eq_any([RentalStatus::Active, RentalStatus::PastDue]))
        .filter(rentals::next_period_at.le(now))
        .order(rentals::next_period_at)
        .limit(limit)
        .select(RentalRow::as_select())
        .for_update()
        .skip_locked()
        .load(connection)
        .await
}

/// Up to `limit` active rentals whose term has ended by `now` with every period
/// announced, locked; those another replica's contract clock holds are skipped.
pub async fn lock_with_term_over(
    connection: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<RentalRow>> {
    rentals::table
        .filter(rentals::status.eq(RentalStatus::Active))
        .filter(rentals::next_period_at.is_null())
        .filter(rentals::term_ends_at.le(now))
        .order(rentals::term_ends_at)
        .limit(limit)
        .select(RentalRow::as_select())
        .for_update()
        .skip_locked()
        .load(connection)
        .await
}
