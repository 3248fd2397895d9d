//! Trusted documents at the router (`router/src/trusted_documents.rs`): in `refuse`
//! mode only the manifest's documents run, sent by id or as their exact text; anything
//! else is refused before any subgraph sees it, over HTTP and WebSocket. In `log` mode
//! (the default, which every other test runs with) every document runs.

use harness::live_clients::WsClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use stack::RouterProcess;
use stack::trusted_documents::{README_FILE, document_id, graphql_blocks};
use uuid::Uuid;

use crate::support::fixtures::{rent, rentable_product};
use crate::support::{TestStack, error_codes};

async fn refusing_router(stack: &TestStack) -> RouterProcess {
    let mut env = stack::relaxed_rate_limits();
    env.push(("ROUTER_TRUSTED_DOCUMENTS".into(), "refuse".into()));
    stack.router_with(env).await
}

/// The README's document that starts with `head`.
fn tour_document(head: &str) -> String {
    let readme = std::fs::read_to_string(README_FILE).expect("README");
    graphql_blocks(&readme).into_iter().find(|text| text.starts_with(head)).expect("a tour document")
}

async fn post(stack: &TestStack, router: &RouterProcess, token: &str, body: Value) -> (StatusCode, Value) {
    let response = stack.client.post(router.graphql_url()).bearer_auth(token).json(&body).send().await.expect("sent");
    let status = response.status();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn in_refuse_mode_only_the_manifests_documents_run() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Trusted model", 19_900, 2).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let rental = rent(&stack, &customer, product_id, "trusted").await;
    let router = refusing_router(&stack).await;
    let operator = stack.operator_token();
    let catalog = tour_document("query Catalog");
    let names = |body: &Value| -> Vec<String> {
        body["data"]["products"]["edges"]
            .as_array()
            .map(|edges| {
                edges.iter().map(|edge| edge["node"]["name"].as_str().unwrap_or_default().to_owned()).collect()
            })
            .unwrap_or_default()
    };

    // By id, as a trusted-documents client sends it; by Apollo's hash; by its exact text.
    let by_id = json!({ "documentId": document_id(&catalog) });
    let by_hash = json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": document_id(&catalog) } } });
    let by_text = json!({ "query": catalog });
    for body in [by_id, by_hash, by_text] {
        let (status, answer) = post(&stack, &router, &operator, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}: {answer}");
        assert_eq!(answer.get("errors"), None, "{body}: {answer}");
        assert_eq!(names(&answer), ["Trusted model"], "{body}: {answer}");
    }

    // Anything else: refused before any subgraph is called, whatever it would do.
    let adhoc = "{ products { edges { node { id name } } } }";
    let spaced = format!("{catalog} ");
    let add = r#"mutation { createProduct(input: { name: "Not trusted", monthlyFee: 100, initialStock: 1 }) { id } }"#;
    for text in [adhoc, spaced.as_str(), add] {
        let (status, answer) = post(&stack, &router, &operator, json!({ "query": text })).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}: {answer}");
        assert_eq!(error_codes(&answer), ["DOCUMENT_NOT_TRUSTED"], "{text}: {answer}");
        assert_eq!(answer.get("data"), None, "{answer}");
        let message = answer["errors"][0]["message"].as_str().expect("message");
        assert!(message.contains(&document_id(text)), "the refusal names the document's id: {message}");
    }
    let (_, listed) = post(&stack, &router, &operator, json!({ "documentId": document_id(&catalog) })).await;
    assert_eq!(names(&listed), ["Trusted model"], "the refused mutation created nothing: {listed}");

    // A trusted document may be named by its own operation's name, and by no other: the
    // router labels its metrics with that name.
    let named = |name: &str| json!({ "documentId": document_id(&catalog), "operationName": name });
    let (_, answer) = post(&stack, &router, &operator, named("Catalog")).await;
    assert_eq!(names(&answer), ["Trusted model"], "{answer}");
    let (status, answer) = post(&stack, &router, &operator, named("Anything-else-9f2c")).await;
    assert_eq!(
        (status, error_codes(&answer)),
        (StatusCode::FORBIDDEN, vec!["DOCUMENT_NOT_TRUSTED".to_owned()]),
        "{answer}"
    );

    // An id the manifest does not have.
    let (_, unknown) = post(&stack, &router, &operator, json!({ "documentId": document_id(adhoc) })).await;
    assert_eq!(error_codes(&unknown), ["PERSISTED_DOCUMENT_NOT_FOUND"], "{unknown}");

    // Over WebSocket: a subscription outside the manifest is refused, the tour's runs.
    let mut socket = WsClient::connect(&router.websocket_url(), Some(&customer)).await;
    socket
        .subscribe(
            "adhoc",
            "subscription($id: ID!) { deliveryStatusChanged(rentalId: $id) { status } }",
            json!({ "id": rental }),
        )
        .await;
    let refused = socket.next_message().await.expect("an answer");
    assert_eq!(error_codes(&refused["payload"]), ["DOCUMENT_NOT_TRUSTED"], "{refused}");
    let complete = socket.next_message().await.expect("complete");
    assert_eq!(complete, json!({ "id": "adhoc", "type": "complete" }));
    socket.subscribe("tour", &tour_document("subscription FollowLive"), json!({ "id": rental })).await;
    let answered = socket.next_message().await.expect("the current status");
    assert_eq!(answered["id"], "tour", "{answered}");
    assert_eq!(answered["payload"]["data"]["deliveryStatusChanged"]["status"], "REQUESTED", "{answered}");
    socket.close().await;

    router.stop().await.expect("router stops");
    stack.stop().await;
}
