//! The steps of each rental's life, one row per (rental, step), from every service's
//! events and rental's own changes.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subgraph_kit::domain::TextEnum;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::TimelineKind;

diesel::table! {
    rental_timeline (rental_id, kind) {
        event_id -> Uuid,
        rental_id -> Uuid,
        kind -> Text,
        at -> Timestamptz,
    }
}

/// Records a step of a rental's timeline; the same step learned again keeps the
/// earliest time. The history row is refreshed by the caller.
pub async fn record(
    connection: &mut AsyncPgConnection,
    event_id: Uuid,
    rental_id: Uuid,
    kind: TimelineKind,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO rental_timeline (event_id, rental_id, kind, at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (rental_id, kind) DO UPDATE SET at = LEAST(rental_timeline.at, EXCLUDED.at)",
    )
    .bind::<diesel::sql_types::Uuid, _>(event_id)
    .bind::<diesel::sql_types::Uuid, _>(rental_id)
    .bind::<diesel::sql_types::Text, _>(kind.as_str())
    .bind::<diesel::sql_types::Timestamptz, _>(at)
    .execute(connection)
    .await?;
    Ok(())
}

pub async fn forget(connection: &mut AsyncPgConnection, rental_id: Uuid, kind: TimelineKind) -> QueryResult<()> {
    diesel::delete(
        rental_timeline::table
            .filter(rental_timeline::rental_id.eq(rental_id))
            .filter(rental_timeline::kind.eq(kind.as_str())),
    )
    .execute(connection)
    .await?;
    Ok(())
}

/// The timelines of many rentals in one statement, each in time order:
/// (rental, step, when).
pub async fn of_rentals(
    database: &Database,
    rental_ids: &[Uuid],
) -> Result<Vec<(Uuid, String, DateTime<Utc>)>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(rental_timeline::table
        .filter(rental_timeline::rental_id.eq_any(rental_ids))
        .order((rental_timeline::rental_id, rental_timeline::at, rental_timeline::kind))
        .select((rental_timeline::rental_id, rental_timeline::kind, rental_timeline::at))
        .load(&mut connection)
        .await?)
}

pub async fn delete_all(connection: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel::delete(rental_timeline::table).execute(connection).await?;
    Ok(())
}
