//! Each subgraph's SDL as its code defines it: the source of `schema/*.graphql`.

use async_graphql::SDLExportOptions;
use subgraph_kit::server::Wiring;

/// (subgraph name, federation SDL) for every subgraph. Needs a Tokio runtime (the
/// schemas hold batch loaders) but no database.
pub fn subgraph_sdls() -> Vec<(&'static str, String)> {
    let options = || SDLExportOptions::new().federation();
    vec![
        (inventory::SERVICE, inventory::schema(&Wiring::detached(inventory::SERVICE)).sdl_with_options(options())),
        (rental::SERVICE, rental::schema(&Wiring::detached(rental::SERVICE)).sdl_with_options(options())),
        (payment::SERVICE, payment::schema(&Wiring::detached(payment::SERVICE)).sdl_with_options(options())),
        (delivery::SERVICE, delivery::schema(&Wiring::detached(delivery::SERVICE)).sdl_with_options(options())),
    ]
}
