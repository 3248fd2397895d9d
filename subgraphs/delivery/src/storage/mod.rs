//! All of delivery's SQL: the deliveries, one per rental.

pub mod deliveries;
