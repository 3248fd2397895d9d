//! Writes each subgraph's SDL, exported from the code, to `schema/<subgraph>.graphql`.
//! `make schema` runs this and then composes `schema/supergraph.graphql`.
//!
//!     target/debug/export-schema [DIR]     (default: schema/; built by `make bins`)

use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../schema")));
    std::fs::create_dir_all(&dir)?;
    for (name, sdl) in stack::schema::subgraph_sdls() {
        let path = dir.join(format!("{name}.graphql"));
        std::fs::write(&path, sdl)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
