//! Every process at debug level, a rent sent both ways a client may send it (as
//! variables, and as literals inside the document), a live subscription: then no log
//! of any process holds the card number, the delivery address or the token.

use harness::live_clients::WsClient;
use serde_json::json;
use subgraph_kit::Identity;
use uuid::Uuid;

use crate::support::{APPROVED_CARD, LIVE, Observed, Settings};

#[tokio::test]
async fn no_log_at_debug_level_holds_a_card_number_an_address_or_a_token() {
    let observed = Observed::start(
        "logs",
        Settings {
            subgraph_env: vec![("RUST_LOG", "debug".into())],
            router_log_level: Some("debug"),
            ..Settings::default()
        },
    )
    .await
    .expect("the cluster starts");
    let product = observed.product(3).await.expect("a product");
    let customer = observed.token(&Identity::Customer { customer_id: Uuid::now_v7() });
    let signature = customer.rsplit('.').next().expect("a signed token").to_owned();

    let by_variables = format!("{} Variable-ro, Seoul", Uuid::new_v4().simple());
    let rental_id = observed.rent(&customer, product, &by_variables, None).await.expect("rented with variables");

    let inline = format!("{} Literal-ro, Seoul", Uuid::new_v4().simple());
    let document = format!(
        r#"mutation InlineRent {{ rent(input: {{ productId: "{product}", months: 12, deliveryAddress: "{inline}",
            cardNumber: "{APPROVED_CARD}", idempotencyKey: "{}" }}) {{ id status }} }}"#,
        Uuid::now_v7()
    );
    observed.graphql(&customer, None, &document, json!({})).await.expect("rented with literals");

    let mut subscriber =
        WsClient::connect(&observed.cluster.router.as_ref().expect("router").websocket_url(), Some(&customer)).await;
    subscriber.subscribe("live", LIVE, json!({ "rentalId": rental_id })).await;
    subscriber.next_message().await.expect("the current status");
    subscriber.close().await;
    let log_dir = observed.log_dir.clone();
    observed.finish().await.expect("the cluster stops");

    let secrets = [
        ("card number", APPROVED_CARD),
        ("address", by_variables.as_str()),
        ("address", inline.as_str()),
        ("token", signature.as_str()),
    ];
    let mut logs = 0;
    for entry in std::fs::read_dir(&log_dir).expect("the log directory") {
        let path = entry.expect("an entry").path();
        if path.extension().is_none_or(|extension| extension != "log") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a readable log");
        // Debug lines must be there, or this test would prove nothing.
        assert!(text.contains("DEBUG"), "{} has no debug line: was debug logging on?", path.display());
        for (what, secret) in secrets {
            assert!(!text.contains(secret), "{} holds the {what} {secret:?}", path.display());
        }
        logs += 1;
    }
    assert_eq!(logs, 5, "one log per process (router and four services) in {}", log_dir.display());
}
