//! Router plugin `rate_limits`: each client may send so many mutations, and start so
//! many subscriptions, a minute; past that the router refuses, before any subgraph is
//! called, with `RATE_LIMITED`, `extensions.retryAfterSeconds`, and over HTTP status 429
//! with a `Retry-After` header. Queries are not limited.
//!
//! A client is the identity the `auth` plugin verified (a customer, an operator), not an
//! address: customers behind one mobile carrier's NAT share addresses, and one client
//! opening many connections shares nothing. Each client has a token bucket per kind of
//! operation: `burst` operations at once, refilled at `per_minute`. One client's flood
//! empties only its own buckets, and its refused requests cost the router a parse of the
//! operation's text and no subgraph call, so other clients' requests go on as before.
//!
//! The check runs at the end of `on_graphql_params`, the one hook whose early answer
//! reaches a WebSocket client as itself: a subscription refused there gets a `next` with
//! the error, then `complete`, and the socket stays open (the same as `auth`'s refusals).
//!
//! Limits live in router.config.yaml (`ROUTER_*_PER_MINUTE`, `ROUTER_*_BURST`). The tests
//! and benchmarks raise them (`stack::RELAXED_RATE_LIMITS`): their one operator does
//! hundreds of mutations a minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hive_router::{
    GraphQLError,
    executor::response::graphql_error::GraphQLErrorExtensions,
    graphql_tools::parser::query::{Definition, OperationDefinition, parse_query},
    http::StatusCode,
    ntex::http::{Response, header},
    plugins::{
        hooks::{
            on_graphql_params::{OnGraphQLParamsStartHookPayload, OnGraphQLParamsStartHookResult},
            on_plugin_init::{OnPluginInitPayload, OnPluginInitResult},
        },
        plugin_trait::{EndHookPayload, FromGraphQLErrorToResponse, RouterPlugin, StartHookPayload},
    },
};
use identity::{ErrorCode, Identity};
use serde::{Deserialize, Deserializer};

/// Who is calling, as the `auth` plugin verified it, for the plugins after it.
pub struct Caller(pub Identity);

impl Caller {
    /// The key a client's buckets are kept under.
    fn key(&self) -> String {
        match &self.0 {
            Identity::Customer { customer_id } => format!("customer:{customer_id}"),
            Identity::Operator { subject } => format!("operator:{subject}"),
            Identity::Service { name } => format!("service:{name}"),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct RateLimitsConfig {
    pub mutations: Rate,
    pub subscriptions: Rate,
}

/// `per_minute` operations a minute, `burst` of them at once. Numbers, or strings of
/// digits: a value `from_env` arrives as a string.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Rate {
    #[serde(deserialize_with = "positive_number")]
    pub per_minute: u32,
    #[serde(deserialize_with = "positive_number")]
    pub burst: u32,
}

fn positive_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(u64),
        Text(String),
    }
    let value = match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Number(number) => u32::try_from(number).ok(),
        NumberOrText::Text(text) => text.trim().parse::<u32>().ok(),
    };
    value.filter(|number| *number > 0).ok_or_else(|| {
        serde::de::Error::custom("a rate limit must be a whole number from 1 to 4294967295 (a limit cannot be off)")
    })
}

pub struct RateLimits {
    mutations: Buckets,
    subscriptions: Buckets,
}

#[hive_router::async_trait]
impl RouterPlugin for RateLimits {
    /// The key under `plugins:` in router.config.yaml.
    fn plugin_name() -> &'static str {
        "rate_limits"
    }

    type Config = RateLimitsConfig;

    fn on_plugin_init(payload: OnPluginInitPayload<Self>) -> OnPluginInitResult<Self> {
        let config = payload.config()?;
        tracing::info!(
            mutations_per_minute = config.mutations.per_minute,
            mutation_burst = config.mutations.burst,
            subscriptions_per_minute = config.subscriptions.per_minute,
            subscription_burst = config.subscriptions.burst,
            "rate limits per client"
        );
        payload.initialize_plugin(RateLimits {
            mutations: Buckets::new(config.mutations),
            subscriptions: Buckets::new(config.subscriptions),
        })
    }

    async fn on_graphql_params<'exec>(
        &'exec self,
        payload: OnGraphQLParamsStartHookPayload<'exec>,
    ) -> OnGraphQLParamsStartHookResult<'exec> {
        // The body is parsed after the start hooks; its operation is known at the end.
        payload.on_end(move |end| {
            let params = &end.graphql_params;
            let Some(kind) = limited_kind(params.query.as_deref(), params.operation_name.as_deref()) else {
                return end.proceed();
            };
            let client = end.context.get_ref::<Caller>().map(|caller| caller.key());
            // Without `auth` there is no verified client: all such requests share one
            // bucket rather than none.
            let client = client.as_deref().unwrap_or("unauthenticated");
            let buckets = match kind {
                LimitedKind::Mutation => &self.mutations,
                LimitedKind::Subscription => &self.subscriptions,
            };
            match buckets.admit(client, Instant::now()) {
                Ok(()) => end.proceed(),
                Err(wait) => end.end_with_response(refusal(kind, buckets.rate, wait)),
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LimitedKind {
    Mutation,
    Subscription,
}

/// Whether the operation the request runs is a mutation or a subscription. A query,
/// and a text that does not parse or names no operation of its own (the router refuses
/// those next, with its own error), is not limited.
fn limited_kind(query: Option<&str>, operation_name: Option<&str>) -> Option<LimitedKind> {
    let text = query?;
    // Most requests are queries: skip the parse when the text cannot hold anything else.
    if !text.contains("mutation") && !text.contains("subscription") {
        return None;
    }
    let document = parse_query::<&str>(text).ok()?;
    let mut operations = document.definitions.iter().filter_map(|definition| match definition {
        Definition::Operation(operation) => Some(operation),
        Definition::Fragment(_) => None,
    });
    let chosen = match operation_name {
        Some(wanted) => operations.find(|operation| name_of(operation) == Some(wanted))?,
        None => {
            let first = operations.next()?;
            if operations.next().is_some() {
                return None;
            }
            first
        }
    };
    match chosen {
        OperationDefinition::Mutation(_) => Some(LimitedKind::Mutation),
        OperationDefinition::Subscription(_) => Some(LimitedKind::Subscription),
        OperationDefinition::Query(_) | OperationDefinition::SelectionSet(_) => None,
    }
}

fn name_of<'a>(operation: &OperationDefinition<'a, &'a str>) -> Option<&'a str> {
    match operation {
        OperationDefinition::Query(query) => query.name,
        OperationDefinition::Mutation(mutation) => mutation.name,
        OperationDefinition::Subscription(subscription) => subscription.name,
        OperationDefinition::SelectionSet(_) => None,
    }
}

/// 429 with `Retry-After`, and the same sentence and code in the body a WebSocket
/// client gets.
fn refusal(kind: LimitedKind, rate: Rate, wait: Duration) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let what = match kind {
        LimitedKind::Mutation => "mutations",
        LimitedKind::Subscription => "subscription starts",
    };
    let message = format!(
        "too many {what} from this client: at most {} a minute ({} at once); nothing was done, try again in {seconds} second{}",
        rate.per_minute,
        rate.burst,
        if seconds == 1 { "" } else { "s" },
    );
    let mut extensions = GraphQLErrorExtensions::new_from_code(ErrorCode::RateLimited.as_str());
    extensions.extensions.insert("retryAfterSeconds".to_owned(), seconds.into());
    let error = GraphQLError::from_message_and_extensions(message, extensions);
    let mut response = Response::from_graphql_error_to_response(error, StatusCode::TOO_MANY_REQUESTS);
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    response
}

/// Past this many clients, the buckets that have filled up again (their clients idle
/// for a while) are dropped: a full bucket is what a new client starts with anyway.
const PRUNE_AT: usize = 10_000;

/// One token bucket per client for one kind of operation.
struct Buckets {
    rate: Rate,
    /// Tokens added a second.
    refill_per_second: f64,
    by_client: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Buckets {
    fn new(rate: Rate) -> Self {
        Self { rate, refill_per_second: f64::from(rate.per_minute) / 60.0, by_client: Mutex::new(HashMap::new()) }
    }

    /// Takes one token from `client`'s bucket, or says how long until there is one.
    fn admit(&self, client: &str, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.rate.burst);
        let mut by_client = self.by_client.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if by_client.len() >= PRUNE_AT && !by_client.contains_key(client) {
            by_client.retain(|_, bucket| self.refilled(*bucket, now) < burst);
        }
        let bucket = by_client.entry(client.to_owned()).or_insert(Bucket { tokens: burst, updated: now });
        bucket.tokens = self.refilled(*bucket, now);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.refill_per_second))
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.refill_per_second).min(f64::from(self.rate.burst))
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.by_client.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(per_minute: u32, burst: u32) -> Buckets {
        Buckets::new(Rate { per_minute, burst })
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_for_the_refill() {
        let limits = buckets(60, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limits.admit("a", start), Ok(()));
        }
        let wait = limits.admit("a", start).expect_err("the fourth at once is refused");
        assert_eq!(wait, Duration::from_secs(1), "one a second at 60 a minute");
        // Half a second later half a token is there: still refused, half a second to go.
        let wait = limits.admit("a", start + Duration::from_millis(500)).expect_err("still empty");
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(limits.admit("a", start + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn one_clients_flood_leaves_another_clients_bucket_full() {
        let limits = buckets(6, 2);
        let now = Instant::now();
        let refused = (0..100).filter(|_| limits.admit("flooder", now).is_err()).count();
        assert_eq!(refused, 98);
        assert_eq!(limits.admit("other", now), Ok(()));
        assert_eq!(limits.admit("other", now), Ok(()));
        assert!(limits.admit("other", now).is_err());
    }

    #[test]
    fn a_bucket_never_holds_more_than_its_burst() {
        let limits = buckets(600, 2);
        let start = Instant::now();
        assert_eq!(limits.admit("a", start), Ok(()));
        let later = start + Duration::from_secs(3600);
        assert_eq!(limits.admit("a", later), Ok(()));
        assert_eq!(limits.admit("a", later), Ok(()));
        assert!(limits.admit("a", later).is_err());
    }

    #[test]
    fn idle_clients_are_forgotten_once_there_are_many() {
        let limits = buckets(60, 1);
        let start = Instant::now();
        for index in 0..PRUNE_AT {
            limits.admit(&format!("client {index}"), start).expect("first request");
        }
        assert_eq!(limits.clients(), PRUNE_AT);
        // A second later every bucket is full again; the next new client prunes them.
        limits.admit("newcomer", start + Duration::from_secs(1)).expect("first request");
        assert_eq!(limits.clients(), 1);
    }

    #[test]
    fn only_mutations_and_subscriptions_are_limited() {
        let kind = |text: &str, name: Option<&str>| limited_kind(Some(text), name);
        assert_eq!(kind("{ products { edges { node { id } } } }", None), None);
        assert_eq!(kind("query Mutations { products { totalCount } }", None), None);
        assert_eq!(kind("mutation { cancelRental(id: \"x\") { id } }", None), Some(LimitedKind::Mutation));
        assert_eq!(
            kind("subscription Live { rentalActivity(id: \"x\") { kind } }", None),
            Some(LimitedKind::Subscription)
        );
        let both = "query A { products { totalCount } } mutation B { cancelRental(id: \"x\") { id } }";
        assert_eq!(kind(both, Some("A")), None);
        assert_eq!(kind(both, Some("B")), Some(LimitedKind::Mutation));
        // Ambiguous or unparsable: the router refuses it next, with its own error.
        assert_eq!(kind(both, None), None);
        assert_eq!(kind("mutation {", None), None);
        assert_eq!(limited_kind(None, None), None);
    }

    #[test]
    fn limits_are_positive_whole_numbers_given_as_numbers_or_text() {
        let rate: Rate = serde_json::from_str(r#"{"per_minute": 60, "burst": "20"}"#).expect("valid");
        assert_eq!((rate.per_minute, rate.burst), (60, 20));
        for refused in [r#"{"per_minute": 0, "burst": 1}"#, r#"{"per_minute": "many", "burst": 1}"#] {
            let error = serde_json::from_str::<Rate>(refused).expect_err("refused");
            assert!(error.to_string().contains("a rate limit must be a whole number"), "{error}");
        }
    }
}
