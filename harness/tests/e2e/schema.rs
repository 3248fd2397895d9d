//! The committed schema files are exactly what the code produces, and they compose.

use std::path::Path;
use std::process::Command;

const SCHEMA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema");

#[tokio::test]
async fn committed_subgraph_schemas_match_the_code() {
    for (name, sdl) in stack::schema::subgraph_sdls() {
        let path = Path::new(SCHEMA_DIR).join(format!("{name}.graphql"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(committed == sdl, "{} differs from the {name} subgraph's code: run `make schema`", path.display());
    }
}

#[test]
fn the_committed_supergraph_is_the_composition_of_the_subgraphs() {
    let script = Path::new(SCHEMA_DIR).join("compose/compose.mjs");
    assert!(
        Path::new(SCHEMA_DIR).join("compose/node_modules").exists(),
        "the composition tool is not installed: run `npm ci --prefix schema/compose`"
    );
    let output = Command::new("node").arg(&script).arg(SCHEMA_DIR).arg("--check").output().expect("node runs");
    assert!(
        output.status.success(),
        "composition failed or supergraph.graphql is stale (run `make schema`):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The router's manifest of trusted documents is exactly the README's tour.
#[test]
fn the_committed_trusted_documents_are_the_readmes_tour() {
    let expected = stack::trusted_documents::manifest_from_readme().expect("the README has documents");
    let committed = std::fs::read_to_string(stack::trusted_documents::MANIFEST_FILE).unwrap_or_default();
    assert!(
        committed == expected,
        "router/trusted-documents.json differs from the README: run `make trusted-documents`"
    );
}
