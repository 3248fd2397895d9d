//! Deliveries in PostgreSQL.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use subgraph_kit::db::Connection;
use subgraph_kit::graphql::PageRequest;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::DeliveryStatus;

diesel::table! {
    deliveries (id) {
        id -> Uuid,
        rental_id -> Uuid,
        customer_id -> Uuid,
        product_id -> Uuid,
        address -> Text,
        status -> Text,
        requested_at -> Timestamptz,
        shipped_at -> Nullable<Timestamptz>,
        delivered_at -> Nullable<Timestamptz>,
        cancelled_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = deliveries)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub address: String,
    pub status: String,
    pub requested_at: DateTime<Utc>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl DeliveryRow {
    pub fn status(&self) -> Result<DeliveryStatus, ApiError> {
        self.status.parse().map_err(ApiError::internal)
    }
}

pub async fn insert(connection: &mut Connection, row: &DeliveryRow) -> Result<(), ApiError> {
    diesel::insert_into(deliveries::table).values(row).execute(connection).await?;
    Ok(())
}

/// Deliveries by their own ids, in one statement.
pub async fn find_many(database: &Database, ids: &[Uuid]) -> Result<Vec<DeliveryRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(deliveries::table
        .filter(deliveries::id.eq_any(ids))
        .select(DeliveryRow::as_select())
        .load(&mut connection)
        .await?)
}

/// Deliveries of the given rentals, in one statement.
pub async fn find_by_rentals(database: &Database, rental_ids: &[Uuid]) -> Result<Vec<DeliveryRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(deliveries::table
        .filter(deliveries::rental_id.eq_any(rental_ids))
        .select(DeliveryRow::as_select())
        .load(&mut connection)
        .await?)
}

/// One page of the operators' queue, oldest first, optionally of one status.
pub async fn page(
    connection: &mut Connection,
    status: Option<DeliveryStatus>,
    page: &PageRequest,
) -> Result<Vec<DeliveryRow>, ApiError> {
    let mut query = deliveries::table.select(DeliveryRow::as_select()).order(deliveries::id.asc()).into_boxed();
    if let Some(status) = status {
        query = query.filter(deliveries::status.eq(status.as_str()));
    }
    if let Some(after) = page.after {
        query = query.filter(deliveries::id.gt(after));
    }
    Ok(query.limit(page.fetch_limit()).load(connection).await?)
}
