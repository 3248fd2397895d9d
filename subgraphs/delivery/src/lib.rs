//! Delivery: getting the dispenser to the customer, and its live status.
//!
//! `app` starts it; `graphql` is its part of the graph and `events` what it does with
//! other services' events, both thin layers over `service` (the use cases, and
//! `service::live`, the live status of subscriptions); `storage` holds all SQL and
//! `domain` the delivery state machine.

pub mod app;
pub mod domain;
pub mod events;
pub mod graphql;
pub mod service;
pub mod storage;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};

pub const SERVICE: &str = "delivery";
pub const DEFAULT_PORT: u16 = 4004;
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/delivery");
/// Where the migrations live, for tests that build a template database from them.
pub const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/delivery");

pub use app::{Config, start};
