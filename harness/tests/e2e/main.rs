//! The end-to-end tests: each starts a whole stack of its own (fresh databases cloned
//! from migrated templates, a broker namespace of its own, the four subgraphs, a real
//! router process) and talks to it over real HTTP, WebSocket and SSE.

mod support;

mod bad_input;
mod batching;
mod billing;
mod cancel;
mod contract;
mod faults;
mod federation;
mod graphiql;
mod history;
mod lifecycle;
mod live;
mod payment_tls;
mod rate_limits;
mod rent;
mod schema;
mod security;
mod trusted_documents;
mod visits;
