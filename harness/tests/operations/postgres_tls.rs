//! TLS to PostgreSQL: a server that takes its services' roles only over TLS, and every
//! process of a cluster reaching it with its certificate verified against the CA in
//! `POSTGRES_CA_FILE` (docs/security.md, "TLS on the wire").

use std::time::Duration;

use diesel::sql_query;
use diesel_async::RunQueryDsl;
use harness::cluster::{PrivatePostgres, ProcessCluster};
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
async fn services_reach_postgres_only_over_tls_verified_against_its_ca() {
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

    // A whole cluster on it: every service migrates, serves and listens over TLS.
    let mut cluster_spec = spec(&postgres, "postgres_tls", 1);
    cluster_spec.env.push(("POSTGRES_CA_FILE".into(), certificates.ca.display().to_string()));
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
    cluster.drop_databases_after_stop().await.expect("stopped");
}
