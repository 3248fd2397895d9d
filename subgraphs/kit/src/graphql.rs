//! GraphQL helpers every subgraph uses the same way: the schema builder, reading the
//! caller's identity, parsing ids, references to other subgraphs' entities, cursor
//! pagination (Relay connections, with cursors typed per list), and request metrics.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::connection::{Connection, Edge};
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationDefinition, Selection};
use async_graphql::{
    Context, ID, ObjectType, OutputType, Response, Schema, SchemaBuilder, ServerResult, SubscriptionType, Variables,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::error::ApiError;
use crate::metrics::metrics;
use identity::Identity;

/// A federated subgraph schema with what every subgraph has: federation, and a
/// request-metrics extension labelled with the service.
pub fn schema_builder<Q, M, S>(service: &'static str, query: Q, mutation: M, subscription: S) -> SchemaBuilder<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    Schema::build(query, mutation, subscription).enable_federation().extension(RequestMetrics { service })
}

/// The shared state of a schema, registered once as schema data.
pub fn state<'a, T: Send + Sync + 'static>(ctx: &Context<'a>) -> &'a T {
    ctx.data_unchecked::<T>()
}

/// The verified caller. Requests without one never reach a resolver, so this only fails
/// if a schema is executed outside the server (a bug), which then reads as unauthenticated.
pub fn identity<'a>(ctx: &Context<'a>) -> Result<&'a Identity, ApiError> {
    ctx.data_opt::<Identity>().ok_or_else(|| ApiError::unauthenticated("authentication required"))
}

/// The caller, who must be an operator (company staff).
pub fn require_operator<'a>(ctx: &Context<'a>, action: &str) -> Result<&'a Identity, ApiError> {
    let identity = identity(ctx)?;
    if identity.is_operator() { Ok(identity) } else { Err(ApiError::forbidden(format!("only operators may {action}"))) }
}

/// Parses a GraphQL `ID` that names a `what` (e.g. "product"): ids are UUIDs.
pub fn parse_id(id: &ID, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id.as_str()).map_err(|_| {
        ApiError::bad_input(format!(
            "{:?} is not a valid {what} id: ids look like 0192f1a4-7c3e-7d1a-9b2e-1f6c3a5d8e90",
            truncate(id.as_str(), 64)
        ))
    })
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

/// An entity another subgraph owns, known here by its key alone (`Rental` in payment
/// and delivery): its `id` as GraphQL shows it, and the parsed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityRef {
    pub id: ID,
    pub key: Uuid,
}

impl EntityRef {
    pub fn new(key: Uuid) -> Self {
        Self { id: ID(key.to_string()), key }
    }

    /// From a representation's id, which names a `what`.
    pub fn parse(id: ID, what: &str) -> Result<Self, ApiError> {
        let key = parse_id(&id, what)?;
        Ok(Self { id, key })
    }
}

/// The rental as a subgraph that extends it (payment, delivery) knows it: by its key
/// alone. Every field such a subgraph adds follows one rule, written here once: a
/// customer sees only their own rental's data, and anything else reads as "there is no
/// rental with id …", so ids cannot be probed. The next subgraph that extends `Rental`
/// wraps this too: `pub struct Rental(RentalRef)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RentalRef(EntityRef);

impl RentalRef {
    pub fn new(key: Uuid) -> Self {
        Self(EntityRef::new(key))
    }

    /// From a federation representation's id (the `_entities` resolver).
    pub fn from_representation(id: ID) -> Result<Self, ApiError> {
        Ok(Self(EntityRef::parse(id, "rental")?))
    }

    pub fn id(&self) -> &ID {
        &self.0.id
    }

    pub fn key(&self) -> Uuid {
        self.0.key
    }

    /// One thing of this rental (its delivery, its first payment, its card), if the
    /// caller may see it.
    pub fn visible_one<T>(
        &self,
        caller: &Identity,
        found: Option<T>,
        owner: impl Fn(&T) -> Uuid,
    ) -> Result<Option<T>, ApiError> {
        visible(caller, found, owner, || self.not_found())
    }

    /// All things of one kind of this rental (its invoices, its visits), if the caller
    /// may see every one of them; none at all reads as an empty list.
    pub fn visible_all<T>(
        &self,
        caller: &Identity,
        found: Option<Vec<T>>,
        owner: impl Fn(&T) -> Uuid,
    ) -> Result<Vec<T>, ApiError> {
        let items = found.unwrap_or_default();
        if items.iter().any(|item| !caller.may_see_customer(owner(item))) {
            return Err(self.not_found());
        }
        Ok(items)
    }

    pub fn not_found(&self) -> ApiError {
        ApiError::not_found(format!("there is no rental with id {}", self.0.key))
    }
}

/// `found` if the caller may see it (it belongs to them, or they are staff); otherwise
/// the same error as for nothing at all, so ids cannot be probed.
pub fn visible<T>(
    caller: &Identity,
    found: Option<T>,
    owner: impl Fn(&T) -> Uuid,
    not_found: impl FnOnce() -> ApiError,
) -> Result<Option<T>, ApiError> {
    match found {
        Some(item) if !caller.may_see_customer(owner(&item)) => Err(not_found()),
        found => Ok(found),
    }
}

pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 100;

/// A validated page request of one list: at most `size` items after the `after` key.
/// Keys are UUIDv7, so ordering by key is ordering by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Which list the cursors belong to (`products`, `deliveries`, `myRentals`): a
    /// cursor of one list is refused by another.
    pub list: &'static str,
    pub size: i64,
    pub after: Option<Uuid>,
}

impl PageRequest {
    pub fn parse(list: &'static str, first: Option<i32>, after: Option<&str>) -> Result<Self, ApiError> {
        let size = first.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            return Err(ApiError::bad_input(format!("first must be between 1 and {MAX_PAGE_SIZE}, got {size}")));
        }
        let after = after.map(|cursor| decode_cursor(list, cursor)).transpose()?;
        Ok(Self { list, size: i64::from(size), after })
    }

    /// How many rows to fetch: one more than the page, to learn whether another follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }
}

/// A cursor: the list's name and the key, so a cursor only works in its own list.
pub fn encode_cursor(list: &str, key: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{list}:{key}"))
}

pub fn decode_cursor(list: &str, cursor: &str) -> Result<Uuid, ApiError> {
    let decoded = URL_SAFE_NO_PAD.decode(cursor).ok().and_then(|bytes| String::from_utf8(bytes).ok());
    let key = decoded.as_deref().and_then(|text| text.strip_prefix(list)?.strip_prefix(':')?.parse().ok());
    key.ok_or_else(|| {
        ApiError::bad_input(format!(
            "{:?} is not a cursor of {list}: pass the endCursor of a previous {list} page",
            truncate(cursor, 64)
        ))
    })
}

/// Builds a connection from up to `page.fetch_limit()` rows in page order.
pub fn connection<N: OutputType>(
    page: &PageRequest,
    mut rows: Vec<N>,
    key_of: impl Fn(&N) -> Uuid,
) -> Connection<String, N> {
    let has_next_page = rows.len() as i64 > page.size;
    rows.truncate(page.size as usize);
    let mut connection = Connection::new(page.after.is_some(), has_next_page);
    connection.edges.extend(rows.into_iter().map(|node| Edge::new(encode_cursor(page.list, key_of(&node)), node)));
    connection
}

/// Counts and times every query and mutation by its root field and outcome
/// (`water_graphql_requests_total`, `water_graphql_request_duration_seconds`).
struct RequestMetrics {
    service: &'static str,
}

impl ExtensionFactory for RequestMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestObserver {
            service: self.service,
            root_fields: Mutex::default(),
            operation: Mutex::default(),
            asks_for_service_sdl: Default::default(),
        })
    }
}

struct RequestObserver {
    service: &'static str,
    /// Operation name (None for an anonymous one) → its first root field, from parsing.
    root_fields: Mutex<Vec<(Option<String>, String)>>,
    /// The root field of the operation that passed validation and ran.
    operation: Mutex<Option<String>>,
    /// Whether any operation of the document selects `_service`.
    asks_for_service_sdl: std::sync::atomic::AtomicBool,
}

fn first_root_field(operation: &OperationDefinition) -> String {
    operation
        .selection_set
        .node
        .items
        .iter()
        .find_map(|selection| match &selection.node {
            Selection::Field(field) => Some(field.node.name.node.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "fragment".to_owned())
}

#[async_trait::async_trait]
impl Extension for RequestObserver {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        // Only names that passed validation are labels: a client cannot invent values.
        let operation = self.operation.lock().expect("metrics lock").clone().unwrap_or_else(|| "invalid".into());
        let outcome = match response.errors.first() {
            None => "ok".to_owned(),
            Some(error) => error
                .extensions
                .as_ref()
                .and_then(|extensions| extensions.get("code"))
                .and_then(|code| match code {
                    async_graphql::Value::String(code) => Some(code.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "GRAPHQL_VALIDATION_FAILED".to_owned()),
        };
        let metrics = metrics();
        metrics.graphql_requests.with_label_values(&[self.service, &operation, &outcome]).inc();
        metrics
            .graphql_duration
            .with_label_values(&[self.service, &operation])
            .observe(started.elapsed().as_secs_f64());
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let fields = match &document.operations {
            DocumentOperations::Single(operation) => vec![(None, first_root_field(&operation.node))],
            DocumentOperations::Multiple(operations) => operations
                .iter()
                .map(|(name, operation)| (Some(name.to_string()), first_root_field(&operation.node)))
                .collect(),
        };
        *self.root_fields.lock().expect("metrics lock") = fields;
        let selects_service = |operation: &OperationDefinition| {
            operation.selection_set.node.items.iter().any(
                |selection| matches!(&selection.node, Selection::Field(field) if field.node.name.node == "_service"),
            )
        };
        let asks = match &document.operations {
            DocumentOperations::Single(operation) => selects_service(&operation.node),
            DocumentOperations::Multiple(operations) => {
                operations.values().any(|operation| selects_service(&operation.node))
            }
        };
        self.asks_for_service_sdl.store(asks, std::sync::atomic::Ordering::Relaxed);
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let field = {
            let fields = self.root_fields.lock().expect("metrics lock");
            fields
                .iter()
                .find(|(name, _)| name.is_none() || name.as_deref() == operation_name)
                .map(|(_, field)| field.clone())
        };
        *self.operation.lock().expect("metrics lock") = field;
        // `_service { sdl }` is for the router and other services only: a customer or an
        // operator calling a subgraph directly reads the schema through the router.
        let service = matches!(ctx.data_opt::<Identity>(), Some(Identity::Service { .. }));
        if self.asks_for_service_sdl.load(std::sync::atomic::Ordering::Relaxed) && !service {
            let refused = ApiError::forbidden("_service is for the router and other services only");
            return Response::from_errors(vec![refused.into_graphql().into_server_error(Default::default())]);
        }
        next.run(ctx, operation_name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rental_extension_shows_a_customer_only_their_own_and_hides_the_rest_as_missing() {
        let alice = Uuid::now_v7();
        let rental = RentalRef::new(Uuid::now_v7());
        let as_alice = Identity::Customer { customer_id: alice };
        let as_bob = Identity::Customer { customer_id: Uuid::now_v7() };
        let as_operator = Identity::Operator { subject: "ops".into() };
        let owner = |item: &Uuid| *item;

        assert_eq!(rental.visible_one(&as_alice, Some(alice), owner), Ok(Some(alice)));
        assert_eq!(rental.visible_one(&as_operator, Some(alice), owner), Ok(Some(alice)));
        let refused = rental.visible_one(&as_bob, Some(alice), owner).unwrap_err();
        assert_eq!(refused.code, crate::ErrorCode::NotFound);
        assert!(refused.message.contains(&rental.key().to_string()), "{}", refused.message);
        assert_eq!(rental.visible_one(&as_bob, None::<Uuid>, owner), Ok(None));

        assert_eq!(rental.visible_all(&as_alice, Some(vec![alice, alice]), owner), Ok(vec![alice, alice]));
        assert_eq!(rental.visible_all(&as_bob, None::<Vec<Uuid>>, owner), Ok(vec![]));
        assert_eq!(rental.visible_all(&as_bob, Some(vec![alice]), owner).unwrap_err().code, crate::ErrorCode::NotFound);
        assert_eq!(RentalRef::from_representation(ID("nope".into())).unwrap_err().code, crate::ErrorCode::BadUserInput);
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let key = Uuid::now_v7();
        assert_eq!(decode_cursor("products", &encode_cursor("products", key)), Ok(key));
        assert_eq!(decode_cursor("products", "not-a-cursor").unwrap_err().code, crate::ErrorCode::BadUserInput);
    }

    #[test]
    fn a_cursor_of_one_list_is_refused_by_another() {
        let cursor = encode_cursor("products", Uuid::now_v7());
        let refused = decode_cursor("myRentals", &cursor).unwrap_err();
        assert_eq!(refused.code, crate::ErrorCode::BadUserInput);
        assert!(refused.message.contains("not a cursor of myRentals"), "{}", refused.message);
    }

    #[test]
    fn page_sizes_outside_the_range_are_refused() {
        assert_eq!(PageRequest::parse("products", None, None).unwrap().size, 20);
        assert!(PageRequest::parse("products", Some(0), None).is_err());
        assert!(PageRequest::parse("products", Some(101), None).is_err());
        assert_eq!(PageRequest::parse("products", Some(100), None).unwrap().fetch_limit(), 101);
    }

    #[test]
    fn malformed_ids_get_a_readable_error() {
        let error = parse_id(&ID::from("abc"), "product").unwrap_err();
        assert_eq!(error.code, crate::ErrorCode::BadUserInput);
        assert!(error.message.contains("not a valid product id"));
    }
}
