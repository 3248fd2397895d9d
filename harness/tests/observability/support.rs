//! One process cluster per test on the machine's PostgreSQL and RabbitMQ (fresh
//! databases, a broker namespace of its own), and the client steps the tests share.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use harness::cluster::{ClusterSpec, ProcessCluster};
use serde_json::{Value, json};
use subgraph_kit::Identity;
use uuid::Uuid;

pub use harness::workload::APPROVED as APPROVED_CARD;

pub const RENT: &str = "mutation RentDispenser($input: RentInput!) { rent(input: $input) { id status } }";
pub const START: &str = "mutation ShipDispenser($id: ID!) { startDelivery(id: $id) { id status } }";
pub const CANCEL: &str = "mutation CancelRental($id: ID!) { cancelRental(id: $id) { id status } }";
pub const LIVE: &str = "subscription Live($rentalId: ID!) { deliveryStatusChanged(rentalId: $rentalId) { id status } }";
const DELIVERY_OF: &str = "query DeliveryOf($id: ID!) { rental(id: $id) { id delivery { id status } } }";

pub struct Observed {
    pub cluster: ProcessCluster,
    pub client: reqwest::Client,
    pub log_dir: PathBuf,
}

/// What a test changes about its cluster.
#[derive(Default)]
pub struct Settings {
    pub subgraph_env: Vec<(&'static str, String)>,
    pub router_env: Vec<(&'static str, String)>,
    pub router_log_level: Option<&'static str>,
}

impl Observed {
    pub async fn start(name: &str, settings: Settings) -> anyhow::Result<Self> {
        subgraph_kit::telemetry::init_for_tests();
        let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("observability").join(name);
        let _ = std::fs::remove_dir_all(&log_dir);
        let owned = |pairs: Vec<(&'static str, String)>| {
            pairs.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
        };
        let mut subgraph_env = vec![("RUST_LOG", "warn".to_owned()), ("DB_POOL_SIZE", "4".to_owned())];
        subgraph_env.extend(settings.subgraph_env);
        let cluster = ProcessCluster::start(ClusterSpec {
            postgres_url: subgraph_kit::config::DEFAULT_POSTGRES_URL.into(),
            amqp_url: subgraph_kit::config::DEFAULT_AMQP_URL.into(),
            broker_node: None,
            amqps: None,
            replicas: 1,
            env: owned(subgraph_env),
            router_env: owned(settings.router_env),
            router_log_level: settings.router_log_level.unwrap_or("warn").into(),
            log_dir: log_dir.clone(),
        })
        .await?;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?;
        Ok(Self { cluster, client, log_dir })
    }

    /// Stops every process, then drops the databases and the broker namespace.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.cluster.delete_namespace().await?;
        self.cluster.drop_databases_after_stop().await
    }

    pub fn token(&self, identity: &Identity) -> String {
        self.cluster.identities.users.issue(identity, Duration::from_secs(600))
    }

    pub fn operator(&self) -> String {
        self.token(&Identity::Operator { subject: "observability-test".into() })
    }

    /// Runs an operation through the router, with a `traceparent` when given; fails on
    /// a transport error or any GraphQL error.
    pub async fn graphql(
        &self,
        token: &str,
        traceparent: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        let mut request = self.client.post(self.cluster.router_url()).bearer_auth(token);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let body: Value = request.json(&json!({ "query": query, "variables": variables })).send().await?.json().await?;
        if body.get("errors").is_some() {
            bail!("{query} answered with errors: {body}");
        }
        Ok(body["data"].clone())
    }

    /// Creates a product and waits until rental's copy of the catalog has it.
    pub async fn product(&self, stock: i32) -> anyhow::Result<Uuid> {
        let create = "mutation NewProduct($input: CreateProductInput!) { createProduct(input: $input) { id } }";
        let input = json!({ "input": { "name": "Observed dispenser", "monthlyFee": 19_900, "initialStock": stock } });
        let data = self.graphql(&self.operator(), None, create, input).await?;
        let id: Uuid = data["createProduct"]["id"].as_str().context("a product id")?.parse()?;
        let rental = self.cluster.database(rental::SERVICE)?;
        harness::workload::rental_knows_product(&rental, id).await?;
        Ok(id)
    }

    /// Rents `product` for `customer`; the rental's id.
    pub async fn rent(
        &self,
        customer: &str,
        product: Uuid,
        address: &str,
        traceparent: Option<&str>,
    ) -> anyhow::Result<String> {
        let input = json!({ "input": { "productId": product, "months": 12, "deliveryAddress": address,
                                       "cardNumber": APPROVED_CARD, "idempotencyKey": Uuid::now_v7() } });
        let data = self.graphql(customer, traceparent, RENT, input).await?;
        Ok(data["rent"]["id"].as_str().context("a rental id")?.to_owned())
    }

    /// The id of a rental's delivery, once delivery has created it.
    pub async fn delivery_of(&self, rental_id: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let data = self.graphql(&self.operator(), None, DELIVERY_OF, json!({ "id": rental_id })).await?;
            if let Some(id) = data["rental"]["delivery"]["id"].as_str() {
                return Ok(id.to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("no delivery was requested for rental {rental_id}")
    }
}

/// A W3C trace context naming a new trace, as a client that traces its own calls sends.
pub fn new_traceparent() -> (String, String) {
    let trace_id = Uuid::new_v4().simple().to_string();
    let span_id = Uuid::new_v4().simple().to_string()[..16].to_owned();
    (format!("00-{trace_id}-{span_id}-01"), trace_id)
}

/// The `host:port` of a GraphQL URL.
pub fn authority(url: &str) -> String {
    url.trim_start_matches("http://").split('/').next().unwrap_or_default().to_owned()
}
