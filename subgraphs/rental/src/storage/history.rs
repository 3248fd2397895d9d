//! The customers' history (the CQRS read model): one row per rental with its status
//! and its timeline, so "my rentals" is one indexed read per page.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::FutureExt;
use futures::future::BoxFuture;
use subgraph_kit::db::Projection;
use subgraph_kit::graphql::PageRequest;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::{EndReason, RentalStatus};

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
        term_starts_at -> Nullable<Timestamptz>,
        term_ends_at -> Nullable<Timestamptz>,
        next_period_at -> Nullable<Timestamptz>,
        periods_paid -> Int4,
        end_reason -> Nullable<Text>,
        ended_at -> Nullable<Timestamptz>,
        termination_fee -> Nullable<Int4>,
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
    pub status: RentalStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub timeline: serde_json::Value,
    pub term_starts_at: Option<DateTime<Utc>>,
    pub term_ends_at: Option<DateTime<Utc>>,
    pub next_period_at: Option<DateTime<Utc>>,
    pub periods_paid: i32,
    pub end_reason: Option<EndReason>,
    pub ended_at: Option<DateTime<Utc>>,
    pub termination_fee: Option<i32>,
}

/// The notification channel that says "this rental's history changed".
pub const ACTIVITY_CHANNEL: &str = "rental_activity";

/// The history as a [`Projection`]: every transaction that changes a rental or its
/// timeline (`rentals::insert`, `rentals::set_status`, `timeline::record`,
/// `timeline::forget` touch the rental) rewrites the rental's history row before it
/// commits, under the rental's projection lock.
pub struct HistoryProjection;

impl Projection for HistoryProjection {
    fn name(&self) -> &'static str {
        "rental_history"
    }

    /// Each projected rental is announced on this channel after the commit: the live
    /// activity streams of every replica listen (`service::activity`).
    fn notify_channel(&self) -> Option<&'static str> {
        Some(ACTIVITY_CHANNEL)
    }

    fn project<'c>(
        &'c self,
        connection: &'c mut AsyncPgConnection,
        keys: &'c [Uuid],
    ) -> BoxFuture<'c, QueryResult<()>> {
        project(connection, keys).boxed()
    }
}

/// Writes the history rows of `rental_ids` from their rental rows and timelines.
/// Deterministic: whatever order the events came in, a row ends the same. A rental that
/// is not committed yet has no row; its own commit projects it.
async fn project(connection: &mut AsyncPgConnection, rental_ids: &[Uuid]) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO rental_history (rental_id, customer_id, product_id, months, monthly_fee, delivery_address, \
                                     status, created_at, updated_at, timeline, term_starts_at, term_ends_at, \
                                     next_period_at, periods_paid, end_reason, ended_at, termination_fee) \
         SELECT r.id, r.customer_id, r.product_id, r.months, r.monthly_fee, r.delivery_address, r.status, \
                r.created_at, r.updated_at, \
                COALESCE((SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object( \
                                     'kind', t.kind, 'at', t.at, 'period', t.period, 'invoiceId', t.invoice_id, \
                                     'visitId', t.visit_id)) \
                                 ORDER BY t.at, t.kind, t.occurrence) \
                          FROM rental_timeline t WHERE t.rental_id = r.id), '[]'::jsonb), \
                r.term_starts_at, r.term_ends_at, r.next_period_at, r.periods_paid, r.end_reason, r.ended_at, \
                r.termination_fee \
         FROM rentals r WHERE r.id = ANY($1) \
         ON CONFLICT (rental_id) DO UPDATE SET months = EXCLUDED.months, status = EXCLUDED.status, \
                updated_at = EXCLUDED.updated_at, timeline = EXCLUDED.timeline, \
                term_starts_at = EXCLUDED.term_starts_at, term_ends_at = EXCLUDED.term_ends_at, \
                next_period_at = EXCLUDED.next_period_at, periods_paid = EXCLUDED.periods_paid, \
                end_reason = EXCLUDED.end_reason, ended_at = EXCLUDED.ended_at, \
                termination_fee = EXCLUDED.termination_fee",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(rental_ids)
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
        query = query.filter(rental_history::status.eq(status));
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
