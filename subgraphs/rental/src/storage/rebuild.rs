//! What a rebuild of the history reads: the steps each service's own records prove,
//! from rental's, payment's and delivery's databases (an operator tool, the one place
//! rental reads another service's tables).

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

/// A step of a rental, as a service's records show it.
#[derive(Debug, Clone, QueryableByName)]
pub struct Step {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub rental_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub kind: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub at: DateTime<Utc>,
}

async fn steps(database: &Database, sql: &str) -> Result<Vec<Step>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(diesel::sql_query(sql).load(&mut connection).await?)
}

/// Charges and refunds, from payment's database.
pub async fn payment_steps(payment: &Database) -> Result<Vec<Step>, ApiError> {
    steps(
        payment,
        "SELECT rental_id, 'PAID' AS kind, paid_at AS at FROM payments \
         UNION ALL SELECT rental_id, 'REFUNDED', refunded_at FROM payments WHERE refunded_at IS NOT NULL",
    )
    .await
}

/// Requests, shipments and hand-overs, from delivery's database. A delivery created
/// cancelled (its cancellation overtook the request: `cancelled_at = requested_at`)
/// was never requested.
pub async fn delivery_steps(delivery: &Database) -> Result<Vec<Step>, ApiError> {
    steps(
        delivery,
        "SELECT rental_id, 'DELIVERY_REQUESTED' AS kind, requested_at AS at FROM deliveries \
         WHERE cancelled_at IS NULL OR cancelled_at > requested_at \
         UNION ALL SELECT rental_id, 'SHIPPED', shipped_at FROM deliveries WHERE shipped_at IS NOT NULL \
         UNION ALL SELECT rental_id, 'DELIVERED', delivered_at FROM deliveries WHERE delivered_at IS NOT NULL",
    )
    .await
}

/// Cancellations, from rental's own database.
pub async fn cancel_steps(rental: &Database) -> Result<Vec<Step>, ApiError> {
    steps(
        rental,
        "SELECT id AS rental_id, 'CANCELLED' AS kind, updated_at AS at FROM rentals WHERE status = 'CANCELLED'",
    )
    .await
}

/// Every rental's id.
pub async fn rental_ids(rental: &Database) -> Result<Vec<Uuid>, ApiError> {
    Ok(steps(rental, "SELECT id AS rental_id, status AS kind, created_at AS at FROM rentals")
        .await?
        .into_iter()
        .map(|step| step.rental_id)
        .collect())
}
