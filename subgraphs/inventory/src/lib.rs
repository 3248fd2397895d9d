//! Inventory: the catalog of dispenser models and their stock.
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

pub const SERVICE: &str = "inventory";
pub const DEFAULT_PORT: u16 = 4001;
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/inventory");
/// Where the migrations live, for tests that build a template database from them.
pub const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/inventory");

pub use app::{Config, start};
