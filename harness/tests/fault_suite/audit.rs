//! The invariant audit after a run has settled (`harness::audit`, shared with the
//! operations tests), fed with this run's queues and what its clients were told.

use harness::audit::RentTold;
use harness::cluster::{PrivateRabbit, ProcessCluster};

use crate::load::Record;

pub use harness::audit::Audit;

pub async fn audit(cluster: &ProcessCluster, rabbit: &PrivateRabbit, record: &Record) -> anyhow::Result<Audit> {
    let queues = rabbit.queue_depths(&cluster.namespace)?;
    let rents: Vec<RentTold> = record
        .rents
        .iter()
        .map(|rent| RentTold {
            customer: rent.customer,
            product: rent.product,
            key: rent.key.clone(),
            card: rent.card.to_owned(),
            answer: rent.answer.clone(),
            rental_id: rent.rental_id.clone(),
        })
        .collect();
    let mut audited = harness::audit::audit(cluster, &queues, &rents, &record.restocked).await?;
    // Broken promises the clients saw themselves come first, as they happened.
    let mut violations = record.violations.clone();
    violations.append(&mut audited.violations);
    audited.violations = violations;
    Ok(audited)
}

/// True once nothing is in flight: outboxes and queues empty, no rent request
/// unfinished.
pub async fn quiet(cluster: &ProcessCluster, rabbit: &PrivateRabbit) -> anyhow::Result<bool> {
    let queues = rabbit.queue_depths(&cluster.namespace)?;
    harness::audit::quiet(cluster, &queues).await
}
