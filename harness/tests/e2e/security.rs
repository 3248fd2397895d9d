//! The security suite: every operation of the supergraph × every kind of caller, through
//! the router and directly against the subgraph that owns it (docs/security.md, "What
//! the tests prove").
//!
//! The operations are read from `schema/supergraph.graphql`, so a new one is covered the
//! day it is added: each gets a document with a value of the right type for every
//! required argument. Those values name nothing that exists, so what an allowed caller
//! gets is a domain answer (`NOT_FOUND`, `BAD_USER_INPUT`, data); what matters here is
//! who gets `UNAUTHENTICATED` and `FORBIDDEN`.

use std::collections::HashMap;
use std::time::Duration;

use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use identity::{Identity, TokenIssuer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{TestStack, count, error_codes};

const SUPERGRAPH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/supergraph.graphql");

/// One root field of the supergraph, with a document that calls it.
#[derive(Debug)]
struct Operation {
    field: String,
    /// The subgraph that resolves it (`@join__field(graph: …)`), lower case.
    subgraph: String,
    document: String,
}

/// Every root field of Query, Mutation and Subscription, each with a document.
fn operations() -> Vec<Operation> {
    let text = std::fs::read_to_string(SUPERGRAPH).expect("supergraph");
    let schema = async_graphql::parser::parse_schema(&text).expect("supergraph parses");
    let mut kinds: HashMap<String, &TypeKind> = HashMap::new();
    for definition in &schema.definitions {
        if let TypeSystemDefinition::Type(ty) = definition {
            kinds.insert(ty.node.name.node.to_string(), &ty.node.kind);
        }
    }
    let mut operations = Vec::new();
    for (root, keyword) in [("Query", "query"), ("Mutation", "mutation"), ("Subscription", "subscription")] {
        let Some(TypeKind::Object(object)) = kinds.get(root) else { continue };
        for field in &object.fields {
            let field = &field.node;
            let graph = field
                .directives
                .iter()
                .find(|directive| directive.node.name.node.as_str() == "join__field")
                .and_then(|directive| directive.node.get_argument("graph"))
                .map(|graph| graph.node.to_string().to_ascii_lowercase());
            // Federation's own fields (`_service`, `_entities`) have no owner here.
            let Some(subgraph) = graph else { continue };
            let arguments: Vec<String> = field
                .arguments
                .iter()
                .filter(|argument| !argument.node.ty.node.nullable && argument.node.default_value.is_none())
                .map(|argument| format!("{}: {}", argument.node.name.node, literal(&argument.node.ty.node, &kinds)))
                .collect();
            let arguments = if arguments.is_empty() { String::new() } else { format!("({})", arguments.join(", ")) };
            let selection = match kinds.get(named(&field.ty.node)) {
                Some(TypeKind::Object(_) | TypeKind::Interface(_) | TypeKind::Union(_)) => " { __typename }",
                _ => "",
            };
            let name = field.name.node.to_string();
            operations.push(Operation {
                document: format!("{keyword} {{ {name}{arguments}{selection} }}"),
                field: name,
                subgraph,
            });
        }
    }
    operations
}

fn named(ty: &Type) -> &str {
    let mut base = &ty.base;
    loop {
        match base {
            BaseType::Named(name) => return name.as_str(),
            BaseType::List(inner) => base = &inner.base,
        }
    }
}

/// A GraphQL literal of type `ty` that names nothing that exists.
fn literal(ty: &Type, kinds: &HashMap<String, &TypeKind>) -> String {
    match &ty.base {
        BaseType::List(inner) => format!("[{}]", literal(inner, kinds)),
        BaseType::Named(name) => match name.as_str() {
            "ID" => format!("\"{}\"", Uuid::now_v7()),
            "String" => "\"4242424242424242\"".to_owned(),
            "Int" => "1".to_owned(),
            "Float" => "1.0".to_owned(),
            "Boolean" => "true".to_owned(),
            "DateTime" => "\"2031-01-01T09:00:00Z\"".to_owned(),
            other => match kinds.get(other) {
                Some(TypeKind::Enum(values)) => values.values[0].node.value.node.to_string(),
                Some(TypeKind::InputObject(input)) => {
                    let fields: Vec<String> = input
                        .fields
                        .iter()
                        .filter(|field| !field.node.ty.node.nullable && field.node.default_value.is_none())
                        .map(|field| format!("{}: {}", field.node.name.node, literal(&field.node.ty.node, kinds)))
                        .collect();
                    format!("{{ {} }}", fields.join(", "))
                }
                _ => "\"x\"".to_owned(),
            },
        },
    }
}

/// Every way a token can be wrong, each with what it is.
fn bad_credentials(stack: &TestStack) -> Vec<(&'static str, Option<String>)> {
    let users = &stack.identities.users;
    let operator = Identity::Operator { subject: "attacker".into() };
    let minute = Duration::from_secs(60);
    let now = Utc::now().timestamp();
    let customer = users.issue(&Identity::Customer { customer_id: Uuid::now_v7() }, minute);
    let parts: Vec<&str> = customer.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64")).expect("JSON");
    claims["role"] = json!("operator");
    let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    let none_header = URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "kid": users.key_id() }).to_string());
    let unsigned = format!("{none_header}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut hs256 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs256.kid = Some(users.key_id().to_owned());
    let public_key = serde_json::to_vec(&users.jwks()).expect("JWKS");
    let confused = jsonwebtoken::encode(&hs256, &claims, &jsonwebtoken::EncodingKey::from_secret(&public_key))
        .expect("HS256 token");
    vec![
        ("no token", None),
        ("not a JWT", Some("Bearer garbage".to_owned())),
        ("not Bearer", Some(format!("Basic {customer}"))),
        ("expired", Some(format!("Bearer {}", users.issue_with_expiry(&operator, now - 7200, now - 3600)))),
        (
            "another issuer",
            Some(format!(
                "Bearer {}",
                users.for_audience("https://elsewhere.test", users.audience()).issue(&operator, minute)
            )),
        ),
        (
            "another audience",
            Some(format!("Bearer {}", users.for_audience(users.issuer(), "another-app").issue(&operator, minute))),
        ),
        (
            "an unknown kid",
            Some(format!(
                "Bearer {}",
                TokenIssuer::generate(users.issuer(), users.audience()).issue(&operator, minute)
            )),
        ),
        (
            "a forged key under a trusted kid",
            Some(format!(
                "Bearer {}",
                TokenIssuer::generate(users.issuer(), users.audience())
                    .with_key_id(users.key_id())
                    .issue(&operator, minute)
            )),
        ),
        ("alg none", Some(format!("Bearer {unsigned}"))),
        ("HS256 keyed with the public key", Some(format!("Bearer {confused}"))),
        ("a tampered payload", Some(format!("Bearer {tampered}"))),
    ]
}

async fn post(stack: &TestStack, url: &str, authorization: Option<&str>, document: &str) -> (StatusCode, Value) {
    let mut request = stack.client.post(url).json(&json!({ "query": document }));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.expect("sent");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
}

/// What changes would leave behind: products, rentals, charges, deliveries.
async fn footprint(stack: &TestStack) -> Vec<i64> {
    let subgraphs = &stack.subgraphs;
    vec![
        count(&subgraphs.inventory.database, "SELECT count(*) AS n FROM products").await,
        count(&subgraphs.rental.database, "SELECT count(*) AS n FROM rentals").await,
        count(&subgraphs.payment.database, "SELECT count(*) AS n FROM payments").await,
        count(&subgraphs.delivery.database, "SELECT count(*) AS n FROM deliveries").await,
    ]
}

#[tokio::test]
async fn every_operation_refuses_every_bad_token_through_the_router_and_at_its_subgraph() {
    let stack = TestStack::start().await;
    let operations = operations();
    assert!(operations.len() >= 25, "the supergraph's operations: {operations:?}");
    // Rental's own key proves rental to payment, and to nothing else: refused everywhere
    // but at payment itself.
    const SERVICE_KEY: &str = "rental's service key";
    let mut credentials = bad_credentials(&stack);
    let service = stack.identities.rental.issue(&Identity::Service { name: "rental".into() }, Duration::from_secs(60));
    credentials.push((SERVICE_KEY, Some(format!("Bearer {service}"))));
    let before = footprint(&stack).await;
    let mut wrong = Vec::new();
    for operation in &operations {
        let subgraph = stack.subgraphs.all().into_iter().find(|service| service.name == operation.subgraph);
        let subgraph = subgraph.unwrap_or_else(|| panic!("no subgraph {}", operation.subgraph)).url();
        let at_payment = operation.subgraph == payment::SERVICE;
        let direct = credentials.iter().filter(|(what, _)| !(at_payment && *what == SERVICE_KEY)).cloned().collect();
        for (target, url, credentials) in
            [("router", stack.router_url(), credentials.clone()), ("subgraph", subgraph, direct)]
        {
            for (what, authorization) in credentials {
                let (status, answer) = post(&stack, &url, authorization.as_deref(), &operation.document).await;
                let data = answer.get("data").filter(|data| !data.is_null());
                if status != StatusCode::UNAUTHORIZED || error_codes(&answer) != ["UNAUTHENTICATED"] || data.is_some() {
                    wrong.push(format!("{} at the {target} with {what}: {status} {answer}", operation.field));
                }
                let token = authorization.as_deref().and_then(|header| header.split_once(' ')).map(|(_, token)| token);
                if let Some(token) = token.filter(|token| token.len() > 20) {
                    assert!(!answer.to_string().contains(token), "the answer repeats the token: {answer}");
                }
            }
        }
    }
    assert!(wrong.is_empty(), "not refused as UNAUTHENTICATED:\n{}", wrong.join("\n"));
    assert_eq!(footprint(&stack).await, before, "a refused request changed something");
    stack.stop().await;
}

/// Who may call an operation, for the two user roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum May {
    /// Runs (its answer is about the made-up ids: data, `NOT_FOUND`, `BAD_USER_INPUT`).
    Run,
    /// `FORBIDDEN`, and nothing runs.
    Not,
    /// Not in the public API at all: the router refuses it as an unknown field.
    Hidden,
}

/// (operation, customer, operator) for every query and mutation; a new operation must be
/// added here, or the test fails. Subscriptions: `live.rs` (the owner and operators).
const ROLES: &[(&str, May, May)] = &[
    ("products", May::Run, May::Run),
    ("product", May::Run, May::Run),
    ("rental", May::Run, May::Run),
    ("myRentals", May::Run, May::Not),
    ("delivery", May::Run, May::Run),
    ("deliveries", May::Not, May::Run),
    ("visit", May::Run, May::Run),
    ("visits", May::Not, May::Run),
    ("payment", May::Run, May::Run),
    ("invoice", May::Run, May::Run),
    ("invoices", May::Not, May::Run),
    ("createProduct", May::Not, May::Run),
    ("restockProduct", May::Not, May::Run),
    ("setCareInterval", May::Not, May::Run),
    ("rent", May::Run, May::Not),
    ("cancelRental", May::Run, May::Run),
    ("extendRental", May::Run, May::Not),
    ("terminateRental", May::Run, May::Run),
    ("updatePaymentMethod", May::Run, May::Not),
    ("payInvoice", May::Run, May::Run),
    ("voidInvoice", May::Not, May::Run),
    ("startDelivery", May::Not, May::Run),
    ("completeDelivery", May::Not, May::Run),
    ("startVisit", May::Not, May::Run),
    ("completeVisit", May::Not, May::Run),
    ("rescheduleVisit", May::Run, May::Run),
    // Payment's internal operations: rental's service key only, never through the router.
    ("chargeRental", May::Hidden, May::Hidden),
    ("voidRentalCharge", May::Hidden, May::Hidden),
];

/// What rental's service key may do at payment, reached directly (with made-up ids:
/// `payment`, `invoice` and `payInvoice` run, and find nothing; on a customer's real ones
/// they find nothing either, `another_customers_things_read_as_missing_to_every_operation`).
const SERVICE_AT_PAYMENT: &[(&str, May)] = &[
    ("chargeRental", May::Run),
    ("voidRentalCharge", May::Run),
    ("payment", May::Run),
    ("invoice", May::Run),
    ("payInvoice", May::Run),
    ("invoices", May::Not),
    ("voidInvoice", May::Not),
    ("updatePaymentMethod", May::Not),
];

fn outcome(status: StatusCode, answer: &Value) -> May {
    let codes = error_codes(answer);
    if codes == ["FORBIDDEN"] {
        May::Not
    } else if codes == ["FieldsOnCorrectType"] {
        May::Hidden
    } else if status == StatusCode::OK && !codes.iter().any(|code| code == "UNAUTHENTICATED" || code == "FORBIDDEN") {
        May::Run
    } else {
        panic!("an answer that is none of run, forbidden or hidden: {status} {answer}")
    }
}

#[tokio::test]
async fn every_query_and_mutation_answers_each_role_as_the_rules_say() {
    let stack = TestStack::start().await;
    let customer = format!("Bearer {}", stack.customer_token(Uuid::now_v7()));
    let operator = format!("Bearer {}", stack.operator_token());
    let service = format!(
        "Bearer {}",
        stack.identities.rental.issue(&Identity::Service { name: "rental".into() }, Duration::from_secs(60))
    );
    let operations: Vec<Operation> =
        operations().into_iter().filter(|operation| !operation.document.starts_with("subscription")).collect();
    let mut wrong = Vec::new();
    for operation in &operations {
        let Some(&(_, as_customer, as_operator)) = ROLES.iter().find(|(field, ..)| *field == operation.field) else {
            wrong.push(format!("{}: not in ROLES; say who may call it", operation.field));
            continue;
        };
        for (who, authorization, expected) in
            [("customer", &customer, as_customer), ("operator", &operator, as_operator)]
        {
            let (status, answer) = post(&stack, &stack.router_url(), Some(authorization), &operation.document).await;
            if outcome(status, &answer) != expected {
                wrong.push(format!(
                    "{} as {who} through the router: expected {expected:?}, got {status} {answer}",
                    operation.field
                ));
            }
        }
        if operation.subgraph == payment::SERVICE {
            let url = stack.subgraphs.payment.url();
            let expected = SERVICE_AT_PAYMENT.iter().find(|(field, _)| *field == operation.field).map(|(_, may)| *may);
            let expected = expected.unwrap_or_else(|| panic!("{}: not in SERVICE_AT_PAYMENT", operation.field));
            let (status, answer) = post(&stack, &url, Some(&service), &operation.document).await;
            if outcome(status, &answer) != expected {
                wrong.push(format!(
                    "{} with rental's key at payment: expected {expected:?}, got {status} {answer}",
                    operation.field
                ));
            }
            // A user token is never a service: the internal operations refuse it at payment too.
            if as_customer == May::Hidden {
                for (who, authorization) in [("customer", &customer), ("operator", &operator)] {
                    let (status, answer) = post(&stack, &url, Some(authorization), &operation.document).await;
                    if outcome(status, &answer) != May::Not {
                        wrong.push(format!("{} as {who} at payment directly: {status} {answer}", operation.field));
                    }
                }
            }
        }
    }
    let covered: Vec<&str> = operations.iter().map(|operation| operation.field.as_str()).collect();
    for (field, ..) in ROLES {
        assert!(covered.contains(field), "ROLES names {field}, which the supergraph no longer has");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    stack.stop().await;
}

/// Another customer's rental, its delivery, payment, invoices and visits: every
/// operation that names one of them answers customer B as if it did not exist, and
/// changes nothing; customer A, the owner, is answered.
#[tokio::test]
async fn another_customers_things_read_as_missing_to_every_operation() {
    use crate::support::contract::{APPROVED, deliver, read, rent};
    let stack = TestStack::start().await;
    let product = crate::support::fixtures::rentable_product(&stack, "Owned model", 19_900, 3).await;
    let owner = rent(&stack, product, 12, APPROVED).await;
    deliver(&stack, &owner).await;
    let ids = "query($id: ID!) { rental(id: $id) { id payment { id } delivery { id } invoices { id } visits { id } } }";
    let (_, answer) = stack.graphql(Some(&owner.customer), ids, json!({ "id": owner.rental_id })).await;
    assert_eq!(answer.get("errors"), None, "the owner reads it: {answer}");
    let rental = &answer["data"]["rental"];
    let id = |value: &Value| value.as_str().expect("an id").to_owned();
    let (payment, delivery) = (id(&rental["payment"]["id"]), id(&rental["delivery"]["id"]));
    let invoice = id(&rental["invoices"][0]["id"]);
    let visit = id(&rental["visits"][0]["id"]);
    let rental_id = owner.rental_id.clone();
    let before = read(&stack, &owner).await;

    let attempts = [
        ("query($id: ID!) { rental(id: $id) { id } }", json!({ "id": rental_id })),
        ("query($id: ID!) { delivery(id: $id) { id } }", json!({ "id": delivery })),
        ("query($id: ID!) { payment(id: $id) { id } }", json!({ "id": payment })),
        ("query($id: ID!) { invoice(id: $id) { id } }", json!({ "id": invoice })),
        ("query($id: ID!) { visit(id: $id) { id } }", json!({ "id": visit })),
        ("mutation($id: ID!) { cancelRental(id: $id) { id } }", json!({ "id": rental_id })),
        ("mutation($id: ID!) { extendRental(id: $id, months: 1) { id } }", json!({ "id": rental_id })),
        ("mutation($id: ID!) { terminateRental(id: $id) { id } }", json!({ "id": rental_id })),
        (
            "mutation($id: ID!) { updatePaymentMethod(rentalId: $id, cardNumber: \"4242424242424242\", expMonth: 12, expYear: 2031) { last4 } }",
            json!({ "id": rental_id }),
        ),
        ("mutation($id: ID!) { payInvoice(id: $id) { id } }", json!({ "id": invoice })),
        (
            "mutation($id: ID!, $at: DateTime!) { rescheduleVisit(id: $id, scheduledFor: $at) { id } }",
            json!({ "id": visit, "at": (Utc::now() + chrono::Duration::days(3)).to_rfc3339() }),
        ),
    ];
    let stranger = stack.customer_token(Uuid::now_v7());
    let mut wrong = Vec::new();
    for (document, variables) in &attempts {
        let (_, answer) = stack.graphql(Some(&stranger), document, variables.clone()).await;
        if error_codes(&answer) != ["NOT_FOUND"] {
            wrong.push(format!("{document}: {answer}"));
        }
        let data = answer.get("data").filter(|data| !data.is_null());
        let leaked = data
            .is_some_and(|data| data.as_object().is_some_and(|fields| fields.values().any(|value| !value.is_null())));
        assert!(!leaked, "{document} gave another customer data: {answer}");
    }
    assert!(wrong.is_empty(), "not answered NOT_FOUND:\n{}", wrong.join("\n"));
    // Rental's service key, at payment directly: the charges, and no customer's things.
    let service = stack.identities.rental.issue(&Identity::Service { name: "rental".into() }, Duration::from_secs(60));
    for (document, variables) in [&attempts[2], &attempts[3], &attempts[9]] {
        let body = json!({ "query": document, "variables": variables });
        let (_, answer) =
            crate::support::post_graphql(&stack.client, &stack.subgraphs.payment.url(), Some(&service), &body).await;
        assert_eq!(
            error_codes(&answer),
            ["NOT_FOUND"],
            "rental's key reads or pays a customer's: {document}: {answer}"
        );
    }
    assert_eq!(read(&stack, &owner).await, before, "another customer's attempts changed the rental");

    // Live: neither subscription follows another customer's rental.
    let url = stack.router.as_ref().expect("router").websocket_url();
    let mut socket = harness::live_clients::WsClient::connect(&url, Some(&stranger)).await;
    for (name, document) in [
        ("delivery", "subscription($id: ID!) { deliveryStatusChanged(rentalId: $id) { status } }"),
        ("activity", "subscription($id: ID!) { rentalActivity(rentalId: $id) { kind } }"),
    ] {
        socket.subscribe(name, document, json!({ "id": rental_id })).await;
        let refused = socket.next_message().await.expect("an answer");
        assert_eq!(error_codes(&refused["payload"]), ["NOT_FOUND"], "{name}: {refused}");
        assert_eq!(refused["payload"]["data"], Value::Null, "{name}: {refused}");
        let after = socket.next_message().await;
        assert!(after.as_ref().is_some_and(|message| message["type"] == "complete"), "{name}: {after:?}");
    }
    socket.close().await;
    stack.stop().await;
}

/// Each service logs into PostgreSQL as its own role, which owns its database and may
/// connect to no other, nor make databases or roles: a stolen pod's database password
/// opens that service's data and nothing else.
#[tokio::test]
async fn a_service_cannot_reach_another_services_database() {
    use diesel::sql_query;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let stack = TestStack::start().await;
    let services = [inventory::SERVICE, rental::SERVICE, payment::SERVICE, delivery::SERVICE];
    for service in services {
        let own = &stack.config_of(service).database;
        assert_eq!(subgraph_kit::config::user_of(&own.server_url), Some(format!("water_{service}").as_str()));
        let mut connection =
            AsyncPgConnection::establish(&own.url()).await.expect("a service reaches its own database");
        sql_query("SELECT 1 FROM outbox LIMIT 1").execute(&mut connection).await.expect("and reads its own tables");
        for (statement, refusal) in [
            ("CREATE DATABASE water_squatter", "permission denied to create database"),
            ("CREATE ROLE water_squatter", "permission denied to create role"),
        ] {
            let error = sql_query(statement).execute(&mut connection).await.expect_err(statement);
            assert!(error.to_string().contains(refusal), "{service}: {statement}: {error}");
        }
        for other in services.iter().filter(|other| **other != service) {
            let theirs = &stack.config_of(other).database;
            let url = subgraph_kit::config::database_url(&own.server_url_with_password(), &theirs.name);
            let Err(error) = AsyncPgConnection::establish(&url).await else {
                panic!("{service}'s role connected to {other}'s database {}", theirs.name);
            };
            assert!(error.to_string().contains("permission denied for database"), "{service} → {other}: {error}");
        }
    }
    stack.stop().await;
}

/// Each service logs into RabbitMQ as its own user, who may publish only the events its
/// service produces, and read, declare and bind only its own queues: a stolen pod's
/// broker password cannot forge another service's event (a payment, say) nor drain
/// another's queue.
#[tokio::test]
async fn a_service_cannot_publish_another_services_events_or_touch_its_queues() {
    use event_bus::Event;
    use lapin::options::{
        BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties};
    let options = crate::support::StackOptions { topic_permissions: true, ..Default::default() };
    let stack = TestStack::start_with(options).await;
    let rental = stack.config_of(rental::SERVICE).events.clone();
    assert_eq!(subgraph_kit::config::user_of(&rental.amqp_url), Some("test_rental"));
    let connection = Connection::connect(&rental.connection_url(), ConnectionProperties::default())
        .await
        .expect("rental's user logs in");
    let refused = |what: &str, outcome: Result<(), lapin::Error>| match outcome {
        Ok(()) => panic!("rental's broker user could {what}"),
        Err(error) => assert!(error.to_string().contains("ACCESS_REFUSED"), "{what}: {error}"),
    };
    let publish = |exchange: String, routing_key: &'static str| {
        let connection = &connection;
        async move {
            let channel = connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            let properties = BasicProperties::default();
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    routing_key.into(),
                    BasicPublishOptions::default(),
                    b"{}",
                    properties,
                )
                .await?
                .await?;
            Ok(())
        }
    };
    refused("publish invoice.paid", publish(rental.exchange(), contracts::InvoicePaid::TYPE).await);
    refused("publish payment.charged", publish(rental.exchange(), contracts::PaymentCharged::TYPE).await);
    refused("publish to payment's queue through the default exchange", publish(String::new(), "payment").await);
    let payment_queue = rental.queue(payment::SERVICE);
    let channel = connection.create_channel().await.expect("channel");
    let consumed = channel
        .basic_consume(
            payment_queue.as_str().into(),
            "thief".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    refused("consume payment's queue", consumed.map(drop));
    let channel = connection.create_channel().await.expect("channel");
    let declared = channel
        .queue_declare(
            rental.queue("rental_shadow").as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    refused("declare a queue that is not its own", declared.map(drop));
    // A queue of its own may hear only what rental reads: binding it to another
    // service's inbox traffic (rental.accepted goes to delivery) is refused.
    let channel = connection.create_channel().await.expect("channel");
    let exclusive = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    let own = channel.queue_declare("".into(), exclusive, FieldTable::default()).await.expect("a listener's own queue");
    let bound = channel
        .queue_bind(
            own.name().clone(),
            rental.exchange().as_str().into(),
            contracts::RentalAccepted::TYPE.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    refused("bind to rental.accepted", bound);
    let _ = connection.close(200, "done".into()).await;
    // What rental itself does with the same user still works: a rent publishes
    // rental.accepted, which delivery receives.
    use crate::support::contract::{APPROVED, rent};
    let product = crate::support::fixtures::rentable_product(&stack, "Broker-bound model", 19_900, 3).await;
    let rented = rent(&stack, product, 12, APPROVED).await;
    let delivered = crate::support::eventually(Duration::from_secs(20), || async {
        let (_, answer) = stack
            .graphql(
                Some(&rented.customer),
                "query($id: ID!) { rental(id: $id) { delivery { id } } }",
                json!({ "id": rented.rental_id }),
            )
            .await;
        answer["data"]["rental"]["delivery"]["id"].is_string()
    })
    .await;
    assert!(delivered, "rental's own event reached delivery");
    stack.stop().await;
}
