//! Starting the whole system, three ways:
//!
//! - as five OS processes, each service from its own binary, supervised (`processes`,
//!   and the `stack` binary behind `make run`);
//! - with the four subgraphs inside this process and the router as a child process
//!   (`in_process`): fastest, for the end-to-end tests and the benchmarks;
//! - isolated (`isolated`, feature `testing`): fresh databases and a broker namespace
//!   of its own, sharing nothing with any other stack;
//! - as a cluster of processes (`cluster`, feature `testing`), one or more replicas of
//!   each subgraph, optionally on a private PostgreSQL and RabbitMQ a test may crash,
//!   optionally behind HAProxy (`balancer`) as behind a Kubernetes Service.
//!
//! `audit` checks every invariant across the four databases and the queues once a
//! cluster has settled; `workload` is the steady load of the operations tests and the
//! rolling-restart benchmark (rents, reads, live subscribers that resubscribe).
//! `live_clients` (feature `testing`) subscribes like a client does.
//! `binaries` finds the built binaries, `router_process` runs the router, `schema`
//! exports each subgraph's SDL.

#[cfg(feature = "testing")]
pub mod audit;
#[cfg(feature = "testing")]
pub mod balancer;
pub mod binaries;
#[cfg(feature = "testing")]
pub mod cluster;
pub mod in_process;
#[cfg(feature = "testing")]
pub mod isolated;
#[cfg(feature = "testing")]
pub mod live_clients;
pub mod processes;
pub mod router_process;
pub mod schema;
#[cfg(feature = "testing")]
pub mod workload;

pub use in_process::Subgraphs;
pub use router_process::{RouterProcess, RouterSettings};
