//! The trusted documents: the GraphQL operations our clients send, in a manifest the
//! router reads (`router/trusted-documents.json`, `plugins.trusted_documents` and
//! `persisted_documents` in router.config.yaml). Each entry maps a document's id, the
//! SHA-256 of its exact text in lowercase hex, to that text; a client sends either
//! (`documentId`, or Apollo's `extensions.persistedQuery.sha256Hash`, or the text).
//!
//! The manifest is generated, never edited by hand: from every `graphql` block of the
//! README's tour, which is what our customer app and operator console send
//! (`make trusted-documents`). The end-to-end test `schema.rs` fails while the committed
//! manifest differs from what the README gives.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The committed manifest.
pub const MANIFEST_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../router/trusted-documents.json");
/// Where the documents come from.
pub const README_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");

/// A document's id: the SHA-256 of its exact text, in lowercase hex.
pub fn document_id(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The text of every ```graphql block of `markdown`, without the block's last newline.
pub fn graphql_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_end() == "```graphql" => current = Some(Vec::new()),
            None => {}
            Some(lines) if line.trim_end() == "```" => {
                blocks.push(lines.join("\n"));
                current = None;
            }
            Some(lines) => lines.push(line),
        }
    }
    blocks
}

/// The manifest of `documents`, as the router reads it: a JSON object from id to text,
/// sorted by id, one entry per distinct document.
pub fn manifest(documents: &[String]) -> String {
    let entries: BTreeMap<String, &str> = documents.iter().map(|text| (document_id(text), text.as_str())).collect();
    let mut json = serde_json::to_string_pretty(&entries).expect("a map of strings serializes");
    json.push('\n');
    json
}

/// The manifest the README gives today.
pub fn manifest_from_readme() -> anyhow::Result<String> {
    let readme = std::fs::read_to_string(README_FILE)?;
    let documents = graphql_blocks(&readme);
    anyhow::ensure!(!documents.is_empty(), "{README_FILE} has no ```graphql block");
    Ok(manifest(&documents))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_the_sha256_of_the_exact_text() {
        assert_eq!(document_id(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_ne!(document_id("{ a }"), document_id("{ a }\n"));
    }

    #[test]
    fn only_graphql_blocks_are_documents() {
        let markdown = "text\n```graphql\nquery A {\n  a\n}\n```\n```json\n{}\n```\n```graphql\n{ b }\n```\n";
        assert_eq!(graphql_blocks(markdown), ["query A {\n  a\n}", "{ b }"]);
        let manifest: serde_json::Value = serde_json::from_str(&manifest(&graphql_blocks(markdown))).unwrap();
        assert_eq!(manifest[document_id("{ b }")], "{ b }");
        assert_eq!(manifest.as_object().unwrap().len(), 2);
    }
}
