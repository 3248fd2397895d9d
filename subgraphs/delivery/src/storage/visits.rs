//! The visits (care and pickup) and the plan each running contract's visits follow.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subgraph_kit::graphql::PageRequest;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::{VisitKind, VisitStatus};

diesel::table! {
    visit_plans (rental_id) {
        rental_id -> Uuid,
        customer_id -> Uuid,
        product_id -> Uuid,
        address -> Text,
        care_interval_months -> Int4,
        term_starts_at -> Nullable<Timestamptz>,
        term_ends_at -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    visits (id) {
        id -> Uuid,
        rental_id -> Uuid,
        customer_id -> Uuid,
        product_id -> Uuid,
        delivery_id -> Nullable<Uuid>,
        kind -> Text,
        number -> Int4,
        status -> Text,
        address -> Text,
        planned_for -> Timestamptz,
        scheduled_for -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        first_rescheduled_at -> Nullable<Timestamptz>,
        done_at -> Nullable<Timestamptz>,
        cancelled_at -> Nullable<Timestamptz>,
        notes -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = visit_plans)]
pub struct PlanRow {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub address: String,
    pub care_interval_months: i32,
    pub term_starts_at: Option<DateTime<Utc>>,
    pub term_ends_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = visits)]
pub struct VisitRow {
    pub id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub delivery_id: Option<Uuid>,
    pub kind: VisitKind,
    pub number: i32,
    pub status: VisitStatus,
    pub address: String,
    pub planned_for: DateTime<Utc>,
    pub scheduled_for: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub first_rescheduled_at: Option<DateTime<Utc>>,
    pub done_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub notes: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl VisitRow {
    /// A visit of `plan`'s rental, scheduled for `due`.
    pub fn planned(plan: &PlanRow, kind: VisitKind, number: i32, due: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            rental_id: plan.rental_id,
            customer_id: plan.customer_id,
            product_id: plan.product_id,
            delivery_id: None,
            kind,
            number,
            status: VisitStatus::Scheduled,
            address: plan.address.clone(),
            planned_for: due,
            scheduled_for: due,
            started_at: None,
            first_rescheduled_at: None,
            done_at: None,
            cancelled_at: None,
            notes: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Inserts the plan unless the rental has one; returns the plan as stored, locked.
pub async fn plan_once(connection: &mut AsyncPgConnection, plan: &PlanRow) -> QueryResult<PlanRow> {
    diesel::insert_into(visit_plans::table).values(plan).on_conflict_do_nothing().execute(connection).await?;
    visit_plans::table.find(plan.rental_id).select(PlanRow::as_select()).for_update().first(connection).await
}

pub async fn save_plan(connection: &mut AsyncPgConnection, plan: &PlanRow) -> QueryResult<()> {
    diesel::update(visit_plans::table.find(plan.rental_id))
        .set((
            visit_plans::term_starts_at.eq(plan.term_starts_at),
            visit_plans::term_ends_at.eq(plan.term_ends_at),
            visit_plans::ended_at.eq(plan.ended_at),
            visit_plans::updated_at.eq(plan.updated_at),
        ))
        .execute(connection)
        .await?;
    Ok(())
}

/// Inserts visits; those the rental has already (same kind and number) are skipped.
/// Returns the ones inserted.
pub async fn insert_new(connection: &mut AsyncPgConnection, rows: &[VisitRow]) -> QueryResult<Vec<VisitRow>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    diesel::insert_into(visits::table)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(VisitRow::as_returning())
        .get_results(connection)
        .await
}

/// The highest care visit number of a rental (0 when none).
pub async fn last_care_number(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<i32> {
    let number: Option<i32> = visits::table
        .filter(visits::rental_id.eq(rental_id))
        .filter(visits::kind.eq(VisitKind::Care))
        .select(diesel::dsl::max(visits::number))
        .first(connection)
        .await?;
    Ok(number.unwrap_or(0))
}

/// The care visits of a rental not done or called off yet, locked.
pub async fn lock_open_care(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<Vec<VisitRow>> {
    visits::table
        .filter(visits::rental_id.eq(rental_id))
        .filter(visits::kind.eq(VisitKind::Care))
        .filter(visits::status.eq_any([VisitStatus::Scheduled, VisitStatus::InProgress]))
        .select(VisitRow::as_select())
        .for_update()
        .load(connection)
        .await
}

/// The visit, locked until the end of the transaction.
pub async fn lock(connection: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<VisitRow>> {
    visits::table.find(id).select(VisitRow::as_select()).for_update().first(connection).await.optional()
}

/// Writes back a visit's status, dates and notes.
pub async fn save_all(connection: &mut AsyncPgConnection, rows: &[VisitRow]) -> QueryResult<()> {
    for row in rows {
        diesel::update(visits::table.find(row.id))
            .set((
                visits::status.eq(row.status),
                visits::scheduled_for.eq(row.scheduled_for),
                visits::started_at.eq(row.started_at),
                visits::first_rescheduled_at.eq(row.first_rescheduled_at),
                visits::done_at.eq(row.done_at),
                visits::cancelled_at.eq(row.cancelled_at),
                visits::notes.eq(&row.notes),
                visits::updated_at.eq(row.updated_at),
            ))
            .execute(connection)
            .await?;
    }
    Ok(())
}

/// Visits by their own ids, in one statement.
pub async fn find_many(database: &Database, ids: &[Uuid]) -> Result<Vec<VisitRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(visits::table.filter(visits::id.eq_any(ids)).select(VisitRow::as_select()).load(&mut connection).await?)
}

/// The visits of the given rentals, by date, in one statement.
pub async fn find_by_rentals(database: &Database, rental_ids: &[Uuid]) -> Result<Vec<VisitRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(visits::table
        .filter(visits::rental_id.eq_any(rental_ids))
        .order((visits::rental_id, visits::scheduled_for, visits::id))
        .select(VisitRow::as_select())
        .load(&mut connection)
        .await?)
}

/// What the technicians' queue shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueFilter {
    pub kind: Option<VisitKind>,
    pub status: Option<VisitStatus>,
    pub due_before: Option<DateTime<Utc>>,
}

/// One page of the technicians' queue, oldest due first; the page after a visit starts
/// after that visit's place (its date, then its id).
pub async fn page(database: &Database, filter: QueueFilter, page: &PageRequest) -> Result<Vec<VisitRow>, ApiError> {
    let mut connection = database.connection().await?;
    let mut query = visits::table.select(VisitRow::as_select()).order((visits::scheduled_for, visits::id)).into_boxed();
    if let Some(kind) = filter.kind {
        query = query.filter(visits::kind.eq(kind));
    }
    if let Some(status) = filter.status {
        query = query.filter(visits::status.eq(status));
    }
    if let Some(due_before) = filter.due_before {
        query = query.filter(visits::scheduled_for.lt(due_before));
    }
    if let Some(after) = page.after {
        let place = visits::table
            .find(after)
            .select((visits::scheduled_for, visits::id))
            .first::<(DateTime<Utc>, Uuid)>(&mut connection)
            .await
            .optional()?;
        let Some((at, id)) = place else {
            return Err(ApiError::bad_input(
                "the cursor names a visit that no longer exists: start from the first page",
            ));
        };
        query = query.filter(visits::scheduled_for.gt(at).or(visits::scheduled_for.eq(at).and(visits::id.gt(id))));
    }
    Ok(query.limit(page.fetch_limit()).load(&mut connection).await?)
}
