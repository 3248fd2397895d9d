//! The event bus against the real PostgreSQL and RabbitMQ: nothing lost, nothing
//! doubled, poison dead-lettered with its reason, a database outage waited out without
//! spending delivery attempts, dead letters listed and replayed once, connections cut
//! mid-stream.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::sql_query;
use diesel_async::RunQueryDsl;
use event_bus::BusStop;
use event_bus::dead_letters::{self, Selection};
use event_bus::outbox::{enqueue, enqueue_all};
use event_bus::testing::TestEvents;
use event_bus::{Envelope, Event, EventBus, EventHandler, EventMeta, HandlerError, Subscription};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use serde::{Deserialize, Serialize};
use subgraph_kit::db::{SHARED_MIGRATIONS, SHARED_MIGRATIONS_DIR};
use subgraph_kit::testing::{TcpProxy, TestDatabase, server_address, server_url_via};
use subgraph_kit::{Database, Tx};
use uuid::Uuid;

const SERVICE: &str = "kitcheck";

/// `test.noted` v1: a line for the notebook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Noted {
    note: String,
    at: DateTime<Utc>,
}

impl Event for Noted {
    const TYPE: &'static str = "test.noted";
    const VERSION: i32 = 1;
    const PRODUCER: &'static str = "notebook";

    fn at(&self) -> DateTime<Utc> {
        self.at
    }

    fn ordering_key(&self) -> Option<Uuid> {
        None
    }
}

fn noted(note: &str) -> Noted {
    Noted { note: note.to_owned(), at: Utc::now() }
}

event_bus::inbox! {
    /// What the test service consumes.
    enum ForKitcheck for "kitcheck" {
        Noted(Noted),
    }
}

const TOPOLOGY: &[Subscription] = &[Subscription::of::<ForKitcheck>()];

/// Appends a row per event it applies: a second application would show as a second row.
/// A note "flaky" fails (not poison) while `flaky` is set; "poison" never applies.
struct Notebook {
    flaky: Arc<AtomicBool>,
}

impl EventHandler for Notebook {
    type Inbox = ForKitcheck;

    async fn handle(&self, tx: &mut Tx<'_>, event: ForKitcheck, _meta: EventMeta) -> Result<(), HandlerError> {
        let ForKitcheck::Noted(noted) = event;
        match noted.note.as_str() {
            "poison" => return Err(HandlerError::Poison("this note can never be applied".into())),
            "flaky" if AtomicBool::load(&self.flaky, Ordering::SeqCst) => {
                return Err(HandlerError::Transient("the notebook is jammed".into()));
            }
            _ => {}
        }
        sql_query("INSERT INTO notes (note) VALUES ($1)")
            .bind::<diesel::sql_types::Text, _>(&noted.note)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

struct Fixture {
    database: Database,
    events: TestEvents,
    bus: EventBus,
    stop: BusStop,
    flaky: Arc<AtomicBool>,
    proxy: Option<TcpProxy>,
    _db: TestDatabase,
}

async fn start() -> Fixture {
    start_with(false).await
}

/// With `through_proxy`, the bus reaches PostgreSQL through a proxy the test can cut.
async fn start_with(through_proxy: bool) -> Fixture {
    subgraph_kit::telemetry::init_for_tests();
    let db =
        TestDatabase::create(SERVICE, SHARED_MIGRATIONS, Path::new(SHARED_MIGRATIONS_DIR)).await.expect("database");
    let direct = Database::open_pool(&db.url(), 4).expect("pool");
    let mut connection = direct.connection().await.expect("connection");
    sql_query("CREATE TABLE notes (seq bigserial PRIMARY KEY, note text NOT NULL)")
        .execute(&mut connection)
        .await
        .expect("notes table");
    drop(connection);
    let (database, proxy) = if through_proxy {
        let proxy = TcpProxy::start(server_address(&db.config.server_url).expect("address")).await.expect("proxy");
        let url = format!("{}/{}", server_url_via(&db.config.server_url, proxy.address), db.config.name);
        (Database::open_pool(&url, 4).expect("pool"), Some(proxy))
    } else {
        (direct, None)
    };
    let events = TestEvents::new(TOPOLOGY);
    let stop = BusStop::default();
    let flaky = Arc::new(AtomicBool::new(false));
    let bus = EventBus::start(
        events.config.clone(),
        TOPOLOGY,
        database.clone(),
        Notebook { flaky: flaky.clone() },
        stop.clone(),
    );
    assert!(bus.connected(Duration::from_secs(20)).await, "bus connects");
    Fixture { database, events, bus, stop, flaky, proxy, _db: db }
}

impl Fixture {
    async fn write_notes(&self, notes: impl IntoIterator<Item = String>) {
        let notes: Vec<String> = notes.into_iter().collect();
        self.database
            .transaction(async |tx: &mut Tx<'_>| {
                for note in &notes {
                    enqueue(tx, &noted(note)).await?;
                }
                Ok::<_, subgraph_kit::ApiError>(())
            })
            .await
            .expect("outbox rows");
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

    async fn dead_letters(&self) -> u32 {
        self.events.queue_length(&self.events.config.dead_letter_queue(SERVICE)).await.expect("queue length")
    }

    async fn wait_for_dead_letters(&self, expected: u32) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.dead_letters().await < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(self.dead_letters().await, expected);
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
        self.stop.consuming.cancel();
        self.stop.relaying.cancel();
        self.bus.stopped().await;
    }
}

fn sorted(mut notes: Vec<String>) -> Vec<String> {
    notes.sort();
    notes
}

#[tokio::test]
async fn events_written_in_a_transaction_are_applied_exactly_once() {
    let fixture = start().await;
    let sent: Vec<String> = (0..50).map(|index| format!("note {index}")).collect();
    fixture.write_notes(sent.clone()).await;
    // Exactly once; not in order: unrelated events apply concurrently.
    assert_eq!(sorted(fixture.settle(50).await), sorted(sent));
    assert_eq!(fixture.unpublished().await, 0, "every row is marked published after its ack");
    fixture.stop().await;
}

#[tokio::test]
async fn events_written_in_one_statement_each_get_their_own_id_and_are_applied_once() {
    let fixture = start().await;
    let sent: Vec<String> = (0..40).map(|index| format!("batch note {index}")).collect();
    let events: Vec<Noted> = sent.iter().map(|note| noted(note)).collect();
    let ids = fixture
        .database
        .transaction(async |tx: &mut Tx<'_>| Ok::<_, subgraph_kit::ApiError>(enqueue_all(tx, &events).await?))
        .await
        .expect("outbox rows");
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (40, 40), "one fresh id per event");
    assert_eq!(sorted(fixture.settle(40).await), sorted(sent));
    assert_eq!(fixture.unpublished().await, 0);
    fixture.stop().await;
}

#[tokio::test]
async fn the_same_message_delivered_twice_has_one_effect() {
    let fixture = start().await;
    let body = serde_json::to_vec(&Envelope::wrap(&noted("only once"))).expect("json");
    fixture.publish_raw("test.noted", &body).await;
    fixture.publish_raw("test.noted", &body).await;
    assert_eq!(fixture.settle(1).await, ["only once"]);
    fixture.stop().await;
}

#[tokio::test]
async fn poison_is_dead_lettered_with_its_reason_and_the_consumer_keeps_going() {
    let fixture = start().await;
    fixture.publish_raw("test.noted", b"{ this is not json").await;
    // A version this consumer does not read is poison too, never misread.
    let mut future = Envelope::wrap(&noted("from the future"));
    future.version = 2;
    fixture.publish_raw("test.noted", &serde_json::to_vec(&future).expect("json")).await;
    fixture.write_notes(["poison".to_owned(), "after the poison".to_owned()]).await;
    assert_eq!(fixture.settle(1).await, ["after the poison"]);
    fixture.wait_for_dead_letters(3).await;

    let letters = dead_letters::list(&fixture.events.config, SERVICE).await.expect("list");
    let reasons: Vec<&str> = letters.iter().map(|letter| letter.reason.as_str()).collect();
    assert_eq!(letters.len(), 3, "{reasons:?}");
    assert!(reasons.iter().any(|reason| reason.contains("not an event envelope")), "{reasons:?}");
    assert!(reasons.iter().any(|reason| reason.contains("version 2 is not understood")), "{reasons:?}");
    assert!(reasons.iter().any(|reason| reason.contains("can never be applied")), "{reasons:?}");
    assert_eq!(fixture.dead_letters().await, 3, "listing leaves the dead letters where they are");
    fixture.stop().await;
}

#[tokio::test]
async fn a_dead_letter_replayed_after_the_cause_is_fixed_has_exactly_one_effect() {
    let fixture = start().await;
    fixture.flaky.store(true, Ordering::SeqCst);
    let flaky = Envelope::wrap(&noted("flaky"));
    let body = serde_json::to_vec(&flaky).expect("json");
    fixture.publish_raw("test.noted", &body).await;
    fixture.wait_for_dead_letters(1).await;
    let letters = dead_letters::list(&fixture.events.config, SERVICE).await.expect("list");
    assert_eq!(letters[0].id, Some(flaky.id));
    assert!(letters[0].reason.contains("failed 3 times"), "{}", letters[0].reason);
    assert!(fixture.notes().await.is_empty());

    // The cause is fixed; an operator replays it, twice by mistake.
    fixture.flaky.store(false, Ordering::SeqCst);
    let replayed = dead_letters::replay(&fixture.events.config, SERVICE, Selection::One(flaky.id)).await;
    assert_eq!(replayed.expect("replay"), 1);
    assert_eq!(fixture.settle(1).await, ["flaky"]);
    assert_eq!(dead_letters::replay(&fixture.events.config, SERVICE, Selection::All).await.expect("replay"), 0);
    // The same message arriving again changes nothing either.
    fixture.publish_raw("test.noted", &body).await;
    assert_eq!(fixture.settle(1).await, ["flaky"]);
    assert_eq!(fixture.dead_letters().await, 0);
    fixture.stop().await;
}

#[tokio::test]
async fn a_database_outage_longer_than_the_delivery_limit_allows_dead_letters_nothing() {
    let fixture = start_with(true).await;
    let proxy = fixture.proxy.as_ref().expect("proxy");
    fixture.write_notes(["before the outage".to_owned()]).await;
    assert_eq!(fixture.settle(1).await, ["before the outage"]);

    // The database goes away; healthy events keep arriving from another service.
    proxy.cut();
    let mut sent = vec!["before the outage".to_owned()];
    for index in 0..20 {
        let note = format!("during the outage {index}");
        let body = serde_json::to_vec(&Envelope::wrap(&noted(&note))).expect("json");
        fixture.publish_raw("test.noted", &body).await;
        sent.push(note);
    }
    // Far longer than the 3 deliveries the test queue allows would take to spend.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(fixture.dead_letters().await, 0, "nothing is dead-lettered while the database is away");
    proxy.restore();

    assert_eq!(sorted(fixture.settle(sent.len()).await), sorted(sent), "every event applied once, after the outage");
    assert_eq!(fixture.dead_letters().await, 0);
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
    assert_eq!(sorted(fixture.settle(sent.len()).await), sorted(sent), "every note exactly once");
    assert_eq!(fixture.unpublished().await, 0);
    fixture.stop().await;
}

#[tokio::test]
async fn a_stopping_bus_finishes_what_it_holds_and_publishes_what_was_committed() {
    let fixture = start().await;
    let sent: Vec<String> = (0..30).map(|index| format!("last words {index}")).collect();
    fixture.write_notes(sent.clone()).await;
    // Stop at once: the relay still publishes what was committed before the stop, and
    // the consumer settles everything it had in hand before its channel closes.
    fixture.stop.consuming.cancel();
    fixture.stop.relaying.cancel();
    let Fixture { database, events, bus, _db, proxy, .. } = fixture;
    bus.stopped().await;
    let unpublished = {
        let mut connection = database.connection().await.expect("connection");
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            count: i64,
        }
        let count: Count = sql_query("SELECT count(*) AS count FROM outbox WHERE published_at IS NULL")
            .get_result(&mut connection)
            .await
            .expect("count");
        count.count
    };
    assert_eq!(unpublished, 0, "the relay flushed the outbox before stopping");
    let queued = events.queue_length(&events.config.queue(SERVICE)).await.expect("queue length");
    let applied: i64 = {
        let mut connection = database.connection().await.expect("connection");
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            count: i64,
        }
        let count: Count =
            sql_query("SELECT count(*) AS count FROM notes").get_result(&mut connection).await.expect("count");
        count.count
    };
    assert_eq!(applied + i64::from(queued), 30, "every event is either applied or still waiting in the queue");
    drop(proxy);
}
