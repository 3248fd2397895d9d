//! The public contract as independent clients meet it: one authentication vocabulary
//! on every transport, the router refusing ill-typed variables itself, cursors typed
//! per list, a public schema without internals, and examples a normalising cache can
//! store.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use subgraph_kit::{Identity, TokenIssuer};
use uuid::Uuid;

use crate::support::fixtures::{RENT, create_product, rent_input, rentable_product};
use crate::support::{TestStack, count, error_codes, first_message, post_graphql};
use harness::live_clients::WsClient;

const TRACK: &str = "subscription($id: ID!) { deliveryStatusChanged(rentalId: $id) { id status } }";

/// A correctly signed token whose role is not one of ours.
fn token_with_role(issuer: &TokenIssuer, role: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": Uuid::now_v7(), "role": role, "iss": issuer.issuer(), "aud": issuer.audience(), "iat": now, "exp": now + 600,
    });
    issuer.sign(&claims)
}

#[tokio::test]
async fn every_transport_refuses_a_bad_token_with_the_same_code_and_sentence() {
    let stack = TestStack::start().await;
    let url = stack.router.as_ref().expect("router").websocket_url();
    // Another key claiming to be the stack's (same key id): the signature gives it away.
    let forged = TokenIssuer::generate(stack::identities::TEST_ISSUER, identity::DEFAULT_AUDIENCE)
        .with_key_id(stack.identities.users.key_id())
        .issue(&Identity::Operator { subject: "x".into() }, Duration::from_secs(60));

    // graphql-transport-ws: no token, then a forged one.
    for (token, sentence) in [(None, "authentication required"), (Some(forged.as_str()), "signature does not match")] {
        let mut socket = WsClient::connect(&url, token).await;
        socket.subscribe("s", TRACK, json!({ "id": Uuid::now_v7() })).await;
        let refused = socket.next_message().await.expect("an answer");
        let error = &refused["payload"]["errors"][0];
        assert_eq!(error["extensions"]["code"], "UNAUTHENTICATED", "{refused}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(sentence), "{refused}");
        assert!(!message.contains("jwk") && !message.contains("Error("), "no internals: {refused}");
        socket.close().await;
    }

    // SSE without a token: 401, like POST.
    let response = stack
        .client
        .post(stack.router_url())
        .header("Accept", "text/event-stream")
        .json(&json!({ "query": TRACK, "variables": { "id": Uuid::now_v7() } }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.expect("a JSON error");
    assert_eq!(error_codes(&body), ["UNAUTHENTICATED"], "{body}");

    // A correctly signed token with a role we do not have: 401 and a sentence.
    let odd = token_with_role(&stack.identities.users, "admin");
    let (status, body) = stack.graphql(Some(&odd), "{ products { edges { node { id } } } }", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_codes(&body), ["UNAUTHENTICATED"], "{body}");
    let message = first_message(&body);
    assert!(message.contains("role this service knows"), "{body}");
    assert!(!message.contains("variant"), "no serde internals: {body}");
    stack.stop().await;
}

#[tokio::test]
async fn ill_typed_variables_inside_an_input_object_are_refused_by_the_router() {
    let stack = TestStack::start().await;
    let product_id = rentable_product(&stack, "Typed model", 19_900, 3).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let mut twelve = rent_input(product_id, "4242424242424242", "typed-1");
    twelve["input"]["months"] = json!("twelve");
    let mut huge = rent_input(product_id, "4242424242424242", "typed-2");
    huge["input"]["months"] = json!(2_147_483_648_i64);
    let mut missing = rent_input(product_id, "4242424242424242", "typed-3");
    missing["input"].as_object_mut().expect("input").remove("idempotencyKey");
    let whole = json!({ "input": "the whole input as a string" });
    for variables in [twelve, huge, missing, whole] {
        let (_, body) = stack.graphql(Some(&customer), RENT, variables.clone()).await;
        assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{variables}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["service"], Value::Null, "the router answered: {body}");
        assert!(first_message(&body).contains("$input"), "{body}");
    }
    let requests = count(&stack.subgraphs.rental.database, "SELECT count(*) AS n FROM rent_requests").await;
    assert_eq!(requests, 0, "rental was never called");
    stack.stop().await;
}

#[tokio::test]
async fn a_cursor_works_only_in_the_list_it_came_from() {
    let stack = TestStack::start().await;
    create_product(&stack, "Cursor model A", 19_900, 1).await;
    create_product(&stack, "Cursor model B", 19_900, 1).await;
    let operator = stack.operator_token();
    let (_, page) =
        stack.graphql(Some(&operator), "{ products(first: 1) { pageInfo { endCursor } } }", json!({})).await;
    let cursor = page["data"]["products"]["pageInfo"]["endCursor"].clone();
    assert!(cursor.is_string(), "{page}");
    let customer = stack.customer_token(Uuid::now_v7());
    let query = "query($after: String) { myRentals(first: 5, after: $after) { edges { node { id } } } }";
    let (_, body) = stack.graphql(Some(&customer), query, json!({ "after": cursor })).await;
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
    assert!(first_message(&body).contains("not a cursor of myRentals"), "{body}");
    stack.stop().await;
}

#[tokio::test]
async fn the_public_schema_shows_only_public_things_and_subgraph_sdl_is_for_services() {
    let stack = TestStack::start().await;
    let operator = stack.operator_token();
    let query = r#"{ charge: __type(name: "ChargeRentalInput") { name }
                    mutation: __type(name: "Mutation") { description fields { name description } } }"#;
    let (_, body) = stack.graphql(Some(&operator), query, json!({})).await;
    assert_eq!(body["data"]["charge"], Value::Null, "the service-only input is not public: {body}");
    let text = body["data"]["mutation"].to_string();
    for internal in ["rental service directly", "inaccessible", "chargeRental", "voidRentalCharge"] {
        assert!(!text.contains(internal), "the public Mutation type mentions {internal:?}: {text}");
    }
    // A subgraph's own SDL answers only a service it trusts (payment trusts rental's
    // key), never a customer; a user token that claims to be a service is no service.
    let customer = stack.customer_token(Uuid::now_v7());
    let sdl = json!({ "query": "{ _service { sdl } }" });
    let (_, refused) = post_graphql(&stack.client, &stack.subgraphs.inventory.url(), Some(&customer), &sdl).await;
    assert_eq!(error_codes(&refused), ["FORBIDDEN"], "{refused}");
    let posing = stack.token(&Identity::Service { name: "rental".into() });
    let (status, refused) = post_graphql(&stack.client, &stack.subgraphs.payment.url(), Some(&posing), &sdl).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    assert_eq!(error_codes(&refused), ["UNAUTHENTICATED"], "{refused}");
    let rental = stack.identities.rental.issue(&Identity::Service { name: "rental".into() }, Duration::from_secs(60));
    let (_, answered) = post_graphql(&stack.client, &stack.subgraphs.payment.url(), Some(&rental), &sdl).await;
    assert!(answered["data"]["_service"]["sdl"].as_str().is_some_and(|sdl| sdl.contains("Invoice")), "{answered}");
    // Inventory trusts no calling service: rental's key is a stranger there.
    let (status, _) = post_graphql(&stack.client, &stack.subgraphs.inventory.url(), Some(&rental), &sdl).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    stack.stop().await;
}

#[tokio::test]
async fn production_configuration_turns_introspection_and_graphiql_off() {
    let stack = TestStack::start().await;
    let page = |url: String| {
        let client = &stack.client;
        async move {
            let response = client.get(url).header("accept", "text/html").send().await.expect("GET /graphql");
            let html = response
                .headers()
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .is_some_and(|kind| kind.starts_with("text/html"));
            let body = response.text().await.expect("body");
            html && body.contains("<html")
        }
    };
    // The development configuration serves the page to a browser.
    assert!(page(stack.router_url()).await, "the development router serves GraphiQL");
    let router = stack
        .router_with(vec![("ROUTER_INTROSPECTION".into(), "false".into()), ("ROUTER_GRAPHIQL".into(), "false".into())])
        .await;
    let operator = stack.operator_token();
    let body = json!({ "query": "{ __schema { types { name } } }" });
    let (_, refused) = post_graphql(&stack.client, &router.graphql_url(), Some(&operator), &body).await;
    assert_eq!(error_codes(&refused), ["INTROSPECTION_DISABLED"], "{refused}");
    assert!(!page(router.graphql_url()).await, "the production router serves no GraphiQL page");
    // Ordinary queries still work.
    let (_, answered) = post_graphql(
        &stack.client,
        &router.graphql_url(),
        Some(&operator),
        &json!({ "query": "{ products { edges { node { id } } } }" }),
    )
    .await;
    assert_eq!(answered.get("errors"), None, "{answered}");
    router.stop().await.expect("router stops");
    stack.stop().await;
}

/// Every selection on a type that has an `id` selects it, so a normalising client
/// cache (Apollo Client) can store the object: checked for every GraphQL example in the
/// README against the supergraph.
#[test]
fn every_example_in_the_readme_selects_the_id_of_each_entity() {
    use async_graphql::parser::types::{DocumentOperations, Selection, SelectionSet, TypeKind};
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README");
    let supergraph = std::fs::read_to_string(format!("{root}/schema/supergraph.graphql")).expect("supergraph");
    let schema = async_graphql::parser::parse_schema(&supergraph).expect("supergraph parses");
    // type name -> field name -> the field's named type.
    let mut fields: HashMap<String, HashMap<String, String>> = HashMap::new();
    for definition in &schema.definitions {
        if let async_graphql::parser::types::TypeSystemDefinition::Type(ty) = definition
            && let TypeKind::Object(object) = &ty.node.kind
        {
            let entry = fields.entry(ty.node.name.node.to_string()).or_default();
            for field in &object.fields {
                let named = field.node.ty.node.to_string().replace(['[', ']', '!'], "");
                entry.insert(field.node.name.node.to_string(), named);
            }
        }
    }
    fn check(
        set: &SelectionSet,
        ty: &str,
        fields: &HashMap<String, HashMap<String, String>>,
        path: &str,
        missing: &mut Vec<String>,
    ) {
        let Some(own) = fields.get(ty) else { return };
        let names: Vec<String> = set
            .items
            .iter()
            .filter_map(|item| match &item.node {
                Selection::Field(field) => Some(field.node.name.node.to_string()),
                _ => None,
            })
            .collect();
        if own.contains_key("id")
            && !names.iter().any(|name| name == "id")
            && !ty.ends_with("Connection")
            && !ty.ends_with("Edge")
        {
            missing.push(format!("{path} ({ty})"));
        }
        for item in &set.items {
            if let Selection::Field(field) = &item.node
                && let Some(child) = own.get(field.node.name.node.as_str())
                && !field.node.selection_set.node.items.is_empty()
            {
                check(
                    &field.node.selection_set.node,
                    child,
                    fields,
                    &format!("{path}.{}", field.node.name.node),
                    missing,
                );
            }
        }
    }
    let mut checked = 0;
    let mut missing = Vec::new();
    for block in readme.split("```graphql").skip(1) {
        let text = block.split("```").next().unwrap_or_default();
        let document = async_graphql::parser::parse_query(text).unwrap_or_else(|error| panic!("{error}: {text}"));
        let operations: Vec<_> = match &document.operations {
            DocumentOperations::Single(operation) => vec![operation.node.clone()],
            DocumentOperations::Multiple(operations) => {
                operations.values().map(|operation| operation.node.clone()).collect()
            }
        };
        for operation in operations {
            let root = match operation.ty {
                async_graphql::parser::types::OperationType::Query => "Query",
                async_graphql::parser::types::OperationType::Mutation => "Mutation",
                async_graphql::parser::types::OperationType::Subscription => "Subscription",
            };
            check(&operation.selection_set.node, root, &fields, root, &mut missing);
            checked += 1;
        }
    }
    assert!(checked >= 10, "the README's examples were found ({checked})");
    assert!(missing.is_empty(), "selections without `id`: {missing:#?}");
}
