//! The rentals themselves.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subgraph_kit::domain::{TextEnum, UnknownValue};
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
        payment_id -> Uuid,
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
    pub payment_id: Uuid,
}

impl RentalRow {
    pub fn status(&self) -> Result<RentalStatus, UnknownValue> {
        RentalStatus::parse(&self.status)
    }
}

/// All rentals among `ids`, in one statement.
pub async fn find_many(database: &Database, ids: &[Uuid]) -> Result<Vec<RentalRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(rentals::table.filter(rentals::id.eq_any(ids)).select(RentalRow::as_select()).load(&mut connection).await?)
}

pub async fn insert(connection: &mut AsyncPgConnection, row: &RentalRow) -> QueryResult<()> {
    diesel::insert_into(rentals::table).values(row).execute(connection).await?;
    Ok(())
}

pub async fn find(connection: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<RentalRow>> {
    rentals::table.find(id).select(RentalRow::as_select()).first(connection).await.optional()
}

/// The rental, locked until the end of the transaction.
pub async fn lock(connection: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<RentalRow>> {
    rentals::table.find(id).select(RentalRow::as_select()).for_update().first(connection).await.optional()
}

pub async fn set_status(
    connection: &mut AsyncPgConnection,
    id: Uuid,
    status: RentalStatus,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(rentals::table.find(id))
        .set((rentals::status.eq(status.as_str()), rentals::updated_at.eq(at)))
        .execute(connection)
        .await?;
    Ok(())
}
