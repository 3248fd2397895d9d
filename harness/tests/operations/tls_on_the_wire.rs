//! TLS to PostgreSQL and RabbitMQ: a database server that takes the services' roles only
//! over TLS, a broker serving AMQPS, and every process of a cluster reaching both with
//! their certificates verified against the CA in `POSTGRES_CA_FILE` and `AMQP_CA_FILE`
//! (docs/security.md, "TLS on the wire").

use std::time::Duration;

use diesel::sql_query;
use diesel_async::RunQueryDsl;
use harness::cluster::{PrivatePostgres, PrivateRabbit, ProcessCluster};
use harness::tls::TestCertificates;
use identity::Identity;
use serde_json::json;
use subgraph_kit::config::{database_url, with_user};
use subgraph_kit::db::{PostgresTls, provision_database};
use subgraph_kit::postgres_tls::connect;

use crate::support::{ONE_AT_A_TIME, spec};

#[derive(diesel::QueryableByName)]
struct Encrypted {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ssl: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reach_postgres_and_rabbitmq_only_over_tls_verified_against_their_ca() {
    let _one = ONE_AT_A_TIME.lock().await;
    subgraph_kit::telemetry::init_for_tests();
    let certificates = TestCertificates::new().expect("a test CA");
    let postgres = {
        let (cert, key) = (certificates.cert.clone(), certificates.key.clone());
        tokio::task::spawn_blocking(move || PrivatePostgres::start_with_tls(&cert, &key))
            .await
            .expect("joined")
            .expect("a private PostgreSQL with TLS")
    };
    provision_database(&postgres.url(), "water_probe", "probe", None).await.expect("a role and its database");
    let url = database_url(&with_user(&postgres.url(), "water_probe"), "probe");

    let plain = connect(&url, None).await.err().expect("a role's plain connection is refused");
    assert!(plain.to_string().contains("no encryption"), "{plain}");
    let stranger = TestCertificates::new().expect("another CA");
    let trusting_another = PostgresTls::trusting(&stranger.ca).expect("another CA's settings");
    let refused =
        connect(&url, Some(&trusting_another)).await.err().expect("a certificate of an unknown CA is refused");
    assert!(refused.to_string().to_lowercase().contains("certificate"), "{refused}");
    let tls = PostgresTls::trusting(&certificates.ca).expect("the CA's settings");
    let mut connection = connect(&url, Some(&tls)).await.expect("a verified TLS connection");
    let encrypted: Encrypted = sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut connection)
        .await
        .expect("its TLS state");
    assert!(encrypted.ssl);
    drop(connection);

    // The broker: AMQPS trusting only our CA.
    let rabbit = {
        let (cert, key) = (certificates.cert.clone(), certificates.key.clone());
        tokio::task::spawn_blocking(move || PrivateRabbit::start_with_tls(&cert, &key))
            .await
            .expect("joined")
            .expect("a private RabbitMQ with TLS")
    };
    let amqps_url = format!("amqps://127.0.0.1:{}/%2f", rabbit.tls_port.expect("a TLS port"));
    let mut events = subgraph_kit::config::events_from_env().expect("broker settings");
    events.amqp_url = subgraph_kit::config::with_user(&amqps_url, "guest");
    events.amqp_password = Some(subgraph_kit::config::Secret::new("guest"));
    events.amqp_ca_file = Some(stranger.ca.clone());
    let refused =
        event_bus::broker::Link::open(&events, "tls-probe").await.err().expect("another CA's broker is refused");
    assert!(refused.to_string().to_lowercase().contains("certificate"), "{refused}");
    events.amqp_ca_file = Some(certificates.ca.clone());
    let link = event_bus::broker::Link::open(&events, "tls-probe").await.expect("AMQPS verified against the CA");
    link.close("probed").await;

    // A whole cluster on both: every service migrates, serves, publishes and consumes
    // over TLS.
    let mut cluster_spec = spec(&postgres, "tls_on_the_wire", 1);
    cluster_spec.env.push(("POSTGRES_CA_FILE".into(), certificates.ca.display().to_string()));
    cluster_spec.amqp_url = rabbit.amqp_url();
    cluster_spec.broker_node = Some(rabbit.node.clone());
    cluster_spec.amqps = Some((amqps_url.clone(), certificates.ca.clone()));
    let cluster = ProcessCluster::start(cluster_spec).await.expect("a cluster whose services use TLS");
    let issuer = cluster.identities.users.clone();
    let customer = issuer.issue(&Identity::Customer { customer_id: uuid::Uuid::now_v7() }, Duration::from_secs(600));
    let router = cluster.router_url();
    let rental_db = cluster.database(rental::SERVICE).expect("rental database");
    let product = harness::workload::product(&router, &cluster.identities.users, &rental_db, "TLS model", 5)
        .await
        .expect("a product");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client");
    let rent = "mutation($input: RentInput!) { rent(input: $input) { id status } }";
    let input = json!({ "input": { "productId": product, "months": 12, "deliveryAddress": "1 Cipher-ro, Seoul",
        "cardNumber": "4242424242424242", "idempotencyKey": uuid::Uuid::now_v7().to_string() } });
    let rented: serde_json::Value = http
        .post(&router)
        .bearer_auth(&customer)
        .json(&json!({ "query": rent, "variables": input }))
        .send()
        .await
        .expect("rent")
        .json()
        .await
        .expect("an answer");
    assert_eq!(rented.get("errors"), None, "{rented}");
    assert_eq!(rented["data"]["rent"]["status"], "ACCEPTED", "{rented}");

    // Every connection a service holds is encrypted.
    let mut admin = subgraph_kit::db::connect_admin(&postgres.url()).await.expect("admin");
    #[derive(diesel::QueryableByName)]
    struct Connections {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        plain: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        encrypted: i64,
    }
    let counted: Connections = sql_query(
        "SELECT count(*) FILTER (WHERE NOT s.ssl) AS plain, count(*) FILTER (WHERE s.ssl) AS encrypted \
         FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.usename LIKE 'water\\_%'",
    )
    .get_result(&mut admin)
    .await
    .expect("the server's connections");
    assert_eq!(counted.plain, 0);
    assert!(counted.encrypted >= 4, "each service holds connections: {}", counted.encrypted);
    let listed = std::process::Command::new("rabbitmqctl")
        .args(["-q", "-n", &rabbit.node, "list_connections", "user", "ssl"])
        .output()
        .expect("rabbitmqctl list_connections");
    let listing = String::from_utf8_lossy(&listed.stdout);
    let services: Vec<&str> = listing.lines().filter(|line| line.starts_with("cluster_")).collect();
    assert!(services.len() >= 4, "every service is connected: {listing}");
    assert!(services.iter().all(|line| line.trim_end().ends_with("true")), "all over TLS: {listing}");
    cluster.drop_databases_after_stop().await.expect("stopped");
}
