//! P4, the event pipeline: outbox → relay (publisher confirms) → RabbitMQ → consumer
//! (inbox + effect in one transaction, ack after commit), at a fixed offered load.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::sql_query;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use event_bus::BusStop;
use event_bus::outbox::enqueue_all;
use event_bus::testing::TestEvents;
use event_bus::{Event, EventBus, EventHandler, EventMeta, HandlerError, Subscription};
use serde_json::{Value, json};
use subgraph_kit::db::{SHARED_MIGRATIONS, SHARED_MIGRATIONS_DIR};
use subgraph_kit::testing::TestDatabase;
use subgraph_kit::{Database, Tx};
use uuid::Uuid;

use crate::{machine, percentile};

const SERVICE: &str = "pipeline";

/// `bench.tick` v1: one unit of offered load.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Tick {
    at: DateTime<Utc>,
}

impl Event for Tick {
    const TYPE: &'static str = "bench.tick";
    const VERSION: i32 = 1;
    const PRODUCER: &'static str = "bench";

    fn at(&self) -> DateTime<Utc> {
        self.at
    }

    fn ordering_key(&self) -> Option<Uuid> {
        None
    }
}

event_bus::inbox! {
    enum ForPipeline for "pipeline" {
        Tick(Tick),
    }
}

const TOPOLOGY: &[Subscription] = &[Subscription::of::<ForPipeline>()];

/// Records when each event was applied; a second application would fail the primary key.
struct Recorder;

impl EventHandler for Recorder {
    type Inbox = ForPipeline;

    async fn handle(&self, tx: &mut Tx<'_>, _event: ForPipeline, meta: EventMeta) -> Result<(), HandlerError> {
        sql_query("INSERT INTO applied (id, occurred_at) VALUES ($1, $2)")
            .bind::<diesel::sql_types::Uuid, _>(meta.id)
            .bind::<diesel::sql_types::Timestamptz, _>(meta.occurred_at)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

async fn count(connection: &mut AsyncPgConnection) -> anyhow::Result<usize> {
    let row: Number = sql_query("SELECT count(*)::float8 AS value FROM applied").get_result(connection).await?;
    Ok(row.value as usize)
}

#[derive(diesel::QueryableByName)]
struct Number {
    #[diesel(sql_type = diesel::sql_types::Double)]
    value: f64,
}

/// Offers `rate` events per second for `seconds`, then waits for all to be applied.
pub async fn run(rate: usize, seconds: u64) -> anyhow::Result<Value> {
    let db = TestDatabase::create(SERVICE, SHARED_MIGRATIONS, Path::new(SHARED_MIGRATIONS_DIR)).await?;
    let database = Database::open_pool(&db.url(), 16)?;
    let error = |e: subgraph_kit::ApiError| anyhow::anyhow!(e.message);
    let mut connection = database.connection().await.map_err(error)?;
    sql_query("CREATE TABLE applied (id uuid PRIMARY KEY, occurred_at timestamptz NOT NULL, applied_at timestamptz NOT NULL DEFAULT clock_timestamp())")
        .execute(&mut connection)
        .await?;
    let events = TestEvents::new(TOPOLOGY);
    let stop = BusStop::default();
    let bus = EventBus::start(events.config.clone(), TOPOLOGY, database.clone(), Recorder, stop.clone());
    anyhow::ensure!(bus.connected(Duration::from_secs(20)).await, "the bus connects");

    // Produce in 10 ms ticks, one transaction and one statement per tick, as a busy
    // service writing many events at once would: what is measured is the pipeline
    // behind the outbox, not the round trips of the producer.
    let per_tick = (rate / 100).max(1);

    let started = Instant::now();
    let mut produced = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        let ticks = vec![Tick { at: Utc::now() }; per_tick];
        database
            .transaction(async |tx: &mut Tx<'_>| Ok::<_, subgraph_kit::ApiError>(enqueue_all(tx, &ticks).await?))
            .await
            .map_err(error)?;
        produced += per_tick;
    }
    let offered_for = started.elapsed().as_secs_f64();

    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&mut connection).await? < produced && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let applied = count(&mut connection).await?;
    let span: Number =
        sql_query("SELECT extract(epoch FROM max(applied_at) - min(occurred_at))::float8 AS value FROM applied")
            .get_result(&mut connection)
            .await?;
    let lags: Vec<Number> = sql_query(
        "SELECT (extract(epoch FROM applied_at - occurred_at) * 1000)::float8 AS value FROM applied ORDER BY 1",
    )
    .load(&mut connection)
    .await?;
    let lags: Vec<f64> = lags.into_iter().map(|row| row.value).collect();
    stop.consuming.cancel();
    stop.relaying.cancel();
    bus.stopped().await;
    drop(connection);
    drop(events);
    drop(db);
    Ok(json!({
        "scenario": "event-pipeline",
        "machine": machine(),
        "offeredPerSecond": produced as f64 / offered_for,
        "produced": produced,
        "applied": applied,
        "notApplied": produced.saturating_sub(applied),
        "appliedPerSecond": applied as f64 / span.value,
        "lagMs": { "p50": percentile(&lags, 0.5), "p99": percentile(&lags, 0.99), "max": lags.last() },
    }))
}
