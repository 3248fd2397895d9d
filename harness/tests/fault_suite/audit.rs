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
            months: crate::load::MONTHS,
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

/// True once nothing is in flight (outboxes and queues empty, no rent request
/// unfinished) and no contract is running: with months of seconds a running contract
/// falls due again while the audit reads.
pub async fn quiet(cluster: &ProcessCluster, rabbit: &PrivateRabbit) -> anyhow::Result<bool> {
    let rental_db = cluster.database(rental::SERVICE)?;
    let running = "SELECT count(*) AS n FROM rentals WHERE status IN ('ACTIVE', 'PAST_DUE')";
    if harness::audit::count(&rental_db, running).await? > 0 {
        return Ok(false);
    }
    let queues = rabbit.queue_depths(&cluster.namespace)?;
    harness::audit::quiet(cluster, &queues).await
}
