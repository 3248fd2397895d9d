//! Rental's copy of the catalog, kept up to date by inventory's `product.created`, so
//! renting works while inventory is down.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

diesel::table! {
    catalog (product_id) {
        product_id -> Uuid,
        name -> Text,
        monthly_fee -> Int4,
        updated_at -> Timestamptz,
        care_interval_months -> Int4,
    }
}

/// Rental's copy of one catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = catalog)]
pub struct CatalogEntry {
    pub product_id: Uuid,
    pub name: String,
    pub monthly_fee: i32,
    pub care_interval_months: i32,
}

pub async fn entry(connection: &mut AsyncPgConnection, product_id: Uuid) -> QueryResult<Option<CatalogEntry>> {
    catalog::table.find(product_id).select(CatalogEntry::as_select()).first(connection).await.optional()
}

/// Records a product as inventory announced it at `announced_at`; events may arrive
/// out of order, so only a newer announcement overwrites.
pub async fn upsert(
    connection: &mut AsyncPgConnection,
    entry: &CatalogEntry,
    announced_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO catalog (product_id, name, monthly_fee, updated_at, care_interval_months) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (product_id) DO UPDATE SET name = EXCLUDED.name, monthly_fee = EXCLUDED.monthly_fee, \
         care_interval_months = EXCLUDED.care_interval_months, updated_at = EXCLUDED.updated_at \
         WHERE catalog.updated_at <= EXCLUDED.updated_at",
    )
    .bind::<diesel::sql_types::Uuid, _>(entry.product_id)
    .bind::<diesel::sql_types::Text, _>(&entry.name)
    .bind::<diesel::sql_types::Integer, _>(entry.monthly_fee)
    .bind::<diesel::sql_types::Timestamptz, _>(announced_at)
    .bind::<diesel::sql_types::Integer, _>(entry.care_interval_months)
    .execute(connection)
    .await?;
    Ok(())
}
