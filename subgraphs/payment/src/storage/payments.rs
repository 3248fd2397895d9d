//! Payments, and the rentals whose charge was called off.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::PaymentStatus;

diesel::table! {
    payments (id) {
        id -> Uuid,
        rental_id -> Uuid,
        customer_id -> Uuid,
        amount -> Int4,
        card_last4 -> Text,
        status -> Text,
        paid_at -> Timestamptz,
        refunded_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    voided_rentals (rental_id) {
        rental_id -> Uuid,
        voided_at -> Timestamptz,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = payments)]
pub struct PaymentRow {
    pub id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub amount: i32,
    pub card_last4: String,
    pub status: PaymentStatus,
    pub paid_at: DateTime<Utc>,
    pub refunded_at: Option<DateTime<Utc>>,
}

/// Payments by their own ids, in one statement.
pub async fn find_many(database: &Database, ids: &[Uuid]) -> Result<Vec<PaymentRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(payments::table.filter(payments::id.eq_any(ids)).select(PaymentRow::as_select()).load(&mut connection).await?)
}

/// Payments of the given rentals, in one statement.
pub async fn find_by_rentals(database: &Database, rental_ids: &[Uuid]) -> Result<Vec<PaymentRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(payments::table
        .filter(payments::rental_id.eq_any(rental_ids))
        .select(PaymentRow::as_select())
        .load(&mut connection)
        .await?)
}

/// Serializes every change of one rental's money: a charge, a void, a refund, an
/// invoice's attempt being recorded, a card replaced. Each takes this lock first (before
/// any invoice row), so they never interleave, and the account changes of a rental are
/// numbered (`seq`) in the order they commit.
pub async fn lock_rental(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<()> {
    lock_rentals(connection, &[rental_id]).await
}

/// [`lock_rental`] for several rentals, in a fixed order so that no two transactions wait
/// for each other in a cycle.
pub async fn lock_rentals(connection: &mut AsyncPgConnection, rental_ids: &[Uuid]) -> QueryResult<()> {
    let mut keys: Vec<String> = rental_ids.iter().map(Uuid::to_string).collect();
    keys.sort_unstable();
    keys.dedup();
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended(key, 0)) FROM unnest($1) AS key")
        .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(keys)
        .execute(connection)
        .await?;
    Ok(())
}

pub async fn find_by_rental(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .filter(payments::rental_id.eq(rental_id))
        .select(PaymentRow::as_select())
        .first(connection)
        .await
        .optional()
}

pub async fn is_voided(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(voided_rentals::table.find(rental_id))).get_result(connection).await
}

pub async fn mark_voided(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<()> {
    diesel::insert_into(voided_rentals::table)
        .values(voided_rentals::rental_id.eq(rental_id))
        .on_conflict_do_nothing()
        .execute(connection)
        .await?;
    Ok(())
}

pub async fn insert(connection: &mut AsyncPgConnection, row: &PaymentRow) -> QueryResult<()> {
    diesel::insert_into(payments::table).values(row).execute(connection).await?;
    Ok(())
}

pub async fn mark_refunded(connection: &mut AsyncPgConnection, id: Uuid, at: DateTime<Utc>) -> QueryResult<()> {
    diesel::update(payments::table.find(id))
        .set((payments::status.eq(PaymentStatus::Refunded), payments::refunded_at.eq(at)))
        .execute(connection)
        .await?;
    Ok(())
}
