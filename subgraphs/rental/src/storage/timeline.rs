//! The steps of each rental's life, one row per (rental, kind, occurrence), from every
//! service's events and rental's own changes. A step that happens once has the
//! occurrence `''`; a repeated one names which (`period:3`, `invoice:<id>:<attempt>`),
//! so the same step learned twice is still one row.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subgraph_kit::{ApiError, Database, Tx};
use uuid::Uuid;

use crate::domain::TimelineKind;

diesel::table! {
    rental_timeline (rental_id, kind, occurrence) {
        event_id -> Uuid,
        rental_id -> Uuid,
        kind -> Text,
        at -> Timestamptz,
        occurrence -> Text,
        period -> Nullable<Int4>,
        invoice_id -> Nullable<Uuid>,
        visit_id -> Nullable<Uuid>,
    }
}

/// One step, as the timeline keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = rental_timeline)]
pub struct Step {
    pub rental_id: Uuid,
    pub kind: TimelineKind,
    pub at: DateTime<Utc>,
    pub occurrence: String,
    pub period: Option<i32>,
    pub invoice_id: Option<Uuid>,
    pub visit_id: Option<Uuid>,
}

impl Step {
    /// A step that happens once in a rental's life.
    pub fn once(rental_id: Uuid, kind: TimelineKind, at: DateTime<Utc>) -> Self {
        Self { rental_id, kind, at, occurrence: String::new(), period: None, invoice_id: None, visit_id: None }
    }

    /// A step about an invoice: its charge (of a period, or the fee), its voiding.
    pub fn of_invoice(
        rental_id: Uuid,
        kind: TimelineKind,
        invoice_id: Uuid,
        period: Option<i32>,
        at: DateTime<Utc>,
    ) -> Self {
        let occurrence = match period {
            Some(period) => format!("period:{period}"),
            None => format!("invoice:{invoice_id}"),
        };
        Self { occurrence, period, invoice_id: Some(invoice_id), ..Self::once(rental_id, kind, at) }
    }

    /// A step about one attempt to charge an invoice (a decline).
    pub fn of_attempt(
        rental_id: Uuid,
        kind: TimelineKind,
        invoice_id: Uuid,
        attempt: i32,
        period: Option<i32>,
        at: DateTime<Utc>,
    ) -> Self {
        let occurrence = format!("invoice:{invoice_id}:{attempt}");
        Self { occurrence, period, invoice_id: Some(invoice_id), ..Self::once(rental_id, kind, at) }
    }

    /// A step that may happen many times, told apart by `occurrence`.
    pub fn repeated(rental_id: Uuid, kind: TimelineKind, occurrence: String, at: DateTime<Utc>) -> Self {
        Self { occurrence, ..Self::once(rental_id, kind, at) }
    }

    /// A step about a technician's visit.
    pub fn of_visit(
        rental_id: Uuid,
        kind: TimelineKind,
        visit_id: Uuid,
        occurrence: String,
        at: DateTime<Utc>,
    ) -> Self {
        Self { occurrence, visit_id: Some(visit_id), ..Self::once(rental_id, kind, at) }
    }
}

/// Records a step of a rental's timeline; the same step learned again keeps the
/// earliest time. The history row follows at commit.
pub async fn record(tx: &mut Tx<'_>, event_id: Uuid, step: &Step) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO rental_timeline (event_id, rental_id, kind, at, occurrence, period, invoice_id, visit_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (rental_id, kind, occurrence) DO UPDATE SET at = LEAST(rental_timeline.at, EXCLUDED.at)",
    )
    .bind::<diesel::sql_types::Uuid, _>(event_id)
    .bind::<diesel::sql_types::Uuid, _>(step.rental_id)
    .bind::<diesel::sql_types::Text, _>(step.kind)
    .bind::<diesel::sql_types::Timestamptz, _>(step.at)
    .bind::<diesel::sql_types::Text, _>(&step.occurrence)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Integer>, _>(step.period)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Uuid>, _>(step.invoice_id)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Uuid>, _>(step.visit_id)
    .execute(&mut **tx)
    .await?;
    tx.touch(step.rental_id);
    Ok(())
}

/// Removes every step of `kind` from a rental's timeline; the history row follows at
/// commit.
pub async fn forget(tx: &mut Tx<'_>, rental_id: Uuid, kind: TimelineKind) -> QueryResult<()> {
    diesel::delete(
        rental_timeline::table.filter(rental_timeline::rental_id.eq(rental_id)).filter(rental_timeline::kind.eq(kind)),
    )
    .execute(&mut **tx)
    .await?;
    tx.touch(rental_id);
    Ok(())
}

/// The timelines of many rentals in one statement, each in time order.
pub async fn of_rentals(database: &Database, rental_ids: &[Uuid]) -> Result<Vec<Step>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(rental_timeline::table
        .filter(rental_timeline::rental_id.eq_any(rental_ids))
        .order((rental_timeline::rental_id, rental_timeline::at, rental_timeline::kind, rental_timeline::occurrence))
        .select(Step::as_select())
        .load(&mut connection)
        .await?)
}

/// One rental's steps in time order, for its live activity.
pub async fn of_rental(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<Vec<Step>> {
    rental_timeline::table
        .filter(rental_timeline::rental_id.eq(rental_id))
        .order((rental_timeline::at, rental_timeline::kind, rental_timeline::occurrence))
        .select(Step::as_select())
        .load(connection)
        .await
}

pub async fn delete_all(connection: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel::delete(rental_timeline::table).execute(connection).await?;
    Ok(())
}
