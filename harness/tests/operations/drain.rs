//! One subgraph replica (delivery: it has live subscriptions) under SIGTERM, watched
//! from outside as a load balancer and clients see it.

use std::time::Duration;

use harness::cluster::ProcessCluster;
use harness::live_clients::WsClient;
use serde_json::{Value, json};
use subgraph_kit::Identity;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{ONE_AT_A_TIME, private_postgres, settle, spec};

const TRACK: &str = "subscription($id: ID!) { deliveryStatusChanged(rentalId: $id) { status } }";
const QUEUE: &str = "{ deliveries(first: 5) { edges { node { id status } } } }";

async fn graphql(client: &reqwest::Client, url: &str, token: &str, query: &str, variables: Value) -> Value {
    client
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON")
}

async fn status_of(client: &reqwest::Client, url: &str) -> Option<u16> {
    client.get(url).send().await.ok().map(|response| response.status().as_u16())
}

/// The HTTP request for `body`, cut in two: the headers and the first half of the body,
/// then the rest. Sent in two goes, the request is in flight between them.
fn split_request(token: &str, body: &str) -> (String, String) {
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (first, rest) = body.split_at(body.len() / 2);
    (format!("{head}{first}"), rest.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_under_sigterm_drains_and_exits_cleanly() {
    let _one = ONE_AT_A_TIME.lock().await;
    subgraph_kit::telemetry::init_for_tests();
    let postgres = private_postgres().await;
    let mut cluster = ProcessCluster::start(spec(&postgres, "drain", 1)).await.expect("cluster started");
    let issuer = cluster.identities.users.clone();
    let operator = issuer.issue(&Identity::Operator { subject: "drain-test".into() }, Duration::from_secs(600));
    let customer = issuer.issue(&Identity::Customer { customer_id: uuid::Uuid::now_v7() }, Duration::from_secs(600));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client");
    let router = cluster.router_url();

    let rental_db = cluster.database(rental::SERVICE).expect("rental database");
    let product = harness::workload::product(&router, &cluster.identities.users, &rental_db, "Drain model", 5)
        .await
        .expect("product");
    let rent = "mutation($input: RentInput!) { rent(input: $input) { id } }";
    let input = json!({ "input": { "productId": product, "months": 12, "deliveryAddress": "1 Drain-ro, Seoul",
        "cardNumber": "4242424242424242", "idempotencyKey": uuid::Uuid::now_v7().to_string() } });
    let rented = graphql(&http, &router, &customer, rent, input).await;
    let rental_id = rented["data"]["rent"]["id"].as_str().unwrap_or_else(|| panic!("rented: {rented}")).to_owned();

    // Two live subscribers: one on the replica itself, one through the router.
    let address = cluster.replica(delivery::SERVICE, 0).spec.address;
    let mut direct = WsClient::connect(&format!("ws://{address}/ws"), Some(&operator)).await;
    direct.subscribe("direct", TRACK, json!({ "id": rental_id })).await;
    let mut routed =
        WsClient::connect(&cluster.router.as_ref().expect("router").websocket_url(), Some(&customer)).await;
    routed.subscribe("routed", TRACK, json!({ "id": rental_id })).await;
    for (client, name) in [(&mut direct, "direct"), (&mut routed, "routed")] {
        let first = client.next_message().await.expect("the current status");
        assert_eq!(first["payload"]["data"]["deliveryStatusChanged"]["status"], "REQUESTED", "{name}: {first}");
    }

    // A request in flight: its headers and half its body are in, the rest comes later.
    let body = json!({ "query": QUEUE }).to_string();
    let (start, rest) = split_request(&operator, &body);
    let mut in_flight = tokio::net::TcpStream::connect(address).await.expect("connected");
    in_flight.write_all(start.as_bytes()).await.expect("first half sent");

    let ready = format!("http://{address}/ready");
    let health = format!("http://{address}/health");
    let direct_graphql = format!("http://{address}/graphql");
    assert_eq!(status_of(&http, &ready).await, Some(200), "ready before SIGTERM");
    let pid = cluster.replica(delivery::SERVICE, 0).pid().expect("running") as libc::pid_t;
    // SAFETY: a plain syscall on the pid of a child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM sent");

    // Not ready as soon as the signal is handled: 503 while the port still answers (a
    // refused connection first would mean it stopped before reporting not ready). The
    // limit only guards against a process that ignores the signal.
    let signalled = std::time::Instant::now();
    loop {
        match status_of(&http, &ready).await {
            Some(503) => break,
            Some(200) if signalled.elapsed() < Duration::from_secs(30) => {}
            other => panic!("/ready after SIGTERM answered {other:?} before reporting not ready"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...while it still serves GraphQL, and is still alive.
    let served = graphql(&http, &direct_graphql, &operator, QUEUE, json!({})).await;
    assert!(
        served["data"]["deliveries"]["edges"].is_array() && served.get("errors").is_none(),
        "served while draining: {served}"
    );
    assert_eq!(status_of(&http, &health).await, Some(200), "/health while draining");
    assert_eq!(status_of(&http, &ready).await, Some(503), "/ready still 503 after serving a request");

    // At the end of the window, live subscriptions complete, both the one on the replica
    // and the one the router holds for its client: each subscribes again elsewhere.
    let completed = direct.next_message().await;
    assert_eq!(completed, Some(json!({ "id": "direct", "type": "complete" })), "direct subscription");
    let completed = routed.next_message().await;
    assert_eq!(completed, Some(json!({ "id": "routed", "type": "complete" })), "subscription through the router");

    // The service has stopped taking connections by now, and the request in flight is
    // still answered in full.
    in_flight.write_all(rest.as_bytes()).await.expect("rest sent");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), in_flight.read_to_string(&mut answer))
        .await
        .expect("answered before the shutdown timeout")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"deliveries\"") && !answer.contains("\"errors\""), "{answer}");

    let status = tokio::time::timeout(Duration::from_secs(30), cluster.replica(delivery::SERVICE, 0).exited())
        .await
        .expect("exited within the shutdown timeout")
        .expect("exit status");
    assert!(status.success(), "exit status after SIGTERM: {status}");

    // Started again, it serves the same rental, and nothing was left behind: the
    // consumer acknowledged only what it had committed.
    cluster.replica(delivery::SERVICE, 0).restart(Duration::from_secs(60)).await.expect("restarted");
    let track = "query($id: ID!) { rental(id: $id) { delivery { status } } }";
    let read = graphql(&http, &router, &customer, track, json!({ "id": rental_id })).await;
    assert_eq!(read["data"]["rental"]["delivery"]["status"], "REQUESTED", "{read}");
    assert!(settle(&cluster, Duration::from_secs(30)).await, "settled after the restart");
    let audited = harness::audit::audit(&cluster, &crate::support::queues(&cluster), &[], &Default::default())
        .await
        .expect("audited");
    assert!(audited.violations.is_empty(), "{:#?}", audited.violations);

    cluster.delete_namespace().await.expect("namespace deleted");
    cluster.drop_databases_after_stop().await.expect("stopped");
}
