//! Each subgraph's SDL as its code defines it: the source of `schema/*.graphql`.

use async_graphql::SDLExportOptions;
use subgraph_kit::Database;

/// (subgraph name, federation SDL) for every subgraph. Needs a Tokio runtime (the
/// schemas hold batch loaders) but no database.
pub fn subgraph_sdls() -> Vec<(&'static str, String)> {
    let options = || SDLExportOptions::new().federation();
    let database = Database::unconnected;
    vec![
        (inventory::SERVICE, inventory::schema(database()).sdl_with_options(options())),
        (rental::SERVICE, rental::schema(database()).sdl_with_options(options())),
        (payment::SERVICE, payment::schema(database()).sdl_with_options(options())),
        (delivery::SERVICE, delivery::schema(database()).sdl_with_options(options())),
    ]
}
