//! The card on file of each rental (its token, brand, last four digits and expiry), and
//! the record of every change of it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

diesel::table! {
    payment_methods (rental_id) {
        rental_id -> Uuid,
        customer_id -> Uuid,
        token -> Text,
        brand -> Text,
        last4 -> Text,
        exp_month -> Int4,
        exp_year -> Int4,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    payment_method_changes (id) {
        id -> Uuid,
        rental_id -> Uuid,
        brand -> Text,
        last4 -> Text,
        changed_at -> Timestamptz,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = payment_methods)]
pub struct MethodRow {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub token: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i32,
    pub exp_year: i32,
    pub updated_at: DateTime<Utc>,
}

/// Puts `row` on file for its rental (replacing the card there), and records the change;
/// returns the change's id.
pub async fn put(connection: &mut AsyncPgConnection, row: &MethodRow) -> QueryResult<Uuid> {
    diesel::insert_into(payment_methods::table)
        .values(row)
        .on_conflict(payment_methods::rental_id)
        .do_update()
        .set((
            payment_methods::token.eq(&row.token),
            payment_methods::brand.eq(&row.brand),
            payment_methods::last4.eq(&row.last4),
            payment_methods::exp_month.eq(row.exp_month),
            payment_methods::exp_year.eq(row.exp_year),
            payment_methods::updated_at.eq(row.updated_at),
        ))
        .execute(connection)
        .await?;
    let change_id = Uuid::now_v7();
    diesel::insert_into(payment_method_changes::table)
        .values((
            payment_method_changes::id.eq(change_id),
            payment_method_changes::rental_id.eq(row.rental_id),
            payment_method_changes::brand.eq(&row.brand),
            payment_method_changes::last4.eq(&row.last4),
            payment_method_changes::changed_at.eq(row.updated_at),
        ))
        .execute(connection)
        .await?;
    Ok(change_id)
}

/// The card on file of `rental_id`, locked until the end of the transaction.
pub async fn lock(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<Option<MethodRow>> {
    payment_methods::table
        .find(rental_id)
        .select(MethodRow::as_select())
        .for_update()
        .first(connection)
        .await
        .optional()
}

/// The cards on file of `rental_ids`, in one statement.
pub async fn of_rentals(connection: &mut AsyncPgConnection, rental_ids: &[Uuid]) -> QueryResult<Vec<MethodRow>> {
    payment_methods::table
        .filter(payment_methods::rental_id.eq_any(rental_ids))
        .select(MethodRow::as_select())
        .load(connection)
        .await
}

/// The cards on file of `rental_ids`, for the graph.
pub async fn find_by_rentals(database: &Database, rental_ids: &[Uuid]) -> Result<Vec<MethodRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(of_rentals(&mut connection, rental_ids).await?)
}
