//! Rebuilding the customer's history (the read model) from the services' own records:
//! rentals here, payments in payment's database, deliveries in delivery's. Events keep
//! it current; this recomputes it from scratch, e.g. after a bug in a projection.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, RunQueryDsl};
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::TimelineKind;
use crate::storage;

#[derive(QueryableByName)]
struct Step {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    rental_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    kind: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    at: DateTime<Utc>,
}

async fn steps(database: &Database, sql: &str) -> Result<Vec<Step>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(diesel::sql_query(sql).load(&mut connection).await?)
}

/// Replaces every timeline and history row with what the records say. Returns how many
/// rentals it projected.
pub async fn rebuild(rental: &Database, payment: &Database, delivery: &Database) -> Result<usize, ApiError> {
    let mut all = steps(
        payment,
        "SELECT rental_id, 'PAID' AS kind, paid_at AS at FROM payments \
         UNION ALL SELECT rental_id, 'REFUNDED', refunded_at FROM payments WHERE refunded_at IS NOT NULL",
    )
    .await?;
    all.extend(
        steps(
            delivery,
            "SELECT rental_id, 'DELIVERY_REQUESTED' AS kind, requested_at AS at FROM deliveries \
             UNION ALL SELECT rental_id, 'SHIPPED', shipped_at FROM deliveries WHERE shipped_at IS NOT NULL \
             UNION ALL SELECT rental_id, 'DELIVERED', delivered_at FROM deliveries WHERE delivered_at IS NOT NULL",
        )
        .await?,
    );
    all.extend(
        steps(
            rental,
            "SELECT id AS rental_id, 'CANCELLED' AS kind, updated_at AS at FROM rentals WHERE status = 'CANCELLED'",
        )
        .await?,
    );
    let rentals: HashSet<Uuid> = steps(rental, "SELECT id AS rental_id, status AS kind, created_at AS at FROM rentals")
        .await?
        .into_iter()
        .map(|row| row.rental_id)
        .collect();

    let mut connection = rental.connection().await?;
    connection
        .transaction(async |connection| {
            diesel::sql_query("DELETE FROM rental_timeline").execute(connection).await?;
            diesel::sql_query("DELETE FROM rental_history").execute(connection).await?;
            for step in all.iter().filter(|step| rentals.contains(&step.rental_id)) {
                let kind = TimelineKind::parse(&step.kind).ok_or_else(|| ApiError::internal("unknown step"))?;
                storage::record_timeline(connection, Uuid::now_v7(), step.rental_id, kind, step.at).await?;
            }
            for rental_id in &rentals {
                storage::project(connection, *rental_id).await?;
            }
            Ok::<_, ApiError>(rentals.len())
        })
        .await
}
