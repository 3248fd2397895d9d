//! All of inventory's SQL: the catalog (`products`) and what shipments did to stock
//! (`shipments`, `stock_shortages`, `stock_movements`).

pub mod products;
pub mod shipments;
