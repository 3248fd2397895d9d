//! Router plugin `trusted_documents`: which operations the router runs, as the manifest
//! of our clients' documents says (`router/trusted-documents.json`, generated from the
//! README's tour by `make trusted-documents`). Three modes (`ROUTER_TRUSTED_DOCUMENTS`):
//!
//! - `refuse` (the production overlay): a document that is not in the manifest is
//!   refused with `DOCUMENT_NOT_TRUSTED` and HTTP 403, before any subgraph is called. An
//!   attacker holding a token can then run only what our apps run, not a query of their
//!   own making (deep, wide, or probing the schema).
//! - `log` (the default, development and compose): every document runs, and each one
//!   outside the manifest is logged once (a warning with its id and operation name,
//!   never its text, which may hold a card number), so the manifest can be completed
//!   before `refuse` is turned on.
//! - `off`: nothing is checked.
//!
//! A client sends a trusted document by id (`documentId`, or Apollo's
//! `extensions.persistedQuery.sha256Hash`: hive-router's `persisted_documents` reads the
//! same manifest and puts the text in), or as its exact text. Either way this plugin sees
//! the text at the end of `on_graphql_params` and looks up its SHA-256, so a text that
//! differs by a space is not the trusted one. An id the manifest does not have is
//! hive-router's `PERSISTED_DOCUMENT_NOT_FOUND`.
//!
//! In `refuse` mode an `operationName` must also name an operation of the document: the
//! router labels its metrics with it (`graphql_operation_name`) before it parses the
//! document, so this keeps that label to the manifest's operation names (a bounded set,
//! whatever a client sends).
//!
//! The manifest is read once, at start: a new one rolls the router (in Kubernetes its
//! config map carries a content hash). The router refuses to start on a manifest whose
//! ids are not the SHA-256 of their texts.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use hive_router::{
    GraphQLError,
    config::persisted_documents::PersistedDocumentsStorageConfig,
    graphql_tools::parser::query::{Definition, OperationDefinition, parse_query},
    http::StatusCode,
    plugins::{
        hooks::{
            on_graphql_params::{OnGraphQLParamsStartHookPayload, OnGraphQLParamsStartHookResult},
            on_plugin_init::{OnPluginInitPayload, OnPluginInitResult},
        },
        plugin_trait::{EndHookPayload, RouterPlugin, StartHookPayload},
    },
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The code of a refused document; docs/errors.md.
pub const NOT_TRUSTED: &str = "DOCUMENT_NOT_TRUSTED";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Off,
    Log,
    Refuse,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct TrustedDocumentsConfig {
    pub mode: Mode,
}

/// Past this many, unknown documents are no longer remembered as logged (and may be
/// logged again): a client sending endless variants cannot grow the router's memory.
const REMEMBER_LOGGED: usize = 10_000;

pub struct TrustedDocuments {
    mode: Mode,
    /// The manifest's documents by id (SHA-256, hex), each with its operations' names.
    trusted: HashMap<String, HashSet<String>>,
    /// The unknown documents already logged, in `log` mode.
    logged: Mutex<HashSet<String>>,
}

#[hive_router::async_trait]
impl RouterPlugin for TrustedDocuments {
    /// The key under `plugins:` in router.config.yaml.
    fn plugin_name() -> &'static str {
        "trusted_documents"
    }

    type Config = TrustedDocumentsConfig;

    fn on_plugin_init(payload: OnPluginInitPayload<Self>) -> OnPluginInitResult<Self> {
        let config = payload.config()?;
        let trusted = if config.mode == Mode::Off {
            HashMap::new()
        } else {
            // The manifest is the one hive-router resolves ids from: one file, one truth.
            let path = match &payload.router_config().persisted_documents.storage {
                Some(PersistedDocumentsStorageConfig::File { config }) => config.path.absolute.clone(),
                _ => {
                    return Err(
                        "trusted_documents needs persisted_documents.storage to be a file (the manifest)".into()
                    );
                }
            };
            let text =
                std::fs::read_to_string(&path).map_err(|error| format!("the trusted documents {path}: {error}"))?;
            trusted_ids(&text).map_err(|error| format!("the trusted documents {path}: {error}"))?
        };
        tracing::info!(mode = ?config.mode, documents = trusted.len(), "trusted documents");
        payload.initialize_plugin(TrustedDocuments { mode: config.mode, trusted, logged: Mutex::default() })
    }

    async fn on_graphql_params<'exec>(
        &'exec self,
        payload: OnGraphQLParamsStartHookPayload<'exec>,
    ) -> OnGraphQLParamsStartHookResult<'exec> {
        if self.mode == Mode::Off {
            return payload.proceed();
        }
        // The text is known at the end: parsed from the body, or resolved from an id.
        payload.on_end(move |end| {
            // No text at all is the router's own MISSING_QUERY_PARAM, next.
            let Some(text) = end.graphql_params.query.as_deref() else { return end.proceed() };
            let id = document_id(text);
            let operation_name = end.graphql_params.operation_name.as_deref();
            match self.trusted.get(&id) {
                Some(names) if operation_name.is_none_or(|name| names.contains(name)) => return end.proceed(),
                Some(_) if self.mode == Mode::Refuse => {
                    return end.end_with_graphql_error(no_such_operation(&id), StatusCode::FORBIDDEN);
                }
                // In `log` mode the router's own "unknown operation" error follows.
                Some(_) => return end.proceed(),
                None => {}
            }
            match self.mode {
                Mode::Refuse => end.end_with_graphql_error(not_trusted(&id), StatusCode::FORBIDDEN),
                Mode::Log | Mode::Off => {
                    self.log_once(&id, end.graphql_params.operation_name.as_deref());
                    end.proceed()
                }
            }
        })
    }
}

impl TrustedDocuments {
    fn log_once(&self, id: &str, operation_name: Option<&str>) {
        let mut logged = self.logged.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if logged.len() >= REMEMBER_LOGGED {
            logged.clear();
        }
        if logged.insert(id.to_owned()) {
            tracing::warn!(
                document_id = id,
                operation_name = operation_name.unwrap_or(""),
                "a document outside the trusted documents ran; with ROUTER_TRUSTED_DOCUMENTS=refuse it would be refused"
            );
        }
    }
}

fn not_trusted(id: &str) -> GraphQLError {
    GraphQLError::from_message_and_code(
        format!(
            "this router runs only its trusted documents, and this one (sha256 {id}) is not one of them: \
             send a document of the manifest by its documentId, or its exact text"
        ),
        NOT_TRUSTED,
    )
}

fn no_such_operation(id: &str) -> GraphQLError {
    GraphQLError::from_message_and_code(
        format!(
            "the operationName is not an operation of the trusted document {id}: send one of its operations' names, or none"
        ),
        NOT_TRUSTED,
    )
}

/// A document's id: the SHA-256 of its exact text, in lowercase hex.
fn document_id(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The documents of a manifest (a JSON object from id to text), each id checked against
/// its text, each with the names of its operations.
fn trusted_ids(manifest: &str) -> Result<HashMap<String, HashSet<String>>, String> {
    let entries: HashMap<String, String> = serde_json::from_str(manifest)
        .map_err(|error| format!("not a JSON object from document id to text: {error}"))?;
    if entries.is_empty() {
        return Err("no documents: every operation would be refused".into());
    }
    let mut documents = HashMap::new();
    for (id, text) in entries {
        if document_id(&text) != id {
            return Err(format!("the id {id} is not the SHA-256 of its text (make trusted-documents writes it)"));
        }
        let document =
            parse_query::<&str>(&text).map_err(|error| format!("the document {id} does not parse: {error}"))?;
        let names = document
            .definitions
            .iter()
            .filter_map(|definition| match definition {
                Definition::Operation(OperationDefinition::Query(query)) => query.name,
                Definition::Operation(OperationDefinition::Mutation(mutation)) => mutation.name,
                Definition::Operation(OperationDefinition::Subscription(subscription)) => subscription.name,
                Definition::Operation(OperationDefinition::SelectionSet(_)) | Definition::Fragment(_) => None,
            })
            .map(str::to_owned)
            .collect();
        documents.insert(id, names);
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_whose_ids_match_their_texts_is_read() {
        let text = "query Catalog { products { totalCount } }";
        let manifest = serde_json::json!({ document_id(text): text }).to_string();
        let names = HashSet::from(["Catalog".to_owned()]);
        assert_eq!(trusted_ids(&manifest), Ok(HashMap::from([(document_id(text), names)])));
    }

    #[test]
    fn a_tampered_empty_or_malformed_manifest_is_refused() {
        let tampered = serde_json::json!({ document_id("{ a }"): "{ b }" }).to_string();
        assert!(trusted_ids(&tampered).unwrap_err().contains("is not the SHA-256 of its text"));
        assert!(trusted_ids("{}").unwrap_err().contains("no documents"));
        assert!(trusted_ids("[]").unwrap_err().contains("not a JSON object"));
        let broken = serde_json::json!({ document_id("query {"): "query {" }).to_string();
        assert!(trusted_ids(&broken).unwrap_err().contains("does not parse"));
    }

    #[test]
    fn the_refusal_names_the_document_by_its_id_only() {
        let error = not_trusted(&document_id("{ secret }"));
        let json = serde_json::to_string(&error).expect("serializes");
        assert!(json.contains(NOT_TRUSTED) && json.contains(&document_id("{ secret }")), "{json}");
        assert!(!json.contains("secret }"), "{json}");
    }
}
