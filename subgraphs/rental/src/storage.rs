//! Rentals in PostgreSQL.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use subgraph_kit::db::Connection;
use subgraph_kit::graphql::PageRequest;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::RentalStatus;

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
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RentalRow {
    pub fn status(&self) -> Result<RentalStatus, ApiError> {
        self.status.parse().map_err(ApiError::internal)
    }
}

pub async fn insert(connection: &mut Connection, row: &RentalRow) -> Result<(), ApiError> {
    diesel::insert_into(rentals::table).values(row).execute(connection).await?;
    Ok(())
}

/// All rentals among `ids`, in one statement.
pub async fn find_many(database: &Database, ids: &[Uuid]) -> Result<Vec<RentalRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(rentals::table.filter(rentals::id.eq_any(ids)).select(RentalRow::as_select()).load(&mut connection).await?)
}

/// One page of a customer's rentals, newest first, optionally of one status.
pub async fn page_for_customer(
    connection: &mut Connection,
    customer_id: Uuid,
    status: Option<RentalStatus>,
    page: &PageRequest,
) -> Result<Vec<RentalRow>, ApiError> {
    let mut query = rentals::table
        .filter(rentals::customer_id.eq(customer_id))
        .select(RentalRow::as_select())
        .order(rentals::id.desc())
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(rentals::status.eq(status.as_str()));
    }
    if let Some(after) = page.after {
        query = query.filter(rentals::id.lt(after));
    }
    Ok(query.limit(page.fetch_limit()).load(connection).await?)
}
