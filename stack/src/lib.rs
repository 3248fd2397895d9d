//! Starting the whole system, three ways:
//!
//! - as five OS processes, each service from its own binary, supervised (`processes`,
//!   and the `stack` binary behind `make run`);
//! - with the four subgraphs inside this process and the router as a child process
//!   (`in_process`): fastest, for the end-to-end tests and the benchmarks;
//! - isolated (`isolated`, feature `testing`): fresh databases and a broker namespace
//!   of its own, sharing nothing with any other stack;
//! - as a cluster of processes (`cluster`, feature `testing`), one or more replicas of
//!   each subgraph, optionally on a private PostgreSQL and RabbitMQ a test may crash.
//!
//! `binaries` finds the built binaries, `router_process` runs the router, `schema`
//! exports each subgraph's SDL.

pub mod binaries;
#[cfg(feature = "testing")]
pub mod cluster;
pub mod in_process;
#[cfg(feature = "testing")]
pub mod isolated;
pub mod processes;
pub mod router_process;
pub mod schema;

pub use in_process::Subgraphs;
pub use router_process::{RouterProcess, RouterSettings};
