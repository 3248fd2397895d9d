//! Deliveries in PostgreSQL.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subgraph_kit::domain::TextEnum;
use subgraph_kit::graphql::PageRequest;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::{DeliveryStatus, Unit};

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
        unit -> Text,
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
    pub status: DeliveryStatus,
    pub requested_at: DateTime<Utc>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub unit: Unit,
}

impl DeliveryRow {
    /// A new delivery for a rental, in `status` (REQUESTED, or CANCELLED when the
    /// cancellation arrived first).
    pub fn new(
        rental_id: Uuid,
        customer_id: Uuid,
        product_id: Uuid,
        address: String,
        status: DeliveryStatus,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            rental_id,
            customer_id,
            product_id,
            address,
            status,
            requested_at: now,
            shipped_at: None,
            delivered_at: None,
            cancelled_at: (status == DeliveryStatus::Cancelled).then_some(now),
            updated_at: now,
            unit: Unit::NotAsked,
        }
    }
}

pub async fn insert(connection: &mut AsyncPgConnection, row: &DeliveryRow) -> QueryResult<()> {
    diesel::insert_into(deliveries::table).values(row).execute(connection).await?;
    Ok(())
}

/// Inserts a delivery unless its rental already has one; true if inserted.
pub async fn insert_once(connection: &mut AsyncPgConnection, row: &DeliveryRow) -> QueryResult<bool> {
    let inserted = diesel::insert_into(deliveries::table)
        .values(row)
        .on_conflict(deliveries::rental_id)
        .do_nothing()
        .execute(connection)
        .await?;
    Ok(inserted == 1)
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

/// The delivery of one rental, if it has been requested.
pub async fn find_by_rental(database: &Database, rental_id: Uuid) -> Result<Option<DeliveryRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(deliveries::table
        .filter(deliveries::rental_id.eq(rental_id))
        .select(DeliveryRow::as_select())
        .first(&mut connection)
        .await
        .optional()?)
}

/// One page of the operators' queue, oldest first, optionally of one status.
pub async fn page(
    database: &Database,
    status: Option<DeliveryStatus>,
    page: &PageRequest,
) -> Result<Vec<DeliveryRow>, ApiError> {
    let mut connection = database.connection().await?;
    let mut query = deliveries::table.select(DeliveryRow::as_select()).order(deliveries::id.asc()).into_boxed();
    if let Some(status) = status {
        query = query.filter(deliveries::status.eq(status.as_str()));
    }
    if let Some(after) = page.after {
        query = query.filter(deliveries::id.gt(after));
    }
    Ok(query.limit(page.fetch_limit()).load(&mut connection).await?)
}

/// The delivery, locked until the end of the transaction.
pub async fn lock(connection: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<DeliveryRow>> {
    deliveries::table.find(id).select(DeliveryRow::as_select()).for_update().first(connection).await.optional()
}

/// The delivery of a rental, locked until the end of the transaction.
pub async fn lock_by_rental(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<Option<DeliveryRow>> {
    deliveries::table
        .filter(deliveries::rental_id.eq(rental_id))
        .select(DeliveryRow::as_select())
        .for_update()
        .first(connection)
        .await
        .optional()
}

/// Writes a delivery's status, unit and timestamps back.
pub async fn save(connection: &mut AsyncPgConnection, row: &DeliveryRow) -> QueryResult<()> {
    diesel::update(deliveries::table.find(row.id))
        .set((
            deliveries::status.eq(&row.status),
            deliveries::shipped_at.eq(row.shipped_at),
            deliveries::delivered_at.eq(row.delivered_at),
            deliveries::cancelled_at.eq(row.cancelled_at),
            deliveries::unit.eq(&row.unit),
            deliveries::updated_at.eq(Utc::now()),
        ))
        .execute(connection)
        .await?;
    Ok(())
}
