//! What the tests and the benchmarks stand on, in one place:
//!
//! - `in_process`: the four subgraphs inside this process (the router stays a child
//!   process): the fastest way to a whole stack;
//! - `isolated`: such a stack sharing nothing with any other (fresh databases cloned
//!   from migrated templates, a broker namespace of its own);
//! - `cluster`: one or more replicas of each subgraph as processes, optionally on a
//!   private PostgreSQL and RabbitMQ a test may crash, optionally behind HAProxy
//!   (`balancer`) as behind a Kubernetes Service;
//! - `live_clients`: subscribing like a client does (graphql-transport-ws, SSE);
//! - `workload`: the one load generator (customers, operators, live watchers) of the
//!   fault suite, the operations tests and the rolling-restart benchmark;
//! - `settle`: waiting until a cluster is quiet;
//! - `audit`: every invariant of docs/reliability.md, one function each.

pub mod audit;
pub mod balancer;
pub mod cluster;
pub mod in_process;
pub mod isolated;
pub mod live_clients;
pub mod tls;
pub mod workload;

pub use in_process::Subgraphs;
