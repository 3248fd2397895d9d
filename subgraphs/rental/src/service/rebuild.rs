//! Rebuilding the customers' history (the read model) from the services' own records:
//! rentals here, payments and invoices in payment's database, deliveries in delivery's.
//! Events keep it current; this recomputes it from scratch, e.g. after a bug in a
//! projection, and the fault suite compares the two.

use std::collections::HashSet;
use std::sync::Arc;

use subgraph_kit::{ApiError, Database, Tx};
use uuid::Uuid;

use crate::storage::history::{self, HistoryProjection};
use crate::storage::{rebuild, timeline};

/// Replaces every timeline and history row with what the records say. Returns how many
/// rentals it projected.
pub async fn rebuild(rental: &Database, payment: &Database, delivery: &Database) -> Result<usize, ApiError> {
    let rental = &rental.clone().with_projection(Arc::new(HistoryProjection));
    let mut steps = rebuild::payment_steps(payment).await?;
    steps.extend(rebuild::delivery_steps(delivery).await?);
    steps.extend(rebuild::rental_steps(rental).await?);
    let rentals: HashSet<Uuid> = rebuild::rental_ids(rental).await?.into_iter().collect();
    rental
        .transaction(async |tx: &mut Tx<'_>| {
            timeline::delete_all(tx).await?;
            history::delete_all(tx).await?;
            for step in steps.iter().filter(|step| rentals.contains(&step.rental_id)) {
                timeline::record(tx, Uuid::now_v7(), step).await?;
            }
            // Every rental is projected at commit, those without any step too.
            for rental_id in &rentals {
                tx.touch(*rental_id);
            }
            Ok::<_, ApiError>(rentals.len())
        })
        .await
}
