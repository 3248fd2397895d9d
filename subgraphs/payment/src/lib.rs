//! Payment: charges and refunds. A full card number never reaches a table, a log line
//! or an event; only its last four digits do.
//!
//! `app` starts it; `graphql` is its part of the graph and `events` what it does with
//! other services' events, both thin layers over `service` (the use cases); `storage`
//! holds all SQL and `domain` the rules.

pub mod app;
pub mod domain;
pub mod events;
pub mod graphql;
pub mod service;
pub mod storage;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};

pub const SERVICE: &str = "payment";
pub const DEFAULT_PORT: u16 = 4003;
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/payment");
/// Where the migrations live, for tests that build a template database from them.
pub const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/payment");

pub use app::{Config, start};
