//! Each subgraph's SDL as its code defines it: the source of `schema/*.graphql`.

use async_graphql::SDLExportOptions;

/// (subgraph name, federation SDL) for every subgraph. Needs a Tokio runtime (the
/// schemas hold pools) but no database.
pub fn subgraph_sdls() -> Vec<(&'static str, String)> {
    let options = || SDLExportOptions::new().federation();
    vec![
        (inventory::SERVICE, inventory::app::detached_schema().sdl_with_options(options())),
        (rental::SERVICE, rental::app::detached_schema().sdl_with_options(options())),
        (payment::SERVICE, payment::app::detached_schema().sdl_with_options(options())),
        (delivery::SERVICE, delivery::app::detached_schema().sdl_with_options(options())),
    ]
}
