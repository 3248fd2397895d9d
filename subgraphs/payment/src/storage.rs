//! Payments in PostgreSQL.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use subgraph_kit::db::Connection;
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

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = payments)]
pub struct PaymentRow {
    pub id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub amount: i32,
    pub card_last4: String,
    pub status: String,
    pub paid_at: DateTime<Utc>,
    pub refunded_at: Option<DateTime<Utc>>,
}

impl PaymentRow {
    pub fn status(&self) -> Result<PaymentStatus, ApiError> {
        self.status.parse().map_err(ApiError::internal)
    }
}

pub async fn insert(connection: &mut Connection, row: &PaymentRow) -> Result<(), ApiError> {
    diesel::insert_into(payments::table).values(row).execute(connection).await?;
    Ok(())
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
