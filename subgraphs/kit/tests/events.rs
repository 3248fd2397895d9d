//! The event bus against the real PostgreSQL and RabbitMQ: nothing lost, nothing
//! doubled, poison dead-lettered, connections cut mid-stream.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sql_query;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use serde_json::json;
use subgraph_kit::Database;
use subgraph_kit::db::{SHARED_MIGRATIONS, SHARED_MIGRATIONS_DIR};
use subgraph_kit::events::catalog::Subscription;
use subgraph_kit::events::outbox::{enqueue, enqueue_all};
use subgraph_kit::events::{Envelope, EventBus, EventHandler, HandlerError};
use subgraph_kit::testing::{TestDatabase, TestEvents};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SERVICE: &str = "kitcheck";
const SUBSCRIPTIONS: &[Subscription] = &[Subscription { service: SERVICE, event_types: &["test.noted"] }];

/// Appends a row per event it applies: a second application would show as a second row.
struct Notebook;

impl EventHandler for Notebook {
    fn handle<'a>(
        &'a self,
        connection: &'a mut AsyncPgConnection,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            #[derive(serde::Deserialize)]
            struct Note {
                note: String,
            }
            let note: Note = event.data_as()?;
            if note.note == "poison" {
                return Err(HandlerError::Poison("this note can never be applied".into()));
            }
            sql_query("INSERT INTO notes (note) VALUES ($1)")
                .bind::<diesel::sql_types::Text, _>(&note.note)
                .execute(connection)
                .await?;
            Ok(())
        })
    }
}

struct Fixture {
    database: Database,
    events: TestEvents,
    bus: EventBus,
    shutdown: CancellationToken,
    _db: TestDatabase,
}

async fn start() -> Fixture {
    let db =
        TestDatabase::create(SERVICE, SHARED_MIGRATIONS, Path::new(SHARED_MIGRATIONS_DIR)).await.expect("database");
    let database = Database::open_pool(&db.url(), 4).expect("pool");
    let mut connection = database.connection().await.expect("connection");
    sql_query("CREATE TABLE notes (seq bigserial PRIMARY KEY, note text NOT NULL)")
        .execute(&mut connection)
        .await
        .expect("notes table");
    let events = TestEvents::new(&[SERVICE]);
    let shutdown = CancellationToken::new();
    let bus = EventBus::start(
        events.config.clone(),
        SERVICE,
        SUBSCRIPTIONS,
        database.clone(),
        Some(Arc::new(Notebook)),
        shutdown.clone(),
    );
    assert!(bus.connected(Duration::from_secs(20)).await, "bus connects");
    Fixture { database, events, bus, shutdown, _db: db }
}

impl Fixture {
    async fn write_notes(&self, notes: impl IntoIterator<Item = String>) {
        let mut connection = self.database.connection().await.expect("connection");
        let notes: Vec<String> = notes.into_iter().collect();
        connection
            .transaction(async |connection| {
                for note in &notes {
                    enqueue(connection, SERVICE, "test.noted", 1, &json!({ "note": note })).await?;
                }
                diesel::QueryResult::Ok(())
            })
            .await
            .expect("outbox rows");
        self.bus.waker().wake();
    }

    async fn notes(&self) -> Vec<String> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            note: String,
        }
        let mut connection = self.database.connection().await.expect("connection");
        let rows: Vec<Row> =
            sql_query("SELECT note FROM notes ORDER BY seq").load(&mut connection).await.expect("notes");
        rows.into_iter().map(|row| row.note).collect()
    }

    /// Waits until `expected` notes were applied, then a little longer to catch extras.
    async fn settle(&self, expected: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.notes().await.len() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.notes().await
    }

    async fn unpublished(&self) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            count: i64,
        }
        let mut connection = self.database.connection().await.expect("connection");
        let count: Count = sql_query("SELECT count(*) AS count FROM outbox WHERE published_at IS NULL")
            .get_result(&mut connection)
            .await
            .expect("count");
        count.count
    }

    /// Publishes raw bytes to the exchange, as a misbehaving producer would.
    async fn publish_raw(&self, routing_key: &str, body: &[u8]) {
        let connection =
            lapin::Connection::connect(&self.events.config.amqp_url, Default::default()).await.expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        channel.confirm_select(Default::default()).await.expect("confirms");
        channel
            .basic_publish(
                self.events.config.exchange().as_str().into(),
                routing_key.into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirmed");
        let _ = connection.close(200, "done".into()).await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.bus.stopped().await;
    }
}

#[tokio::test]
async fn events_written_in_a_transaction_are_applied_exactly_once() {
    let fixture = start().await;
    let sent: Vec<String> = (0..50).map(|index| format!("note {index}")).collect();
    fixture.write_notes(sent.clone()).await;
    // Exactly once; not in order: unrelated events apply concurrently.
    let mut applied = fixture.settle(50).await;
    applied.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(applied, expected);
    assert_eq!(fixture.unpublished().await, 0, "every row is marked published after its ack");
    fixture.stop().await;
}

#[tokio::test]
async fn events_written_in_one_statement_each_get_their_own_id_and_are_applied_once() {
    let fixture = start().await;
    let sent: Vec<String> = (0..40).map(|index| format!("batch note {index}")).collect();
    let payloads: Vec<serde_json::Value> = sent.iter().map(|note| json!({ "note": note })).collect();
    let mut connection = fixture.database.connection().await.expect("connection");
    let ids = connection
        .transaction(async |connection| enqueue_all(connection, SERVICE, "test.noted", 1, &payloads).await)
        .await
        .expect("outbox rows");
    drop(connection);
    fixture.bus.waker().wake();
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (40, 40), "one fresh id per event");
    let mut applied = fixture.settle(40).await;
    applied.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(applied, expected);
    assert_eq!(fixture.unpublished().await, 0);
    fixture.stop().await;
}

#[tokio::test]
async fn the_same_message_delivered_twice_has_one_effect() {
    let fixture = start().await;
    let envelope = Envelope {
        id: Uuid::now_v7(),
        event_type: "test.noted".into(),
        version: 1,
        source: "elsewhere".into(),
        occurred_at: chrono::Utc::now(),
        data: json!({ "note": "only once" }),
    };
    let body = serde_json::to_vec(&envelope).expect("json");
    fixture.publish_raw("test.noted", &body).await;
    fixture.publish_raw("test.noted", &body).await;
    assert_eq!(fixture.settle(1).await, ["only once"]);
    fixture.stop().await;
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_the_consumer_keeps_going() {
    let fixture = start().await;
    fixture.publish_raw("test.noted", b"{ this is not json").await;
    fixture.write_notes(["poison".to_owned(), "after the poison".to_owned()]).await;
    assert_eq!(fixture.settle(1).await, ["after the poison"]);
    let dead = fixture.events.config.dead_letter_queue(SERVICE);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fixture.events.queue_length(&dead).await.expect("queue length") < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fixture.events.queue_length(&dead).await.expect("queue length"), 2);
    fixture.stop().await;
}

#[tokio::test]
async fn closing_broker_connections_mid_stream_loses_and_doubles_nothing() {
    let fixture = start().await;
    let mut sent = Vec::new();
    for round in 0..10 {
        let batch: Vec<String> = (0..20).map(|index| format!("round {round} note {index}")).collect();
        sent.extend(batch.iter().cloned());
        fixture.write_notes(batch).await;
        if round % 3 == 1 {
            let closed = fixture.events.close_connections().expect("rabbitmqctl");
            assert!(closed >= 1, "the bus had a connection to close");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let applied = fixture.settle(sent.len()).await;
    let mut sorted_applied = applied.clone();
    sorted_applied.sort();
    let mut sorted_sent = sent.clone();
    sorted_sent.sort();
    assert_eq!(sorted_applied, sorted_sent, "every note exactly once");
    assert_eq!(fixture.unpublished().await, 0);
    fixture.stop().await;
}
