//! Starting the whole system as five OS processes, each service from its own binary,
//! supervised (`processes`, and the `stack` binary behind `make run`), each with
//! accounts of its own (`accounts`). `binaries` finds
//! the built binaries, `router_process` runs the router, `schema` exports each
//! subgraph's SDL, `trusted_documents` writes the router's manifest of client operations. What tests and benchmarks need on top (isolated stacks, clusters, the
//! workload, the audit) is the `harness` crate.

pub mod accounts;
pub mod binaries;
pub mod identities;
pub mod processes;
pub mod router_process;
pub mod schema;
pub mod trusted_documents;

pub use identities::Identities;
pub use router_process::{RouterProcess, RouterSettings, relaxed_rate_limits};
