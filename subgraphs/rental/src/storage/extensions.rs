//! Each extension of a contract, for the history (EXTENDED) and its rebuild.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

diesel::table! {
    rental_extensions (id) {
        id -> Uuid,
        rental_id -> Uuid,
        added_months -> Int4,
        months_after -> Int4,
        at -> Timestamptz,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = rental_extensions)]
pub struct ExtensionRow {
    pub id: Uuid,
    pub rental_id: Uuid,
    pub added_months: i32,
    pub months_after: i32,
    pub at: DateTime<Utc>,
}

pub async fn insert(connection: &mut AsyncPgConnection, row: &ExtensionRow) -> QueryResult<()> {
    diesel::insert_into(rental_extensions::table).values(row).execute(connection).await?;
    Ok(())
}

/// Every extension, for a rebuild of the history.
pub async fn all(connection: &mut AsyncPgConnection) -> QueryResult<Vec<ExtensionRow>> {
    rental_extensions::table.select(ExtensionRow::as_select()).load(connection).await
}
