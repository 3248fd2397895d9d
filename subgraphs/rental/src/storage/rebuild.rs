//! What a rebuild of the history reads: the steps each service's own records prove,
//! from rental's, payment's, delivery's and inventory's databases (an operator tool, the
//! one place rental reads another service's tables). Each step is keyed exactly as the
//! live events key it (`timeline::Step`), so a rebuild and the live history agree row
//! for row.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::TimelineKind;
use crate::storage::timeline::Step;

/// A step as a service's records show it.
#[derive(Debug, Clone, QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    rental_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    kind: TimelineKind,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    occurrence: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    period: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Uuid>)]
    invoice_id: Option<Uuid>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Uuid>)]
    visit_id: Option<Uuid>,
}

async fn steps(database: &Database, sql: &str) -> Result<Vec<Step>, ApiError> {
    let mut connection = database.connection().await?;
    let rows: Vec<Row> = diesel::sql_query(sql).load(&mut connection).await?;
    Ok(rows
        .into_iter()
        .map(|row| Step {
            rental_id: row.rental_id,
            kind: row.kind,
            at: row.at,
            occurrence: row.occurrence,
            period: row.period,
            invoice_id: row.invoice_id,
            visit_id: row.visit_id,
        })
        .collect())
}

/// The columns of a step that happens once, after `rental_id, kind, at`.
const ONCE: &str = "'' AS occurrence, NULL::int AS period, NULL::uuid AS invoice_id, NULL::uuid AS visit_id";

/// Charges, refunds, invoices and their declines, voids and new cards, from payment's
/// database.
pub async fn payment_steps(payment: &Database) -> Result<Vec<Step>, ApiError> {
    let invoice_occurrence = "CASE WHEN i.period IS NULL THEN 'invoice:' || i.id ELSE 'period:' || i.period END";
    steps(
        payment,
        &format!(
            "SELECT rental_id, 'PAID' AS kind, paid_at AS at, {ONCE} FROM payments \
             UNION ALL SELECT rental_id, 'REFUNDED', refunded_at, {ONCE} FROM payments WHERE refunded_at IS NOT NULL \
             UNION ALL SELECT i.rental_id, 'CHARGED', i.paid_at, {invoice_occurrence}, i.period, i.id, NULL \
                       FROM invoices i WHERE i.status = 'PAID' AND i.payment_id IS NULL \
             UNION ALL SELECT i.rental_id, 'PAST_DUE', i.first_failed_at, {invoice_occurrence}, i.period, i.id, NULL \
                       FROM invoices i WHERE i.first_failed_at IS NOT NULL \
             UNION ALL SELECT i.rental_id, 'INVOICE_VOIDED', i.voided_at, {invoice_occurrence}, i.period, i.id, NULL \
                       FROM invoices i WHERE i.status = 'VOID' \
             UNION ALL SELECT i.rental_id, 'PAYMENT_FAILED', a.finished_at, 'invoice:' || i.id || ':' || a.attempt, \
                              i.period, i.id, NULL \
                       FROM invoice_attempts a JOIN invoices i ON i.id = a.invoice_id WHERE a.outcome = 'DECLINED' \
             UNION ALL SELECT c.rental_id, 'CARD_UPDATED', c.changed_at, 'card:' || c.id, NULL, NULL, NULL \
                       FROM payment_method_changes c \
                       WHERE c.changed_at > (SELECT min(first.changed_at) FROM payment_method_changes first \
                                             WHERE first.rental_id = c.rental_id)"
        ),
    )
    .await
}

/// Requests, shipments and hand-overs, from delivery's database. A delivery created
/// cancelled (its cancellation overtook the request: `cancelled_at = requested_at`)
/// was never requested.
pub async fn delivery_steps(delivery: &Database) -> Result<Vec<Step>, ApiError> {
    steps(
        delivery,
        &format!(
            "SELECT rental_id, 'DELIVERY_REQUESTED' AS kind, requested_at AS at, {ONCE} FROM deliveries \
             WHERE cancelled_at IS NULL OR cancelled_at > requested_at \
             UNION ALL SELECT rental_id, 'SHIPPED', shipped_at, {ONCE} FROM deliveries WHERE shipped_at IS NOT NULL \
             UNION ALL SELECT rental_id, 'DELIVERED', delivered_at, {ONCE} FROM deliveries WHERE delivered_at IS NOT NULL \
             UNION ALL SELECT rental_id, 'PICKUP_SCHEDULED', created_at, {VISIT} FROM visits WHERE kind = 'PICKUP' \
             UNION ALL SELECT rental_id, 'VISIT_RESCHEDULED', first_rescheduled_at, {VISIT} FROM visits \
                       WHERE first_rescheduled_at IS NOT NULL \
             UNION ALL SELECT rental_id, 'VISIT_STARTED', started_at, {VISIT} FROM visits \
                       WHERE started_at IS NOT NULL AND started_at IS DISTINCT FROM done_at \
             UNION ALL SELECT rental_id, CASE WHEN kind = 'CARE' THEN 'CARE_VISIT_DONE' ELSE 'PICKED_UP' END, done_at, \
                              {VISIT} FROM visits WHERE done_at IS NOT NULL"
        ),
    )
    .await
}

/// The columns of a step about one visit, after `rental_id, kind, at`.
const VISIT: &str = "'visit:' || id AS occurrence, NULL::int AS period, NULL::uuid AS invoice_id, id AS visit_id";

/// Units back in stock with their pickup, from inventory's ledger: (delivery, when).
pub async fn collected_units(inventory: &Database) -> Result<Vec<(Uuid, DateTime<Utc>)>, ApiError> {
    #[derive(QueryableByName)]
    struct Collected {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        delivery_id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        at: DateTime<Utc>,
    }
    let mut connection = inventory.connection().await?;
    let rows: Vec<Collected> =
        diesel::sql_query("SELECT delivery_id, at FROM stock_movements WHERE reason = 'COLLECTED'")
            .load(&mut connection)
            .await?;
    Ok(rows.into_iter().map(|row| (row.delivery_id, row.at)).collect())
}

/// Which rental each delivery is for, from delivery's database: (delivery, rental).
pub async fn delivery_rentals(delivery: &Database) -> Result<Vec<(Uuid, Uuid)>, ApiError> {
    #[derive(QueryableByName)]
    struct Pair {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        rental_id: Uuid,
    }
    let mut connection = delivery.connection().await?;
    let rows: Vec<Pair> = diesel::sql_query("SELECT id, rental_id FROM deliveries").load(&mut connection).await?;
    Ok(rows.into_iter().map(|row| (row.id, row.rental_id)).collect())
}

/// Cancellations, extensions and ends, from rental's own database.
pub async fn rental_steps(rental: &Database) -> Result<Vec<Step>, ApiError> {
    steps(
        rental,
        &format!(
            "SELECT id AS rental_id, 'CANCELLED' AS kind, updated_at AS at, {ONCE} FROM rentals WHERE status = 'CANCELLED' \
             UNION ALL SELECT rental_id, 'EXTENDED', at, 'extension:' || id, NULL, NULL, NULL FROM rental_extensions \
             UNION ALL SELECT id, CASE WHEN end_reason = 'COMPLETED' THEN 'COMPLETED' ELSE 'TERMINATED' END, ended_at, \
                              {ONCE} FROM rentals WHERE ended_at IS NOT NULL \
             UNION ALL SELECT id, 'PICKUP_REQUESTED', ended_at, {ONCE} FROM rentals WHERE ended_at IS NOT NULL"
        ),
    )
    .await
}

/// Every rental's id.
pub async fn rental_ids(rental: &Database) -> Result<Vec<Uuid>, ApiError> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let mut connection = rental.connection().await?;
    let ids: Vec<Id> = diesel::sql_query("SELECT id FROM rentals").load(&mut connection).await?;
    Ok(ids.into_iter().map(|row| row.id).collect())
}
