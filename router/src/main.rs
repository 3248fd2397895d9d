//! The federation router: hive-router with our plugins (one module each). The
//! configuration lives in `router/router.config.yaml`.

// ntex builds its middleware stack out of deeply nested types; the default limit of
// 128 is not enough for the release build ("queries overflow the depth limit!").
#![recursion_limit = "512"]

mod auth_errors;

// `#[hive_router::main]` expands to `ntex::…` paths, so the name must be in scope.
use hive_router::ntex;
use hive_router::{
    PluginRegistry, RouterGlobalAllocator, configure_global_allocator, error::RouterInitError,
    init_rustls_crypto_provider, router_entrypoint,
};

configure_global_allocator!();

#[hive_router::main]
async fn main() -> Result<(), RouterInitError> {
    init_rustls_crypto_provider();
    // A plugin runs only if it is both registered here and enabled under `plugins:` in
    // router.config.yaml; enabling one that is not registered stops the router at startup.
    let plugins = PluginRegistry::new().register::<auth_errors::AuthErrors>();
    router_entrypoint(plugins).await
}
