//! TLS on the card's path (`PAYMENT_TLS_*_FILE`, `PAYMENT_CA_FILE`): payment serves HTTPS
//! with a certificate of the test's own CA; rental, which sends it card numbers, and the
//! router trust that CA and nothing else.

use uuid::Uuid;

use crate::support::fixtures::{RENT, rent_input, rentable_product};
use crate::support::{StackOptions, TestStack};

fn client_trusting(ca: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("the CA's certificate");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM"))
        .build()
        .expect("client")
}

#[tokio::test]
async fn card_numbers_reach_payment_over_tls_that_rental_and_the_router_verify() {
    let stack = TestStack::start_with(StackOptions { payment_tls: true, ..StackOptions::default() }).await;
    let certificates = stack.certificates.as_ref().expect("payment serves TLS");
    let payment = &stack.subgraphs.payment;
    assert!(payment.url().starts_with("https://"), "{}", payment.url());

    // A rent through the router: rental charges the card at payment over TLS, and the
    // router reads the payment back from it over TLS too.
    let product = rentable_product(&stack, "Sealed model", 19_900, 2).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let (_, rented) = stack.graphql(Some(&customer), RENT, rent_input(product, "4242424242424242", "sealed")).await;
    assert_eq!(rented.get("errors"), None, "{rented}");
    assert_eq!(rented["data"]["rent"]["status"], "ACCEPTED", "{rented}");
    assert_eq!(rented["data"]["rent"]["payment"]["status"], "PAID", "{rented}");
    assert_eq!(rented["data"]["rent"]["payment"]["cardLast4"], "4242", "{rented}");

    // Payment's port speaks TLS only, with a certificate of that CA.
    let ready = |client: reqwest::Client, url: String| async move { client.get(url).send().await };
    let https = format!("https://{}/ready", payment.address);
    let answer = ready(client_trusting(&certificates.ca), https.clone()).await.expect("TLS with the test CA");
    assert!(answer.status().is_success(), "{}", answer.status());
    let plain = ready(reqwest::Client::new(), format!("http://{}/ready", payment.address)).await;
    assert!(plain.is_err(), "payment answered plain HTTP: {:?}", plain.map(|answer| answer.status()));
    let stranger = harness::tls::TestCertificates::new().expect("another CA");
    let refused = ready(client_trusting(&stranger.ca), https).await;
    let error = format!("{:?}", refused.expect_err("a client trusting another CA refuses payment's certificate"));
    assert!(error.to_lowercase().contains("certificate"), "{error}");

    // Its metrics stay on their own, plain port.
    let metrics = reqwest::get(format!("http://{}/metrics", payment.metrics_address)).await.expect("metrics");
    assert!(metrics.text().await.expect("text").contains("water_"));
    stack.stop().await;
}
