//! All of delivery's SQL: the deliveries (one per rental), and the visits with their
//! plans.

pub mod deliveries;
pub mod visits;
