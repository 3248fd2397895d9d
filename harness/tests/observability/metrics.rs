//! A real Prometheus scrapes the router and the four services once a second; after two
//! rents, a shipment and a cancellation, the counters it reads back are exact.

use std::path::Path;
use std::time::{Duration, Instant};

use harness::live_clients::WsClient;
use serde_json::{Value, json};
use subgraph_kit::Identity;
use uuid::Uuid;

use crate::support::{CANCEL, LIVE, Observed, START, Settings, authority};

/// Prometheus (Debian's package), on a free port, with a scrape job per process.
struct Prometheus {
    child: tokio::process::Child,
    url: String,
}

impl Prometheus {
    async fn start(dir: &Path, targets: &[(&str, String)]) -> anyhow::Result<Self> {
        let port = stack::router_process::free_port(std::net::Ipv4Addr::LOCALHOST)?;
        let jobs: Vec<String> = targets
            .iter()
            .map(|(job, target)| format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"))
            .collect();
        let config =
            format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}", jobs.concat());
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("prometheus.yml"), config)?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                anyhow::anyhow!("prometheus did not start ({error}): .ci/run installs Debian's package")
            })?;
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if client.get(format!("{url}/-/ready")).send().await.is_ok_and(|response| response.status().is_success()) {
                return Ok(Self { child, url });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("prometheus was not ready within 30 s (see {})", dir.join("prometheus.log").display())
    }

    /// The value of an instant query that sums to one number (0 when nothing matches).
    async fn value(&self, query: &str) -> anyhow::Result<f64> {
        let url = format!("{}/api/v1/query", self.url);
        let body: Value = reqwest::Client::new().get(url).query(&[("query", query)]).send().await?.json().await?;
        anyhow::ensure!(body["status"] == "success", "{query}: {body}");
        match body["data"]["result"].as_array().map(Vec::as_slice) {
            Some([]) | None => Ok(0.0),
            Some([one]) => Ok(one["value"][1].as_str().unwrap_or("NaN").parse()?),
            Some(many) => anyhow::bail!("{query} matched {} series; sum them", many.len()),
        }
    }

    /// Waits until every query reads its expected value; the ones that never did.
    async fn expect_all(&self, expected: &[(String, f64)]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut wrong = Vec::new();
            for (query, value) in expected {
                match self.value(query).await {
                    Ok(seen) if seen == *value => {}
                    Ok(seen) => wrong.push(format!("{query} = {seen}, expected {value}")),
                    Err(error) => wrong.push(format!("{query}: {error}")),
                }
            }
            if wrong.is_empty() || Instant::now() > deadline {
                return wrong;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Label values that look like an id (a UUID): labels must come from small fixed sets.
fn ids_in_labels(exposition: &str) -> Vec<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .flat_map(|line| line.split('"').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>())
        .filter(|value| value.split('-').count() == 5 && Uuid::parse_str(value).is_ok())
        .collect()
}

#[tokio::test]
async fn prometheus_reads_the_counters_of_a_rent_a_shipment_and_a_cancellation() {
    let observed = Observed::start("metrics", Settings::default()).await.expect("the cluster starts");
    let router = observed.cluster.router.as_ref().expect("router");
    let mut targets = vec![("router", router.metrics_address.to_string())];
    for service in harness::cluster::SERVICES {
        targets.push((service, observed.cluster.metrics_address_of(service, 0).expect("running").to_string()));
    }
    let prometheus =
        Prometheus::start(&observed.log_dir.join("prometheus"), &targets).await.expect("prometheus starts");

    let product = observed.product(5).await.expect("a product");
    let customer_id = Uuid::now_v7();
    let customer = observed.token(&Identity::Customer { customer_id });
    let shipped = observed.rent(&customer, product, "1 Metric-ro, Seoul", None).await.expect("first rent");
    let cancelled = observed.rent(&customer, product, "2 Metric-ro, Seoul", None).await.expect("second rent");
    let delivery = observed.delivery_of(&shipped).await.expect("a delivery");
    observed.delivery_of(&cancelled).await.expect("a delivery");
    let mut subscriber =
        WsClient::connect(&observed.cluster.router.as_ref().expect("router").websocket_url(), Some(&customer)).await;
    subscriber.subscribe("live", LIVE, json!({ "rentalId": shipped })).await;
    subscriber.next_message().await.expect("the current status");
    observed.graphql(&observed.operator(), None, START, json!({ "id": delivery })).await.expect("shipped");
    observed.graphql(&customer, None, CANCEL, json!({ "id": cancelled })).await.expect("cancelled");

    let requests = |service: &str, operation: &str| {
        format!(r#"sum(water_graphql_requests_total{{service="{service}",operation="{operation}",outcome="ok"}})"#)
    };
    let published = |service: &str, event: &str| {
        format!(r#"sum(water_events_published_total{{service="{service}",event="{event}"}})"#)
    };
    let applied = |service: &str, event: &str| {
        format!(r#"sum(water_events_consumed_total{{service="{service}",event="{event}",outcome="applied"}})"#)
    };
    let expected = vec![
        // The router's own metrics, by the operation names the client gave.
        (r#"sum(http_server_request_duration_seconds_count{graphql_operation_name="RentDispenser"})"#.to_owned(), 2.0),
        (r#"sum(http_server_request_duration_seconds_count{graphql_operation_name="CancelRental"})"#.to_owned(), 1.0),
        (requests("inventory", "createProduct"), 1.0),
        (requests("rental", "rent"), 2.0),
        (requests("payment", "chargeRental"), 2.0),
        (requests("delivery", "startDelivery"), 1.0),
        (requests("rental", "cancelRental"), 1.0),
        (format!(r#"sum(water_graphql_request_duration_seconds_count{{service="rental",operation="rent"}})"#), 2.0),
        (published("inventory", "product.created"), 1.0),
        (published("rental", "rental.accepted"), 2.0),
        (published("rental", "rental.cancelled"), 1.0),
        (published("payment", "payment.charged"), 2.0),
        (published("payment", "payment.refunded"), 1.0),
        (published("delivery", "delivery.requested"), 2.0),
        (published("delivery", "delivery.started"), 1.0),
        (published("delivery", "delivery.cancelled"), 1.0),
        (published("inventory", "stock.allocated"), 1.0),
        (applied("delivery", "rental.accepted"), 2.0),
        (applied("delivery", "rental.cancelled"), 1.0),
        (applied("delivery", "stock.allocated"), 1.0),
        (applied("inventory", "delivery.started"), 1.0),
        (applied("inventory", "delivery.cancelled"), 1.0),
        (applied("payment", "delivery.cancelled"), 1.0),
        (applied("rental", "payment.refunded"), 1.0),
        (format!(r#"sum(water_consumer_lag_seconds_count{{service="delivery",event="rental.accepted"}})"#), 2.0),
        ("sum(water_events_consumed_total{outcome=\"duplicate\"})".to_owned(), 0.0),
        ("sum(water_events_dead_lettered_total)".to_owned(), 0.0),
        ("sum(water_dead_letters)".to_owned(), 0.0),
        ("sum(water_outbox_backlog)".to_owned(), 0.0),
        (r#"sum(water_live_subscriptions{service="delivery"})"#.to_owned(), 1.0),
        (r#"sum(water_payment_breaker_open{service="rental"})"#.to_owned(), 0.0),
        // Every process is scraped.
        ("sum(up)".to_owned(), 5.0),
    ];
    let wrong = prometheus.expect_all(&expected).await;
    assert!(wrong.is_empty(), "Prometheus read other values:\n  {}", wrong.join("\n  "));

    let client = reqwest::Client::new();
    for (job, target) in &targets {
        let exposition =
            client.get(format!("http://{target}/metrics")).send().await.expect("metrics").text().await.expect("text");
        let ids = ids_in_labels(&exposition);
        assert!(ids.is_empty(), "{job} has ids as label values: {ids:?}");
    }
    // Nothing internal on a service's port: each process's metrics are on a port of its own.
    let mut public = vec![("router", router.address.to_string())];
    for service in harness::cluster::SERVICES {
        public.push((service, authority(&observed.cluster.url_of(service, 0).expect("running"))));
    }
    for (job, address) in public {
        let answer = client.get(format!("http://{address}/metrics")).send().await.expect("the service port");
        let status = answer.status();
        let body = answer.text().await.expect("text");
        assert!(
            !body.contains("# TYPE") && !body.contains("http_server_request_duration") && !body.contains("water_"),
            "{job}'s service port answers /metrics ({status}):\n{body}"
        );
    }
    subscriber.close().await;
    drop(prometheus.child);
    observed.finish().await.expect("the cluster stops");
}
