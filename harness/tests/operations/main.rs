//! Operating the system as production runs it: each subgraph replica its own OS
//! process, HAProxy in front of the replicas as a Kubernetes Service would be, the
//! router pointed at it (docs/operations.md).
//!
//! - `drain`: one replica under SIGTERM reports not ready at once, keeps serving for
//!   its drain window, finishes the request in flight, completes its live
//!   subscriptions (directly and through the router) and exits 0.
//! - `replicas`: two replicas of every subgraph under a small load stay correct (the
//!   invariant audit finds nothing), and both delivery replicas serve subscriptions;
//!   then every replica of every service restarted one after the other under the same
//!   load: no failed request, no status a live subscriber missed, nothing done twice.
//! - `tls_on_the_wire`: a PostgreSQL that takes the services' roles only over TLS and a
//!   RabbitMQ serving AMQPS; a plain connection and a certificate of another CA are
//!   refused; a whole cluster with `POSTGRES_CA_FILE` and `AMQP_CA_FILE` rents, every one
//!   of its connections encrypted.
//!
//! The tests run one at a time: each starts a whole cluster, and this machine has two
//! cores.

mod drain;
mod replicas;
mod support;
mod tls_on_the_wire;
