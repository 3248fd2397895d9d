//! All of rental's SQL, by table family: the rentals, the rent requests (idempotency
//! keys), rental's copy of the catalog, the timeline and the customers' history (the
//! read model), and the reads a rebuild of that history makes.

pub mod catalog;
pub mod extensions;
pub mod history;
pub mod rebuild;
pub mod rentals;
pub mod requests;
pub mod timeline;
