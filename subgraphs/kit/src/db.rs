//! PostgreSQL: each service owns one database, created when missing and migrated at
//! start with migrations embedded in its binary, and reached through a pool.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use crate::postgres_tls::PostgresTls;
use anyhow::{Context, bail};
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::{ConnectionError, QueryResult, sql_query};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AnsiTransactionManager, AsyncConnection, AsyncPgConnection, RunQueryDsl, TransactionManager};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::{DatabaseConfig, database_url};
use crate::error::ApiError;

pub type Connection = Object<AsyncPgConnection>;

/// Tables every service has (the event outbox and inbox), migrated before the
/// service's own.
pub const SHARED_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/shared");
/// Where the shared migrations live, for tests that fingerprint them.
pub const SHARED_MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/shared");

/// A service's database: the pool, a count of the SQL statements sent through it, and
/// the signal that wakes the outbox relay after a commit that wrote events.
///
/// The count is what proves that entity lookups are batched (one statement for a
/// hundred keys), and an operator can read it as a metric.
#[derive(Clone)]
pub struct Database {
    pool: Pool<AsyncPgConnection>,
    url: String,
    /// TLS to the server, when the configuration names its CA.
    tls: Option<PostgresTls>,
    statements: Arc<AtomicU64>,
    events_committed: Arc<Notify>,
    projection: Option<Arc<dyn Projection>>,
}

/// A read model kept in the same database as what it is projected from, written by
/// the transaction machinery itself: storage code that changes what the model reads
/// marks the key with [`Tx::touch`], and every transaction projects the keys it touched
/// just before it commits. No use case has to remember to, so a new one cannot leave
/// the model stale.
///
/// Before projecting, the transaction takes a lock per key (in key order, held until it
/// ends). Two transactions that touch the same key therefore project one after the
/// other, and the second reads what the first committed: a projection computed from an
/// older snapshot can never be written over a newer one. The lock is an advisory lock on
/// the key, not a row lock, so it also orders a transaction whose row is not committed
/// yet (an event that arrives before the rental it is about).
pub trait Projection: Send + Sync + 'static {
    /// Names the model; it scopes the per-key locks.
    fn name(&self) -> &'static str;

    /// A PostgreSQL notification channel told each projected key once the transaction
    /// commits (every replica that listens hears it, after the change is visible), for
    /// live streams of the model. None by default.
    fn notify_channel(&self) -> Option<&'static str> {
        None
    }

    /// Rewrites the model's rows of `keys` (sorted, distinct, each one's lock held)
    /// from what this transaction sees.
    fn project<'c>(&'c self, connection: &'c mut AsyncPgConnection, keys: &'c [Uuid])
    -> BoxFuture<'c, QueryResult<()>>;
}

impl Database {
    /// Creates the database if it does not exist, runs pending migrations, and opens
    /// the pool. Safe to call from several replicas at once.
    pub async fn connect(config: &DatabaseConfig, migrations: EmbeddedMigrations) -> anyhow::Result<Self> {
        if config.migrate_on_start {
            migrate(config, migrations).await?;
        }
        Self::open_configured(config, config.pool_size)
    }

    /// Opens a pool of `size` to the existing, migrated database `config` names, over TLS
    /// when it names a CA.
    pub fn open_configured(config: &DatabaseConfig, size: usize) -> anyhow::Result<Self> {
        Self::build(&config.url(), tls_of(config)?, size, Arc::new(Notify::new()), None)
    }

    /// Opens a pool to an existing, migrated database, in plain text (tests and tools on
    /// this machine's server).
    pub fn open_pool(url: &str, size: usize) -> anyhow::Result<Self> {
        Self::build(url, None, size, Arc::new(Notify::new()), None)
    }

    /// A second pool of `size` connections to the same database, sharing the commit
    /// signal: for background work that must not compete with requests.
    pub fn sibling(&self, size: usize) -> anyhow::Result<Self> {
        Self::build(&self.url, self.tls.clone(), size, self.events_committed.clone(), self.projection.clone())
    }

    /// The same pool, whose transactions project `projection` before they commit
    /// (see [`Projection`]). A transaction that touches a key on a pool without one
    /// fails rather than leave a read model behind.
    pub fn with_projection(mut self, projection: Arc<dyn Projection>) -> Self {
        self.projection = Some(projection);
        self
    }

    fn build(
        url: &str,
        tls: Option<PostgresTls>,
        size: usize,
        events_committed: Arc<Notify>,
        projection: Option<Arc<dyn Projection>>,
    ) -> anyhow::Result<Self> {
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        let setup_tls = tls.clone();
        manager_config.custom_setup = Box::new(move |url| {
            let counter = counter.clone();
            let url = url.to_owned();
            let tls = setup_tls.clone();
            async move {
                let mut connection = crate::postgres_tls::connect(&url, tls.as_ref()).await?;
                connection.set_instrumentation(StatementCounter { total: counter, paused: false, last_answer: None });
                Ok(connection)
            }
            .boxed()
        });
        // Before reuse, the pool drops a connection whose socket is known to be closed
        // (a database restart or a terminated backend) or that was left inside an
        // unfinished transaction (a request cancelled mid-way), so it is replaced
        // instead of failing a request. A connection that has been idle for a while
        // could also have died silently, so it is checked with a trivial query first.
        // One that answered a moment ago is not: that query would be one more round
        // trip on every checkout, a sizeable share of a short transaction under load.
        // The check is not the service's own work, so it is not counted.
        manager_config.recycling_method = RecyclingMethod::CustomFunction(Box::new(|connection| {
            async move {
                if answered_within(connection, TRUSTED_AFTER_ANSWER) {
                    return Ok(());
                }
                set_counting(connection, false);
                let checked = sql_query("SELECT 1").execute(connection).await;
                set_counting(connection, true);
                checked.map(|_| ())
            }
            .boxed()
        }));
        let manager = AsyncDieselConnectionManager::new_with_config(url, manager_config);
        let pool = Pool::builder(manager).max_size(size).build().context("building the database pool")?;
        Ok(Self { pool, url: url.to_owned(), tls, statements, events_committed, projection })
    }

    /// A pool that has not connected and never will unless used: for exporting a
    /// schema, which needs the schema's data but no database.
    pub fn unconnected() -> Self {
        Self::open_pool("postgres://unused@127.0.0.1:1/unused", 1).expect("building a lazy pool cannot fail")
    }

    /// A pooled connection, or SERVICE_UNAVAILABLE the caller can return as is.
    ///
    /// A caller waits at most [`CHECKOUT_TIMEOUT`]: past it the database counts as out
    /// of reach, instead of the request hanging on a server that does not answer.
    pub async fn connection(&self) -> Result<Connection, ApiError> {
        match tokio::time::timeout(CHECKOUT_TIMEOUT, self.pool.get()).await {
            Ok(connection) => Ok(connection?),
            Err(_) => Err(ApiError::database_unavailable("no database connection within the checkout timeout")),
        }
    }

    /// Runs `work` in one transaction and commits it if `work` succeeds (rolls back
    /// otherwise). Events written with the transaction ([`Tx::record_event`], which
    /// `outbox::enqueue` calls) wake the outbox relay once the commit has succeeded, so
    /// no caller has to remember to.
    ///
    /// A caller that is cancelled mid-way leaves its connection inside the transaction;
    /// the pool sees that and discards the connection, so nothing half-done commits.
    pub async fn transaction<T, E>(
        &self,
        work: impl for<'t> AsyncFnOnce(&'t mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error> + From<ApiError>,
    {
        let mut connection = self.connection().await?;
        self.transaction_on(&mut connection, work).await
    }

    /// [`Database::transaction`] on a connection the caller already holds (one of this
    /// database's).
    pub async fn transaction_on<T, E>(
        &self,
        connection: &mut AsyncPgConnection,
        work: impl for<'t> AsyncFnOnce(&'t mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error>,
    {
        <AnsiTransactionManager as TransactionManager<AsyncPgConnection>>::begin_transaction(connection).await?;
        let mut tx = Tx { connection, events_written: false, touched: BTreeSet::new() };
        let outcome = match work(&mut tx).await {
            Ok(value) => self.project_touched(&mut tx).await.map(|()| value).map_err(E::from),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(value) => {
                let wrote_events = tx.events_written;
                <AnsiTransactionManager as TransactionManager<AsyncPgConnection>>::commit_transaction(tx.connection)
                    .await?;
                if wrote_events {
                    self.events_committed.notify_one();
                }
                Ok(value)
            }
            Err(error) => {
                // A failed rollback leaves the connection marked broken: the pool drops it.
                let _ = <AnsiTransactionManager as TransactionManager<AsyncPgConnection>>::rollback_transaction(
                    tx.connection,
                )
                .await;
                Err(error)
            }
        }
    }

    /// Projects the keys `tx` touched, each under its lock (see [`Projection`]).
    async fn project_touched(&self, tx: &mut Tx<'_>) -> QueryResult<()> {
        if tx.touched.is_empty() {
            return Ok(());
        }
        let Some(projection) = &self.projection else {
            return Err(diesel::result::Error::QueryBuilderError(
                "this transaction changed what a read model reads, but its pool projects none".into(),
            ));
        };
        let keys: Vec<Uuid> = std::mem::take(&mut tx.touched).into_iter().collect();
        // unnest yields the keys in array order (sorted), so every transaction takes
        // them in the same order and none waits for another in a cycle. A notification
        // is only delivered at commit, so sending it here is sending it after the change.
        // With no channel, the CASE does not call pg_notify at all.
        sql_query(
            "SELECT pg_advisory_xact_lock(hashtextextended($2 || ':' || key::text, 2)), \
                    CASE WHEN $3 <> '' THEN pg_notify($3, key::text) END \
             FROM unnest($1::uuid[]) AS key",
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(&keys)
        .bind::<diesel::sql_types::Text, _>(projection.name())
        .bind::<diesel::sql_types::Text, _>(projection.notify_channel().unwrap_or(""))
        .execute(&mut *tx.connection)
        .await?;
        // A statement of its own, started after the locks are held: under READ
        // COMMITTED it reads everything committed before them.
        projection.project(tx.connection, &keys).await
    }

    /// The signal a commit that wrote events gives; the relay waits on it.
    pub fn events_committed(&self) -> &Arc<Notify> {
        &self.events_committed
    }

    /// How many SQL statements this pool has sent since it was opened.
    pub fn statements_executed(&self) -> u64 {
        AtomicU64::load(&self.statements, Ordering::Relaxed)
    }

    /// Connections in use, idle, and callers waiting for one.
    pub fn pool_state(&self) -> PoolState {
        let status = self.pool.status();
        PoolState {
            in_use: status.size.saturating_sub(status.available),
            idle: status.available,
            waiting: status.waiting,
        }
    }

    /// True when the database answers a trivial query (the readiness probe), within
    /// a second.
    pub async fn is_reachable(&self) -> bool {
        let probe = async {
            let Ok(mut connection) = self.connection().await else { return false };
            sql_query("SELECT 1").execute(&mut connection).await.is_ok()
        };
        tokio::time::timeout(Duration::from_secs(1), probe).await.unwrap_or(false)
    }
}

/// The current time at the database's precision (microseconds), so a row answered
/// from memory reads exactly like the same row read back later.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// A snapshot of a pool, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub in_use: usize,
    pub idle: usize,
    pub waiting: usize,
}

/// An open transaction. It derefs to the connection, so storage functions take it as
/// `&mut AsyncPgConnection`; events go through `outbox::enqueue(tx, ...)`, which is
/// only possible inside one.
pub struct Tx<'c> {
    connection: &'c mut AsyncPgConnection,
    events_written: bool,
    touched: BTreeSet<Uuid>,
}

impl Tx<'_> {
    /// Notes that this transaction wrote outbox rows, so its commit wakes the relay.
    pub fn record_event(&mut self) {
        self.events_written = true;
    }

    /// Notes that this transaction changed what the read model's row `key` is made of,
    /// so it is projected before the commit ([`Projection`]).
    pub fn touch(&mut self, key: Uuid) {
        self.touched.insert(key);
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        self.connection
    }
}

impl std::ops::DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        self.connection
    }
}

/// How long a caller waits for a pooled connection (or for a new one to open).
pub const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long after its last successful statement a pooled connection is reused
/// without a liveness query.
const TRUSTED_AFTER_ANSWER: Duration = Duration::from_secs(1);

/// Counts the SQL statements a connection sends, and remembers when the database last
/// answered one without error. It logs no statement: their parameters are card digits,
/// addresses and names.
struct StatementCounter {
    total: Arc<AtomicU64>,
    paused: bool,
    last_answer: Option<Instant>,
}

impl Instrumentation for StatementCounter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => {
                if !self.paused {
                    self.total.fetch_add(1, Ordering::Relaxed);
                }
            }
            InstrumentationEvent::FinishQuery { error: None, .. } => self.last_answer = Some(Instant::now()),
            InstrumentationEvent::FinishQuery { error: Some(_), .. } => self.last_answer = None,
            _ => {}
        }
    }
}

/// The pool's instrumentation on `connection` (every pooled connection has one).
fn counter(connection: &mut AsyncPgConnection) -> Option<&mut StatementCounter> {
    connection.instrumentation().downcast_mut::<StatementCounter>()
}

fn answered_within(connection: &mut AsyncPgConnection, window: Duration) -> bool {
    counter(connection).and_then(|counter| counter.last_answer).is_some_and(|answered| answered.elapsed() < window)
}

fn set_counting(connection: &mut AsyncPgConnection, counting: bool) {
    if let Some(counter) = counter(connection) {
        counter.paused = !counting;
    }
}

/// Creates database `name` unless it exists. Two processes racing here is fine: the
/// loser's "already exists" error is ignored.
pub async fn ensure_database_exists(server_url: &str, name: &str, tls: Option<&PostgresTls>) -> anyhow::Result<()> {
    validate_database_name(name)?;
    let mut admin = connect_admin_with(server_url, tls).await?;
    let exists: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
        "EXISTS (SELECT 1 FROM pg_database WHERE datname = '{name}')"
    )))
    .get_result(&mut admin)
    .await
    .context("checking whether the service database exists")?;
    if exists {
        return Ok(());
    }
    match sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).await {
        Ok(_) => {
            tracing::info!(database = name, "created database");
            Ok(())
        }
        Err(diesel::result::Error::DatabaseError(_, info)) if info.message().contains("already exists") => Ok(()),
        Err(error) => Err(error).with_context(|| {
            format!(
                "database {name} does not exist and this role cannot create it: provision it first \
                 (a role owning its database: docs/security.md, \"Each service only its own\")"
            )
        }),
    }
}

/// Makes `role` (it may log in, and nothing more: no superuser, no CREATEDB, no
/// CREATEROLE) and its database `name`, owned by it, that no other role may connect to.
/// An existing role gets `password` (when given); an existing database of another owner
/// is handed over with everything in its `public` schema, so a database that predates
/// per-service roles keeps working. `admin_url` is a server URL of a role that may
/// create roles and databases. Safe to run again, and from several processes at once.
pub async fn provision_database(
    admin_url: &str,
    role: &str,
    name: &str,
    password: Option<&crate::config::Secret>,
) -> anyhow::Result<()> {
    validate_database_name(name)?;
    let mut admin = connect_admin(admin_url).await?;
    take_provisioning_turn(&mut admin).await?;
    provision_role_on(&mut admin, role, password).await?;
    ignore_already_exists(sql_query(format!("CREATE DATABASE \"{name}\" OWNER \"{role}\"")).execute(&mut admin).await)?;
    sql_query(format!("ALTER DATABASE \"{name}\" OWNER TO \"{role}\"")).execute(&mut admin).await?;
    sql_query(format!("REVOKE ALL ON DATABASE \"{name}\" FROM PUBLIC")).execute(&mut admin).await?;
    let mut inside = AsyncPgConnection::establish(&database_url(admin_url, name))
        .await
        .with_context(|| format!("connecting to database {name} to hand it to {role}"))?;
    sql_query(HAND_OVER_PUBLIC_SCHEMA.replace("{role}", role))
        .execute(&mut inside)
        .await
        .with_context(|| format!("handing what database {name} holds to {role}"))?;
    // The turn ends with `admin`'s session, after the hand-over.
    drop(admin);
    Ok(())
}

/// Provisioners racing on one role or database (parallel tests) would fail each other's
/// changes to the same catalogue rows ("tuple concurrently updated"), so they take turns
/// on a server-wide advisory lock, held until `admin`'s session ends.
async fn take_provisioning_turn(admin: &mut AsyncPgConnection) -> anyhow::Result<()> {
    // An advisory lock taken in the maintenance database is seen by every session of it.
    sql_query("SELECT pg_advisory_lock(7232)").execute(admin).await?;
    Ok(())
}

/// The PostgreSQL role a service logs in as, wherever we provision one: `water_<service>`.
pub fn service_role(service: &str) -> String {
    format!("water_{service}")
}

/// Makes `role`, or sets an existing one's attributes and password: it may log in, and
/// nothing more (no superuser, no CREATEDB, no CREATEROLE).
pub async fn provision_role(
    admin_url: &str,
    role: &str,
    password: Option<&crate::config::Secret>,
) -> anyhow::Result<()> {
    let mut admin = connect_admin(admin_url).await?;
    take_provisioning_turn(&mut admin).await?;
    provision_role_on(&mut admin, role, password).await
}

async fn provision_role_on(
    admin: &mut AsyncPgConnection,
    role: &str,
    password: Option<&crate::config::Secret>,
) -> anyhow::Result<()> {
    validate_database_name(role)?;
    let login = match password {
        // Quoted as a string literal: a single quote doubled, nothing else special.
        Some(password) => format!("LOGIN PASSWORD '{}'", password.expose().replace('\'', "''")),
        None => "LOGIN".to_owned(),
    };
    let attributes = format!("{login} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION");
    let exists: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
        "EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}' AND rolcanlogin AND NOT rolsuper \
         AND NOT rolcreatedb AND NOT rolcreaterole)"
    )))
    .get_result(&mut *admin)
    .await?;
    // Parallel tests all provision the same roles, without a password: altering a role
    // they agree on would only make them contend for its catalogue row.
    if exists && password.is_none() {
        return Ok(());
    }
    ignore_already_exists(sql_query(format!("CREATE ROLE \"{role}\" {attributes}")).execute(&mut *admin).await)?;
    sql_query(format!("ALTER ROLE \"{role}\" {attributes}"))
        .execute(&mut *admin)
        .await
        .with_context(|| format!("setting up role {role}"))?;
    Ok(())
}

fn ignore_already_exists(result: QueryResult<usize>) -> anyhow::Result<()> {
    match result {
        // Two at once: the loser sees either message, depending on where it lost.
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("already exists") || info.message().contains("duplicate key") =>
        {
            Ok(())
        }
        other => Ok(other.map(drop)?),
    }
}

/// Gives `{role}` every table, view, sequence, type and function of the `public`
/// schema it does not own yet (all our migrations create), so a database migrated by
/// another role works under its service's own. A sequence that belongs to a column
/// moves with its table.
const HAND_OVER_PUBLIC_SCHEMA: &str = r"
DO $$
DECLARE
    object record;
BEGIN
    FOR object IN
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND pg_get_userbyid(c.relowner) <> '{role}'
          AND NOT (c.relkind = 'S' AND EXISTS (
              SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER TABLE public.%I OWNER TO %I', object.relname, '{role}');
    END LOOP;
    FOR object IN
        SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd') AND pg_get_userbyid(t.typowner) <> '{role}'
    LOOP
        EXECUTE format('ALTER TYPE public.%I OWNER TO %I', object.typname, '{role}');
    END LOOP;
    FOR object IN
        SELECT p.oid::regprocedure AS signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> '{role}'
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO %I', object.signature, '{role}');
    END LOOP;
END
$$";

/// A connection to the server's maintenance database, for creating and dropping others.
pub async fn connect_admin(server_url: &str) -> anyhow::Result<AsyncPgConnection> {
    connect_admin_with(server_url, None).await
}

/// [`connect_admin`], over TLS with `tls`.
pub async fn connect_admin_with(server_url: &str, tls: Option<&PostgresTls>) -> anyhow::Result<AsyncPgConnection> {
    crate::postgres_tls::connect(&database_url(server_url, "postgres"), tls)
        .await
        .map_err(|error: ConnectionError| anyhow::anyhow!(error))
        .with_context(|| format!("connecting to PostgreSQL at {}", crate::config::without_password(server_url)))
}

/// Database and role names are spliced into DDL, so only plain identifiers are accepted.
pub fn validate_database_name(name: &str) -> anyhow::Result<()> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        bail!("database name {name:?} must be 1-63 characters of a-z, 0-9 and _");
    }
    Ok(())
}

/// Creates the database when it is missing, then runs its pending migrations within the
/// configured lock and statement timeouts: what a service does at start, and what
/// `<service> migrate` does on its own.
///
/// It also takes CONNECT on the database away from PUBLIC, so that only its owner (the
/// service's role) and superusers may connect: another service's role is refused even
/// where the server trusts every local connection. A role that does not own its
/// database (one role for everything, as before per-service roles) only gets a warning.
pub async fn migrate(config: &DatabaseConfig, migrations: EmbeddedMigrations) -> anyhow::Result<()> {
    // One read of the CA, one connection for the REVOKE and the migrations.
    let tls = tls_of(config)?;
    ensure_database_exists(&config.server_url_with_password(), &config.name, tls.as_ref()).await?;
    let mut connection = connect_with(config, tls.as_ref()).await?;
    if let Err(error) =
        sql_query(format!("REVOKE ALL ON DATABASE \"{}\" FROM PUBLIC", config.name)).execute(&mut connection).await
    {
        tracing::warn!(database = %config.name, %error, "could not keep other roles out of the database: the service's role does not own it");
    }
    run_migrations_on(connection, migrations, config.migration_lock_timeout, config.migration_statement_timeout).await
}

/// Runs pending migrations under an advisory lock, so replicas starting together do
/// not run the same migration twice.
pub async fn run_migrations(url: &str, migrations: EmbeddedMigrations) -> anyhow::Result<()> {
    let connection = AsyncPgConnection::establish(url).await.context("connecting to the database to migrate it")?;
    run_migrations_on(connection, migrations, Duration::ZERO, Duration::ZERO).await
}

/// The TLS settings of `config`: its CA, when it names one (`POSTGRES_CA_FILE`).
pub fn tls_of(config: &DatabaseConfig) -> anyhow::Result<Option<PostgresTls>> {
    config
        .ca_file
        .as_deref()
        .map(PostgresTls::trusting)
        .transpose()
        .context("POSTGRES_CA_FILE: the CA of the database server's certificate")
}

/// One connection to the database `config` names, as its service connects (its role,
/// TLS when configured): for a listener or a tool that needs a connection of its own.
pub async fn connect_to(config: &DatabaseConfig) -> anyhow::Result<AsyncPgConnection> {
    connect_with(config, tls_of(config)?.as_ref()).await
}

async fn connect_with(config: &DatabaseConfig, tls: Option<&PostgresTls>) -> anyhow::Result<AsyncPgConnection> {
    crate::postgres_tls::connect(&config.url(), tls)
        .await
        .with_context(|| format!("connecting to database {}", config.name))
}

/// [`run_migrations`] on a connection already open, with a migration statement giving up after waiting
/// `lock_timeout` for a lock or running `statement_timeout` (zero: no limit), so a
/// migration stuck behind live traffic fails the rollout instead of stalling it.
pub async fn run_migrations_on(
    connection: AsyncPgConnection,
    migrations: EmbeddedMigrations,
    lock_timeout: Duration,
    statement_timeout: Duration,
) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        // The migration harness is synchronous; the wrapper drives the async connection
        // (made on the runtime, over TLS when configured) on this blocking thread.
        let mut connection: AsyncConnectionWrapper<AsyncPgConnection> = AsyncConnectionWrapper::from(connection);
        // Advisory locks are scoped to the current database, so one constant key
        // serves every service without them blocking each other.
        diesel::RunQueryDsl::execute(sql_query("SELECT pg_advisory_lock(7231)"), &mut connection)?;
        // Set after the advisory lock: a replica waiting for another's migrations waits
        // as long as they take.
        let limits = format!(
            "SET lock_timeout = {}; SET statement_timeout = {}",
            lock_timeout.as_millis(),
            statement_timeout.as_millis()
        );
        diesel::connection::SimpleConnection::batch_execute(&mut connection, &limits)?;
        let applied = || -> anyhow::Result<Vec<String>> {
            let mut versions = Vec::new();
            for source in [SHARED_MIGRATIONS, migrations] {
                let done = connection.run_pending_migrations(source).map_err(|error| anyhow::anyhow!(error))?;
                versions.extend(done.iter().map(ToString::to_string));
            }
            Ok(versions)
        };
        let applied = applied();
        diesel::RunQueryDsl::execute(sql_query("SELECT pg_advisory_unlock(7231)"), &mut connection)?;
        for version in applied? {
            tracing::info!(%version, "applied migration");
        }
        Ok(())
    })
    .await
    .context("migration task panicked")?
}
