//! A whole stack per test: four subgraphs on free ports, each with a fresh database
//! cloned from its migrated template, and a real router process in front of them,
//! signing with a secret of its own.
#![allow(dead_code)] // each test file uses a different part of this module

pub mod fixtures;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stack::subgraphs::service_config;
use stack::{RouterProcess, RouterSettings, Subgraphs};
use subgraph_kit::testing::{TestDatabase, TestEvents};
use subgraph_kit::{Identity, TokenIssuer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct TestStack {
    pub subgraphs: Subgraphs,
    pub router: Option<RouterProcess>,
    pub secret: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    pub events: TestEvents,
    // Dropped last: the services must stop before their databases go.
    _databases: Vec<TestDatabase>,
}

/// What a test may change about its stack.
#[derive(Clone)]
pub struct StackOptions {
    pub rental: rental::RentalSettings,
}

impl Default for StackOptions {
    fn default() -> Self {
        let mut rental = rental::RentalSettings::from_env().expect("rental settings");
        // Tests that stop payment want the breaker to open quickly.
        rental.payments.timeout = Duration::from_millis(1500);
        rental.payments.breaker.failure_threshold = 3;
        rental.payments.breaker.open_for = Duration::from_millis(1500);
        Self { rental }
    }
}

impl TestStack {
    pub async fn start() -> Self {
        Self::start_with(StackOptions::default()).await
    }

    pub async fn start_with(options: StackOptions) -> Self {
        subgraph_kit::telemetry::init();
        let secret = format!("test-secret-{}", Uuid::new_v4());
        let shutdown = CancellationToken::new();
        let mut databases = Vec::new();
        for (service, migrations, dir) in [
            (inventory::SERVICE, inventory::MIGRATIONS, inventory::MIGRATIONS_DIR),
            (rental::SERVICE, rental::MIGRATIONS, rental::MIGRATIONS_DIR),
            (payment::SERVICE, payment::MIGRATIONS, payment::MIGRATIONS_DIR),
            (delivery::SERVICE, delivery::MIGRATIONS, delivery::MIGRATIONS_DIR),
        ] {
            let database = TestDatabase::create(service, migrations, Path::new(dir)).await.expect("test database");
            databases.push((service, database));
        }
        let events = TestEvents::new(&[inventory::SERVICE, rental::SERVICE, payment::SERVICE, delivery::SERVICE]);
        let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let subgraphs = Subgraphs::start(
            |service| {
                let (_, database) = databases.iter().find(|(name, _)| *name == service).expect("a database each");
                Ok(service_config(service, any_port, database.config.clone(), &secret, events.config.clone()))
            },
            &options.rental,
            shutdown.clone(),
        )
        .await
        .expect("subgraphs start");
        let log_file = std::env::temp_dir().join(format!("water-rental-test-router-{}.log", Uuid::new_v4().simple()));
        let router = RouterProcess::spawn(RouterSettings {
            binary: env!("CARGO_BIN_EXE_router").into(),
            port: 0,
            host: Ipv4Addr::LOCALHOST,
            subgraph_urls: subgraphs.urls(),
            jwt_secret: secret.clone(),
            log_level: "warn".into(),
            log_file: Some(log_file),
            workers: Some(1),
        })
        .await
        .expect("router starts");
        Self {
            subgraphs,
            router: Some(router),
            secret,
            client: reqwest::Client::new(),
            shutdown,
            events,
            _databases: databases.into_iter().map(|(_, database)| database).collect(),
        }
    }

    pub fn router_url(&self) -> String {
        self.router.as_ref().expect("router running").graphql_url()
    }

    pub fn token(&self, identity: &Identity) -> String {
        TokenIssuer::new(&self.secret).issue(identity, Duration::from_secs(600))
    }

    pub fn operator_token(&self) -> String {
        self.token(&Identity::Operator { subject: "test-operator".into() })
    }

    pub fn customer_token(&self, customer_id: Uuid) -> String {
        self.token(&Identity::Customer { customer_id })
    }

    /// Runs a GraphQL operation through the router.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> (StatusCode, Value) {
        post_graphql(&self.client, &self.router_url(), token, &json!({ "query": query, "variables": variables }))
            .await
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


pub async fn post_graphql(client: &reqwest::Client, url: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
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
