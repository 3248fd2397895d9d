//! The federation router: hive-router with our plugins, one module each. The
//! configuration lives in `router/router.config.yaml`.
//!
//! - `auth`: every request authenticated as the subgraphs do it (one code, 401);
//! - `trusted_documents`: only the documents of our clients' manifest (`refuse`), or
//!   each other one logged (`log`);
//! - `rate_limits`: so many mutations and subscription starts a minute per client (429);
//! - `inputs`: variables checked against their input types before any subgraph call;
//! - `graphiql`: the offline GraphiQL page, every asset served from this binary.

// ntex builds its middleware stack out of deeply nested types; the default limit of
// 128 is not enough for the release build ("queries overflow the depth limit!").
#![recursion_limit = "512"]

mod auth;
mod graphiql;
mod inputs;
mod rate_limits;
mod trusted_documents;

// `#[hive_router::main]` expands to `ntex::…` paths, so the name must be in scope.
use hive_router::ntex;
use hive_router::{
    PluginRegistry, RouterGlobalAllocator, configure_global_allocator, error::RouterInitError,
    init_rustls_crypto_provider, router_entrypoint,
};

configure_global_allocator!();

/// Log targets of hive-router that would write request data at debug level: coerced
/// variables (full card numbers, addresses), operation texts with their literals, query
/// strings. They stay at info whatever `LOG_LEVEL` or `LOG_FILTER` say (a later
/// directive for a target wins), so no level shows them.
const QUIET_TARGETS: &str = "router::coerce_variables=off,router::graphql_execution=info,\
    router::graphql_normalization=info,router::graphql_validation=info,router::http_server=info,\
    router::executor=info,router::http_client=info,router::persisted_documents=info,h2=info,rustls=info";

#[hive_router::main]
async fn main() -> Result<(), RouterInitError> {
    configure_environment();
    init_rustls_crypto_provider();
    // A plugin runs only if it is both registered here and enabled under `plugins:` in
    // router.config.yaml; enabling one that is not registered stops the router at startup.
    // Hooks run in the order registered: `rate_limits` reads the caller `auth` verified,
    // and a document `trusted_documents` refuses does not count against the client.
    let plugins = PluginRegistry::new()
        .register::<auth::Auth>()
        .register::<trusted_documents::TrustedDocuments>()
        .register::<rate_limits::RateLimits>()
        .register::<inputs::Inputs>()
        .register::<graphiql::Graphiql>();
    router_entrypoint(plugins).await
}

/// Sets, before hive-router reads its configuration:
/// - `LOG_FILTER`: whatever the operator asked for, followed by [`QUIET_TARGETS`];
/// - with `OTEL_EXPORTER_OTLP_ENDPOINT` (the one variable that turns tracing on, as for
///   the subgraphs): the router's OTLP endpoint and, unless `TELEMETRY_TRACING_SAMPLING_RATE`
///   is set, a sampling rate of 1.
fn configure_environment() {
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".into());
    let filter = match std::env::var("LOG_FILTER") {
        Ok(filter) if !filter.trim().is_empty() => format!("{filter},{QUIET_TARGETS}"),
        _ => format!("{level},{QUIET_TARGETS}"),
    };
    let otlp = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|value| !value.trim().is_empty());
    // SAFETY: this runs first in main, before the router starts its workers or anything
    // else that reads the environment.
    unsafe {
        std::env::set_var("LOG_FILTER", filter);
        if let Some(endpoint) = otlp {
            let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            std::env::set_var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces);
            // Every request, unless the operator chose a rate (0.0 to 1.0): the subgraphs
            // follow the router's decision, so one variable samples the whole system.
            if std::env::var_os("TELEMETRY_TRACING_SAMPLING_RATE").is_none() {
                std::env::set_var("TELEMETRY_TRACING_SAMPLING_RATE", "1");
            }
        }
    }
}
