//! Test support: every test gets its own database, cloned from a template that holds the
//! service's migrated schema. Cloning takes milliseconds; migrating takes much longer,
//! so the template is built once per migration set and shared by all tests and runs.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use diesel::sql_query;
use diesel_async::RunQueryDsl;
use diesel_migrations::EmbeddedMigrations;
use sha2::{Digest, Sha256};

use crate::config::{DEFAULT_POSTGRES_URL, DatabaseConfig, database_url, env_or, with_user};
use crate::db::{connect_admin, provision_role, run_migrations, service_role};

/// Test databases older than this are left over from a crashed run and are dropped.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// A fresh, migrated database for one test; dropped when this value is dropped. It
/// belongs to the service's own role (`water_<service>`), as it would in production,
/// and `config` connects as that role; no other role may connect to it.
pub struct TestDatabase {
    pub config: DatabaseConfig,
    /// The server URL of `POSTGRES_URL`'s role, which creates and drops databases.
    pub admin_url: String,
}

impl TestDatabase {
    /// Clones a new database for `service` from its template, building the template
    /// first if these migrations have none yet. `migrations_dir` is the folder the
    /// migrations are embedded from; its contents name the template, so editing a
    /// migration builds a new one.
    pub async fn create(service: &str, migrations: EmbeddedMigrations, migrations_dir: &Path) -> anyhow::Result<Self> {
        let admin_url = env_or("POSTGRES_URL", DEFAULT_POSTGRES_URL);
        let role = service_role(service);
        provision_role(&admin_url, &role, None).await?;
        let shared = Path::new(crate::db::SHARED_MIGRATIONS_DIR);
        // The role is part of the name: a template's tables belong to whoever migrated it.
        let template = format!("tpl_{service}_{}", fingerprint(&[shared, migrations_dir], &role)?);
        ensure_template(&admin_url, service, &role, &template, migrations).await?;

        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("test_{service}_{now}_{}", &suffix[..12]);
        let mut admin = connect_admin(&admin_url).await?;
        sql_query(format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\" OWNER \"{role}\""))
            .execute(&mut admin)
            .await
            .with_context(|| format!("cloning {template} into {name}"))?;
        sql_query(format!("REVOKE ALL ON DATABASE \"{name}\" FROM PUBLIC")).execute(&mut admin).await?;
        Ok(Self {
            admin_url: admin_url.clone(),
            config: DatabaseConfig {
                server_url: with_user(&admin_url, &role),
                password: None,
                ca_file: None,
                name,
                pool_size: 8,
                // As Kubernetes sets it. Two stacks of four services run at once in a test
                // binary, on a server of 100 connections of which 3 are kept for
                // superusers: 4 × (8 + 4) each stays under it, where 4 × (8 + 10) ran out
                // once the services stopped being superusers.
                background_pool_size: 4,
                migrate_on_start: true,
                migration_lock_timeout: Duration::from_secs(10),
                migration_statement_timeout: Duration::from_secs(300),
            },
        })
    }

    pub fn url(&self) -> String {
        self.config.url()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside async context, possibly while the test's runtime shuts down,
        // so the drop gets a thread and a runtime of its own.
        let server_url = self.admin_url.clone();
        let name = self.config.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(drop_database(&server_url, &name))
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error:#}", self.config.name);
        }
    }
}

async fn drop_database(server_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = connect_admin(server_url).await?;
    sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin).await?;
    Ok(())
}

/// Builds the template under an advisory lock so that parallel tests build it once.
/// It is built under a temporary name and renamed when complete, so a crash midway
/// never leaves a half-migrated template behind.
async fn ensure_template(
    server_url: &str,
    service: &str,
    role: &str,
    template: &str,
    migrations: EmbeddedMigrations,
) -> anyhow::Result<()> {
    let mut admin = connect_admin(server_url).await?;
    let lock_key = i64::from_be_bytes(Sha256::digest(template.as_bytes())[..8].try_into()?);
    sql_query(format!("SELECT pg_advisory_lock({lock_key})")).execute(&mut admin).await?;
    let result = async {
        if database_names(&mut admin, template).await?.contains(&template.to_owned()) {
            return Ok(());
        }
        sweep(&mut admin, service, template).await?;
        let building = format!("{template}_building");
        sql_query(format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)")).execute(&mut admin).await?;
        sql_query(format!("CREATE DATABASE \"{building}\" OWNER \"{role}\"")).execute(&mut admin).await?;
        run_migrations(&database_url(&with_user(server_url, role), &building), migrations).await?;
        sql_query(format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\"")).execute(&mut admin).await?;
        let built = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        sql_query(format!("COMMENT ON DATABASE \"{template}\" IS 'built {built}'")).execute(&mut admin).await?;
        anyhow::Ok(())
    }
    .await;
    sql_query(format!("SELECT pg_advisory_unlock({lock_key})")).execute(&mut admin).await?;
    result.with_context(|| format!("building template database {template}"))
}

/// Drops this service's templates for other migration sets that nobody has built for a
/// day, and test databases that a crashed run left behind. A template of another
/// migration set may well be in use: another checkout (a branch, a CI run) testing
/// against the same server clones it.
async fn sweep(admin: &mut diesel_async::AsyncPgConnection, service: &str, keep: &str) -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    for (name, comment) in templates(admin, &format!("tpl_{service}_%")).await? {
        let built: Option<u64> = comment.as_deref().and_then(|text| text.strip_prefix("built ")?.parse().ok());
        let abandoned = built.is_none_or(|built| now.saturating_sub(built) > TEMPLATE_KEPT_FOR.as_secs());
        if name != keep && !name.ends_with("_building") && abandoned {
            sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(admin).await?;
        }
    }
    for name in database_names(admin, &format!("test_{service}_%")).await? {
        let created: Option<u64> = name.split('_').nth(2).and_then(|part| part.parse().ok());
        if created.is_some_and(|created| now.saturating_sub(created) > STALE_AFTER.as_secs()) {
            sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(admin).await?;
        }
    }
    Ok(())
}

/// How long a template of another migration set is kept after it was built.
const TEMPLATE_KEPT_FOR: Duration = Duration::from_secs(24 * 3600);

/// Templates matching `pattern`, with their comment (`built <unix seconds>`).
async fn templates(
    admin: &mut diesel_async::AsyncPgConnection,
    pattern: &str,
) -> anyhow::Result<Vec<(String, Option<String>)>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        comment: Option<String>,
    }
    let rows: Vec<Row> = sql_query(
        "SELECT datname, shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname LIKE $1",
    )
    .bind::<diesel::sql_types::Text, _>(pattern)
    .load(admin)
    .await?;
    Ok(rows.into_iter().map(|row| (row.datname, row.comment)).collect())
}

async fn database_names(admin: &mut diesel_async::AsyncPgConnection, pattern: &str) -> anyhow::Result<Vec<String>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let rows: Vec<Row> = sql_query("SELECT datname FROM pg_database WHERE datname LIKE $1")
        .bind::<diesel::sql_types::Text, _>(pattern)
        .load(admin)
        .await?;
    Ok(rows.into_iter().map(|row| row.datname).collect())
}

/// A short hash of every file under the migration folders (names and contents) and of
/// the role that owns what they create.
fn fingerprint(dirs: &[&Path], owner: &str) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(owner.as_bytes());
    for dir in dirs {
        let mut files = Vec::new();
        collect_files(dir, &mut files).with_context(|| format!("reading migrations in {}", dir.display()))?;
        files.sort();
        for path in files {
            hasher.update(path.strip_prefix(dir)?.to_string_lossy().as_bytes());
            hasher.update(std::fs::read(&path)?);
        }
    }
    let digest = hasher.finalize();
    Ok(digest[..6].iter().map(|byte| format!("{byte:02x}")).collect())
}

fn collect_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// A TCP proxy in front of a server (PostgreSQL, say) that a test can cut and restore,
/// as a network failure or an outage of the server would look to its clients.
pub struct TcpProxy {
    pub address: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
    _task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free local port and forwards every connection to `target`.
    pub async fn start(target: std::net::SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let (cut, watch) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                let mut watch = watch.clone();
                if *watch.borrow() {
                    // Cut: refuse by closing at once.
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Ok(Self { address, cut, _task: task })
    }

    /// Drops every open connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }

    pub fn restore(&self) {
        let _ = self.cut.send(false);
    }
}

/// The server URL `config` points at, with its host and port replaced by `address`.
pub fn server_url_via(server_url: &str, address: std::net::SocketAddr) -> String {
    let (scheme, rest) = server_url.split_once("://").unwrap_or(("postgres", server_url));
    let (credentials, _) = rest.rsplit_once('@').map_or(("", rest), |(credentials, host)| (credentials, host));
    let credentials = if credentials.is_empty() { String::new() } else { format!("{credentials}@") };
    format!("{scheme}://{credentials}{address}")
}

/// The socket address of a server URL like `postgres://user@127.0.0.1:5432`.
pub fn server_address(server_url: &str) -> anyhow::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let rest = server_url.split_once("://").map_or(server_url, |(_, rest)| rest);
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = host.split('/').next().unwrap_or(host);
    host.to_socket_addrs()?.next().ok_or_else(|| anyhow::anyhow!("{server_url} names no address"))
}
