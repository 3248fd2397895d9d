//! Demo catalog for a fresh development stack: a few real-looking dispenser models.
//! Seeding is idempotent: fixed ids, and rows that exist are left alone (so stock that
//! changed since is not reset).

use chrono::Utc;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::storage::{self, ProductRow};

/// (id, name, description, monthly fee in won, stock)
const DEMO_PRODUCTS: [(&str, &str, &str, i32, i32); 5] = [
    (
        "0192f1a4-0000-7000-8000-000000000001",
        "AquaPure Mini 2",
        "Countertop purifier, cold and room-temperature water, 1.8 L tank.",
        19_900,
        12,
    ),
    (
        "0192f1a4-0000-7000-8000-000000000002",
        "AquaPure Hot & Cold 5",
        "Hot, cold and purified water with a child lock, 5-stage filter.",
        29_900,
        8,
    ),
    (
        "0192f1a4-0000-7000-8000-000000000003",
        "IceFlow Pro",
        "Purifier with an ice maker: up to 1.2 kg of ice a day.",
        44_900,
        5,
    ),
    (
        "0192f1a4-0000-7000-8000-000000000004",
        "SlimLine Direct-Flow",
        "Tankless direct-flow purifier, 14 cm wide, fits any kitchen.",
        24_900,
        15,
    ),
    (
        "0192f1a4-0000-7000-8000-000000000005",
        "Office Tower 40",
        "Floor-standing dispenser for offices, 40 L of cold water an hour.",
        54_900,
        3,
    ),
];

/// Inserts the demo products that are missing; returns how many were added.
pub async fn seed(database: &Database) -> Result<usize, ApiError> {
    let now = Utc::now();
    let rows: Vec<ProductRow> = DEMO_PRODUCTS
        .iter()
        .map(|&(id, name, description, monthly_fee, stock)| ProductRow {
            id: Uuid::parse_str(id).expect("demo ids are valid UUIDs"),
            name: name.to_owned(),
            description: description.to_owned(),
            monthly_fee,
            stock,
            created_at: now,
            updated_at: now,
        })
        .collect();
    let mut connection = database.connection().await?;
    storage::insert_missing(&mut connection, &rows).await
}
