//! The customers' history (the CQRS read model): one row per rental with its status
//! and its timeline, so "my rentals" is one indexed read per page.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subgraph_kit::domain::TextEnum;
use subgraph_kit::graphql::PageRequest;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::RentalStatus;

diesel::table! {
    rental_history (rental_id) {
        rental_id -> Uuid,
        customer_id -> Uuid,
        product_id -> Uuid,
        months -> Int4,
        monthly_fee -> Int4,
        delivery_address -> Text,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        timeline -> Jsonb,
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = rental_history)]
pub struct HistoryRow {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub months: i32,
    pub monthly_fee: i32,
    pub delivery_address: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub timeline: serde_json::Value,
}

/// Writes the rental's history row from its rental row and timeline. Deterministic:
/// whatever order the events came in, the row ends the same. Nothing happens while the
/// rental itself is not committed yet; its commit projects it.
pub async fn project(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO rental_history (rental_id, customer_id, product_id, months, monthly_fee, delivery_address, \
                                     status, created_at, updated_at, timeline) \
         SELECT r.id, r.customer_id, r.product_id, r.months, r.monthly_fee, r.delivery_address, r.status, \
                r.created_at, r.updated_at, \
                COALESCE((SELECT jsonb_agg(jsonb_build_object('kind', t.kind, 'at', t.at) ORDER BY t.at, t.kind) \
                          FROM rental_timeline t WHERE t.rental_id = r.id), '[]'::jsonb) \
         FROM rentals r WHERE r.id = $1 \
         ON CONFLICT (rental_id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at, \
                                               timeline = EXCLUDED.timeline",
    )
    .bind::<diesel::sql_types::Uuid, _>(rental_id)
    .execute(connection)
    .await?;
    Ok(())
}

/// One page of a customer's history, newest first: one indexed read.
pub async fn page(
    database: &Database,
    customer_id: Uuid,
    status: Option<RentalStatus>,
    page: &PageRequest,
) -> Result<Vec<HistoryRow>, ApiError> {
    let mut connection = database.connection().await?;
    let mut query = rental_history::table
        .filter(rental_history::customer_id.eq(customer_id))
        .select(HistoryRow::as_select())
        .order(rental_history::rental_id.desc())
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(rental_history::status.eq(status.as_str()));
    }
    if let Some(after) = page.after {
        query = query.filter(rental_history::rental_id.lt(after));
    }
    Ok(query.limit(page.fetch_limit()).load(&mut connection).await?)
}

pub async fn delete_all(connection: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel::delete(rental_history::table).execute(connection).await?;
    Ok(())
}
