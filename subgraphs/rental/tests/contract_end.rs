//! A period that has started before a contract ends is billed, even when the contract
//! clock has not announced it yet: the clock looks for due periods every tick, so a
//! termination can land between a period's start and the tick that would announce it.
//! Against the real PostgreSQL, with the rental's schedule set as the clock would
//! leave it just before that tick.

use std::path::Path;
use std::sync::Arc;

use chrono::{Duration, Utc};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use rental::domain::{RentalStatus, Term};
use rental::service::contract;
use rental::storage::history::HistoryProjection;
use rental::storage::rentals::{self, RentalRow};
use subgraph_kit::clock::Calendar;
use subgraph_kit::testing::TestDatabase;
use subgraph_kit::{Database, Identity, Tx};
use uuid::Uuid;

#[derive(QueryableByName, Debug)]
struct Announced {
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_type: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    period: Option<i32>,
}

/// What the rental's transactions announced.
async fn announced(database: &Database, rental_id: Uuid) -> Vec<Announced> {
    let mut connection = database.connection().await.expect("connection");
    diesel::sql_query(
        "SELECT event_type, (payload->'data'->>'period')::int AS period FROM outbox \
         WHERE payload->'data'->>'rentalId' = $1",
    )
    .bind::<diesel::sql_types::Text, _>(rental_id.to_string())
    .load(&mut connection)
    .await
    .expect("outbox read")
}

/// A 12-month rental delivered 45 days ago whose second month started 14 or 15 days
/// ago and has not been announced: the state the clock leaves until its next tick.
async fn rental_with_a_period_not_announced(database: &Database, calendar: &Calendar) -> RentalRow {
    let now = Utc::now();
    let mut row = RentalRow::accepted(
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        12,
        19_900,
        "12 Teheran-ro, Gangnam-gu, Seoul".into(),
        Uuid::now_v7(),
        now - Duration::days(46),
    );
    let term = Term { starts_at: now - Duration::days(45), months: 12 };
    row.status = RentalStatus::Active;
    row.term_starts_at = Some(term.starts_at);
    row.term_ends_at = Some(term.ends_at(calendar));
    row.next_period = 2;
    row.next_period_at = term.start_of(calendar, 2);
    assert!(row.next_period_at.is_some_and(|starts| starts < now), "the second month has started");
    database
        .transaction(async |tx: &mut Tx<'_>| {
            rentals::insert(tx, &row).await?;
            Ok::<_, subgraph_kit::ApiError>(())
        })
        .await
        .expect("rental committed");
    row
}

#[tokio::test]
async fn terminating_bills_the_month_that_started_before_the_clock_announced_it() {
    let test_database =
        TestDatabase::create(rental::SERVICE, rental::MIGRATIONS, Path::new(rental::MIGRATIONS_DIR)).await.expect("db");
    let database =
        Database::open_pool(&test_database.url(), 2).expect("pool").with_projection(Arc::new(HistoryProjection));
    let calendar = Calendar::CALENDAR;
    let rental = rental_with_a_period_not_announced(&database, &calendar).await;
    let customer = Identity::Customer { customer_id: rental.customer_id };

    let terminated = contract::terminate(&database, &calendar, &customer, rental.id).await.expect("terminated");

    assert_eq!(terminated.status, RentalStatus::Terminated);
    let events = announced(&database, rental.id).await;
    let mut kinds: Vec<(&str, Option<i32>)> =
        events.iter().map(|event| (event.event_type.as_str(), event.period)).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [("rental.ended", None), ("rental.period_due", Some(2))],
        "the second month, started before the end, is announced for billing as the contract ends"
    );
    // Only the month that had started: the third starts after the end and is never billed.
    assert_eq!(terminated.next_period_at, None);
    assert_eq!(terminated.next_period, 3);
}
