//! All of payment's SQL: charges and refunds (`payments`), and charges called off
//! before they happened (`voided_rentals`).

pub mod payments;
