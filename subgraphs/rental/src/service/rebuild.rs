//! Rebuilding the customers' history (the read model) from the services' own records:
//! rentals here, payments and invoices in payment's database, deliveries and visits in
//! delivery's, units back in stock in inventory's.
//! Events keep it current; this recomputes it from scratch, e.g. after a bug in a
//! projection, and the fault suite compares the two.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use subgraph_kit::{ApiError, Database, Tx};
use uuid::Uuid;

use crate::domain::TimelineKind;
use crate::storage::history::{self, HistoryProjection};
use crate::storage::timeline::Step;
use crate::storage::{rebuild, timeline};

/// Replaces every timeline and history row with what the records say. Returns how many
/// rentals it projected.
pub async fn rebuild(
    rental: &Database,
    payment: &Database,
    delivery: &Database,
    inventory: &Database,
) -> Result<usize, ApiError> {
    let rental = &rental.clone().with_projection(Arc::new(HistoryProjection));
    let mut steps = rebuild::payment_steps(payment).await?;
    steps.extend(rebuild::delivery_steps(delivery).await?);
    steps.extend(rebuild::rental_steps(rental).await?);
    let rental_of: HashMap<Uuid, Uuid> = rebuild::delivery_rentals(delivery).await?.into_iter().collect();
    for (delivery_id, at) in rebuild::collected_units(inventory).await? {
        if let Some(rental_id) = rental_of.get(&delivery_id) {
            steps.push(Step::once(*rental_id, TimelineKind::Returned, at));
        }
    }
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
