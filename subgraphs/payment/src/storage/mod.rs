//! All of payment's SQL: first charges and refunds (`payments`, `voided_rentals`), the
//! cards on file (`methods`), invoices and their attempts (`invoices`), and the simulated
//! card network's own ledger (`network`).

pub mod invoices;
pub mod methods;
pub mod network;
pub mod payments;
