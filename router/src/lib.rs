//! Starting the whole system: the four subgraphs in this process and the router as a
//! child process. The `stack` binary uses it to run everything on a developer machine;
//! the end-to-end tests use it to start an isolated stack per test.

#[cfg(feature = "testing")]
pub mod isolated;
pub mod router_process;
pub mod schema;
pub mod subgraphs;

pub use router_process::{RouterProcess, RouterSettings};
pub use subgraphs::Subgraphs;
