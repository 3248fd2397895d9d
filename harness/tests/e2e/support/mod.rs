//! A whole stack per test: four subgraphs on free ports, each with a fresh database
//! cloned from its migrated template, and a real router process in front of them,
//! with keys of its own.

pub mod contract;
pub mod fixtures;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use event_bus::testing::TestEvents;
use harness::Subgraphs;
use harness::isolated::{IsolatedOptions, IsolatedStack};
use reqwest::StatusCode;
use serde_json::{Value, json};
use stack::{RouterProcess, RouterSettings};
use subgraph_kit::Identity;
use subgraph_kit::testing::TestDatabase;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct TestStack {
    pub subgraphs: Subgraphs,
    configs: Vec<subgraph_kit::ServiceConfig>,
    pub router: Option<RouterProcess>,
    pub identities: std::sync::Arc<stack::Identities>,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    pub events: TestEvents,
    dunning: payment::domain::DunningSchedule,
    /// The test CA and payment's certificate, when payment serves TLS.
    pub certificates: Option<harness::tls::TestCertificates>,
    // Dropped last: the services must stop before their databases go.
    _databases: Vec<TestDatabase>,
}

/// What a test may change about its stack.
#[derive(Clone)]
pub struct StackOptions {
    pub rental: rental::Config,
    /// How long a month is (calendar months unless a test shrinks it).
    pub calendar: subgraph_kit::clock::Calendar,
    /// When payment retries a declined invoice (1, 3 and 7 days).
    pub dunning: payment::domain::DunningSchedule,
    /// Payment serves TLS; rental and the router trust the test's CA only.
    pub payment_tls: bool,
    /// Each service's broker user may publish only its own events on this stack's
    /// exchange, as in production (the other permissions always hold).
    pub topic_permissions: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        let mut rental = harness::in_process::rental_settings().expect("rental settings");
        // Tests that stop payment want the breaker to open quickly.
        rental.payments.timeout = Duration::from_millis(1500);
        rental.payments.breaker.failure_threshold = 3;
        rental.payments.breaker.open_for = Duration::from_millis(1500);
        Self {
            rental,
            calendar: subgraph_kit::clock::Calendar::CALENDAR,
            dunning: payment::domain::DunningSchedule::default(),
            payment_tls: false,
            topic_permissions: false,
        }
    }
}

impl StackOptions {
    /// Months of `seconds` seconds (a day is a thirtieth of it) and retries of a declined
    /// invoice after `retry_days` days: a whole contract in seconds.
    pub fn short_months(seconds: u32, retry_days: &[u32]) -> Self {
        Self {
            calendar: subgraph_kit::clock::Calendar::short(seconds),
            dunning: payment::domain::DunningSchedule { retry_days: retry_days.to_vec() },
            ..Self::default()
        }
    }
}

impl TestStack {
    pub async fn start() -> Self {
        Self::start_with(StackOptions::default()).await
    }

    pub async fn start_with(options: StackOptions) -> Self {
        subgraph_kit::telemetry::init_for_tests();
        let dunning = options.dunning.clone();
        let IsolatedStack { subgraphs, router, identities, configs, events, shutdown, databases, certificates } =
            IsolatedStack::start(IsolatedOptions {
                rental: options.rental,
                router_binary: stack::binaries::binary("router").expect("the router is built"),
                router_log_level: "warn".into(),
                router_workers: Some(1),
                pool_size: 8,
                background_pool_size: None,
                calendar: options.calendar,
                dunning: options.dunning.clone(),
                payment_tls: options.payment_tls,
                topic_permissions: options.topic_permissions,
            })
            .await
            .expect("the stack starts");
        Self {
            subgraphs,
            configs,
            router: Some(router),
            identities,
            // Below the router's keep-alive, so a pooled connection is never reused just
            // as the router closes it.
            client: reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(30)).build().expect("client"),
            shutdown,
            events,
            dunning,
            certificates,
            _databases: databases,
        }
    }

    pub fn router_url(&self) -> String {
        self.router.as_ref().expect("router running").graphql_url()
    }

    /// The settings `service` runs with (its database role, its broker user).
    pub fn config_of(&self, service: &str) -> &subgraph_kit::ServiceConfig {
        self.configs.iter().find(|config| config.service == service).unwrap_or_else(|| panic!("no service {service}"))
    }

    pub fn token(&self, identity: &Identity) -> String {
        self.identities.token(identity)
    }

    pub fn operator_token(&self) -> String {
        self.token(&Identity::Operator { subject: "test-operator".into() })
    }

    pub fn customer_token(&self, customer_id: Uuid) -> String {
        self.token(&Identity::Customer { customer_id })
    }

    /// Runs a GraphQL operation through the router.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> (StatusCode, Value) {
        post_graphql(&self.client, &self.router_url(), token, &json!({ "query": query, "variables": variables })).await
    }

    fn service_mut(&mut self, name: &str) -> &mut subgraph_kit::RunningService {
        match name {
            "inventory" => &mut self.subgraphs.inventory,
            "payment" => &mut self.subgraphs.payment,
            "delivery" => &mut self.subgraphs.delivery,
            other => panic!("tests do not restart {other}"),
        }
    }

    /// Stops one service (server and event bus), as an outage would.
    pub async fn stop_service(&mut self, name: &str) -> std::net::SocketAddr {
        let service = self.service_mut(name);
        let address = service.address;
        service.lifecycle.drain();
        // Wait until the port is really closed.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(address).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        address
    }

    /// Starts a stopped service again on its old address, with its database as it was.
    pub async fn restart_service(&mut self, name: &str, address: std::net::SocketAddr) {
        let mut config = self.configs.iter().find(|config| config.service == name).expect("known service").clone();
        config.listen = address;
        let shutdown = self.shutdown.clone();
        let restarted = match name {
            "inventory" => inventory::start(inventory::Config::new(config), shutdown).await,
            "payment" => {
                payment::start(
                    payment::Config { dunning: self.dunning.clone(), ..payment::Config::new(config) },
                    shutdown,
                )
                .await
            }
            "delivery" => delivery::start(delivery::Config::new(config), shutdown).await,
            other => panic!("tests do not restart {other}"),
        }
        .expect("service restarts");
        let old = std::mem::replace(self.service_mut(name), restarted);
        old.stopped().await;
    }

    /// A second delivery instance on the same database and broker namespace, and a
    /// second router that sends delivery traffic to it (the other subgraphs shared).
    pub async fn second_delivery_and_router(&self) -> (subgraph_kit::RunningService, RouterProcess) {
        let mut config =
            self.configs.iter().find(|config| config.service == delivery::SERVICE).expect("delivery").clone();
        config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let second = delivery::start(delivery::Config::new(config), self.shutdown.clone())
            .await
            .expect("second delivery starts");
        let urls = self
            .subgraphs
            .urls()
            .into_iter()
            .map(|(name, url)| if name == delivery::SERVICE { (name, second.url()) } else { (name, url) })
            .collect();
        let router = RouterProcess::spawn(RouterSettings {
            binary: stack::binaries::binary("router").expect("the router is built"),
            port: 0,
            host: Ipv4Addr::LOCALHOST,
            subgraph_urls: urls,
            token_env: self.identities.env_for("router"),
            log_level: "warn".into(),
            log_file: Some(
                std::env::temp_dir().join(format!("water-rental-test-router-{}.log", Uuid::new_v4().simple())),
            ),
            workers: Some(1),
            extra_env: stack::relaxed_rate_limits(),
        })
        .await
        .expect("second router starts");
        (second, router)
    }

    /// Another router in front of this stack's subgraphs, with `env` on top of the
    /// configuration (a test's own limits, modes or production settings).
    pub async fn router_with(&self, env: Vec<(String, String)>) -> RouterProcess {
        RouterProcess::spawn(RouterSettings {
            binary: stack::binaries::binary("router").expect("the router is built"),
            port: 0,
            host: Ipv4Addr::LOCALHOST,
            subgraph_urls: self.subgraphs.urls(),
            token_env: self.identities.env_for("router"),
            log_level: "warn".into(),
            log_file: Some(std::env::temp_dir().join(format!("water-rental-router-{}.log", Uuid::new_v4().simple()))),
            workers: Some(1),
            extra_env: env,
        })
        .await
        .expect("the router starts")
    }

    pub async fn stop_payment(&mut self) -> std::net::SocketAddr {
        self.stop_service(payment::SERVICE).await
    }

    pub async fn restart_payment(&mut self, address: std::net::SocketAddr) {
        self.restart_service(payment::SERVICE, address).await
    }

    pub async fn stop(mut self) {
        if let Some(router) = self.router.take() {
            router.stop().await.expect("router stops");
        }
        self.shutdown.cancel();
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn post_graphql(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let mut request = client.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let text = response.text().await.expect("response body");
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, value)
}

/// The `extensions.code` of every error in a response.
pub fn error_codes(response: &Value) -> Vec<String> {
    response["errors"]
        .as_array()
        .map(|errors| {
            errors.iter().map(|error| error["extensions"]["code"].as_str().unwrap_or("<none>").to_owned()).collect()
        })
        .unwrap_or_default()
}

/// The message of the first error, for assertions on wording.
pub fn first_message(response: &Value) -> String {
    response["errors"][0]["message"].as_str().unwrap_or_default().to_owned()
}

/// The single number a counting query returns (`SELECT count(*) AS n ...`).
pub async fn count(database: &subgraph_kit::Database, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut connection = database.connection().await.expect("connection");
    let row: Count =
        diesel::sql_query(sql).get_result(&mut connection).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
    row.n
}

/// Polls `check` until it holds or `limit` passes; true if it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    check().await
}

/// Publishes a message to the stack's exchange the way a producer's relay would,
/// bypassing any outbox: for redelivery, poison and ordering tests.
pub async fn publish(stack: &TestStack, routing_key: &str, body: &[u8]) {
    use lapin::BasicProperties;
    use lapin::options::BasicPublishOptions;
    let config = &stack.events.config;
    let connection = lapin::Connection::connect(&config.amqp_url, Default::default()).await.expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel.confirm_select(Default::default()).await.expect("confirms");
    channel
        .basic_publish(
            config.exchange().as_str().into(),
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

/// An event as a service's relay would send it.
pub fn envelope<E: event_bus::Event>(event: &E) -> Vec<u8> {
    serde_json::to_vec(&event_bus::Envelope::wrap(event)).expect("json")
}
