//! The history read model cannot go stale: a customer's own change (cancelling) and
//! another service's event about the same rental (its shipment), committed at the same
//! moment, must leave the history row equal to what the rental and its timeline say.
//!
//! Each round starts both writers together on a fresh rental, many rounds over, against
//! the real PostgreSQL. A projection computed from a snapshot older than the other
//! writer's commit, then written over it, shows up here as a history row that differs
//! from a projection made afterwards.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use event_bus::EventMeta;
use rental::domain::TimelineKind;
use rental::service;
use rental::storage::history::HistoryProjection;
use rental::storage::rentals::{self, RentalRow};
use rental::storage::timeline::{self, Step};
use subgraph_kit::testing::TestDatabase;
use subgraph_kit::{Database, Identity, Tx};
use tokio::sync::Barrier;
use uuid::Uuid;

const ROUNDS: usize = 300;

#[derive(QueryableByName, Debug, PartialEq, Eq)]
struct Projection {
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    timeline: String,
}

/// The history row as stored, and as the rental and its timeline say it should be.
async fn stored_and_expected(database: &Database, rental_id: Uuid) -> (Projection, Projection) {
    let mut connection = database.connection().await.expect("connection");
    let stored: Projection = diesel::sql_query(
        "SELECT status::text AS status, timeline::text AS timeline FROM rental_history WHERE rental_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(rental_id)
    .get_result(&mut connection)
    .await
    .expect("history row");
    let expected: Projection = diesel::sql_query(
        "SELECT r.status::text AS status, \
                COALESCE((SELECT jsonb_agg(jsonb_build_object('kind', t.kind, 'at', t.at) ORDER BY t.at, t.kind) \
                          FROM rental_timeline t WHERE t.rental_id = r.id), '[]'::jsonb)::text AS timeline \
         FROM rentals r WHERE r.id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(rental_id)
    .get_result(&mut connection)
    .await
    .expect("rental row");
    (stored, expected)
}

/// A paid rental as `rent` commits it: ACCEPTED, its PAID step, its history row.
async fn accepted_rental(database: &Database) -> Uuid {
    let now = subgraph_kit::db::now();
    let row = RentalRow::accepted(
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        12,
        19_900,
        "12 Teheran-ro, Gangnam-gu, Seoul".into(),
        Uuid::now_v7(),
        now,
    );
    database
        .transaction(async |tx: &mut Tx<'_>| {
            rentals::insert(tx, &row).await?;
            timeline::record(tx, Uuid::now_v7(), &Step::once(row.id, TimelineKind::Paid, now)).await?;
            Ok::<_, subgraph_kit::ApiError>(())
        })
        .await
        .expect("rental committed");
    row.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancellation_and_another_services_event_committed_together_leave_the_history_true() {
    let test_database =
        TestDatabase::create(rental::SERVICE, rental::MIGRATIONS, Path::new(rental::MIGRATIONS_DIR)).await.expect("db");
    let database =
        Database::open_pool(&test_database.url(), 8).expect("pool").with_projection(Arc::new(HistoryProjection));
    let operator = Identity::Operator { subject: "race".into() };
    let mut stale = Vec::new();
    for _ in 0..ROUNDS {
        let rental_id = accepted_rental(&database).await;
        let barrier = Arc::new(Barrier::new(2));
        let cancelling = {
            let (database, barrier, operator) = (database.clone(), barrier.clone(), operator.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                service::cancel(&database, &operator, rental_id).await.expect("cancelled");
            })
        };
        let shipping = {
            let (database, barrier) = (database.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let meta = EventMeta { id: Uuid::now_v7(), occurred_at: Utc::now() };
                database
                    .transaction(async |tx: &mut Tx<'_>| {
                        service::record_step(tx, meta, Step::once(rental_id, TimelineKind::Shipped, Utc::now())).await
                    })
                    .await
                    .expect("shipment recorded");
            })
        };
        cancelling.await.expect("cancel task");
        shipping.await.expect("shipment task");
        let (stored, expected) = stored_and_expected(&database, rental_id).await;
        if stored != expected {
            stale.push(format!("rental {rental_id}: history {stored:?}, records {expected:?}"));
        }
    }
    assert!(stale.is_empty(), "{} of {ROUNDS} rounds left a stale history row:\n{}", stale.len(), stale.join("\n"));
}
