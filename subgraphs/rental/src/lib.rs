//! Rental: the rentals themselves and, for customers, their history.
//!
//! `app` starts it; `graphql` is its part of the graph and `events` what it does with
//! other services' events, both thin layers over `service` (the use cases: renting
//! and its reconciler, the payment client, cancelling, the history); `storage` holds
//! all SQL and `domain` the rules.

pub mod app;
pub mod domain;
pub mod events;
pub mod graphql;
pub mod service;
pub mod storage;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};

pub const SERVICE: &str = "rental";
pub const DEFAULT_PORT: u16 = 4002;
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/rental");
/// Where the migrations live, for tests that build a template database from them.
pub const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/rental");

pub use app::{Config, start};
