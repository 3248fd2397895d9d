//! Renting, paid or not at all (N1).
//!
//! 1. Validate; fail fast if the payment breaker is open (nothing is written).
//! 2. Claim the idempotency key: a PENDING request row with a fresh rental id.
//! 3. Charge through payment, idempotent per rental id.
//! 4. Commit the rental, its `rental.accepted` event, its history row and the
//!    COMPLETED request in one transaction, only if the request is still PENDING.
//!
//! A crash or timeout between 2 and 4 leaves a PENDING request. The reconciler calls
//! off the charge of any request left PENDING for too long (payment refunds it, or
//! refuses it for ever if it has not happened), and step 4 refuses to commit a request
//! the reconciler has taken. So a rental exists only with a successful charge, and a
//! charge without a rental is refunded.
//!
//! A rent that committed is answered as committed: if the database goes away around
//! the commit, the answer is looked up before giving up, and a client that still gets
//! an error is told to retry with the same key (which returns the rental, or completes
//! it). docs/rent.md has the sequence diagrams.

use std::sync::LazyLock;
use std::time::Duration;

use contracts::RentalAccepted;
use event_bus::outbox;
use subgraph_kit::backoff::Outage;
use subgraph_kit::db;
use subgraph_kit::{ApiError, Database, ErrorCode, Tx};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::payments::{ChargeOutcome, PaymentClient};
use crate::SERVICE;
use crate::domain::{RentRequest, RequestState, first_charge};
use crate::storage::catalog;
use crate::storage::rentals::{self, RentalRow};
use crate::storage::requests::{self, RentRequestRow};

/// `water_reconciler_actions_total{service, action}`: what the reconciler did with
/// unfinished rent requests (`called_off`, `failed`).
static RECONCILER_ACTIONS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    subgraph_kit::metrics::counter(
        "water_reconciler_actions_total",
        "What the rent reconciler did with unfinished rent requests.",
        &["service", "action"],
    )
});

/// How often the reconciler looks for unfinished requests.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// Everything renting needs, shared by the GraphQL layer and the reconciler.
pub struct Renting {
    pub database: Database,
    pub payments: PaymentClient,
    /// A request untouched for this long is given up on and its charge called off.
    pub reconcile_after: Duration,
}

impl Renting {
    pub async fn rent(&self, customer_id: Uuid, request: RentRequest) -> Result<RentalRow, ApiError> {
        self.payments.check_available()?;
        let (product, rental_id) = {
            let mut connection = self.database.connection().await?;
            let product = catalog::entry(&mut connection, request.product_id)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("there is no product with id {}", request.product_id)))?;
            let (rental_id, fresh) = self.claim(&mut connection, customer_id, &request).await?;
            // Only a retry under a known key can find its rental already committed.
            if !fresh && let Some(done) = rentals::find(&mut connection, rental_id).await? {
                return Ok(done);
            }
            (product, rental_id)
        };

        let amount = first_charge(product.monthly_fee);
        let payment_id =
            match self.payments.charge(rental_id, customer_id, amount, &request.card, request.card_expiry).await? {
                ChargeOutcome::Charged { payment_id } => payment_id,
                ChargeOutcome::Refused(error) => {
                    // Nothing was charged for this attempt. Another attempt under the same
                    // key could still be on its way to payment, so the request is not simply
                    // forgotten: its charge is called off for good (refunded if that other
                    // attempt got through), and the key is free for a fresh try.
                    self.call_off(rental_id).await;
                    return Err(error);
                }
            };

        let rental = RentalRow::accepted(
            rental_id,
            customer_id,
            product.product_id,
            request.months.get(),
            product.monthly_fee,
            request.delivery_address.as_str().to_owned(),
            payment_id,
            db::now(),
        );
        match self.database.transaction(async |tx: &mut Tx<'_>| commit(tx, &rental).await).await {
            Ok(()) => Ok(rental),
            // The database went away around the commit, which may or may not have
            // happened: look before answering.
            Err(error) if error.code == ErrorCode::ServiceUnavailable => match self.committed(rental_id).await {
                Some(committed) => Ok(committed),
                None => Err(ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "the rental could not be confirmed because the database did not answer; retry with the same \
                     idempotencyKey: you will not be charged twice, and you get the rental if it was created",
                )
                .retry_after(2)),
            },
            Err(error) => Err(error),
        }
    }

    /// The committed rental, if the database can say so within a few seconds.
    async fn committed(&self, rental_id: Uuid) -> Option<RentalRow> {
        for _ in 0..6 {
            if let Ok(mut connection) = self.database.connection().await {
                match rentals::find(&mut connection, rental_id).await {
                    Ok(found) => return found,
                    Err(error) => tracing::debug!(%rental_id, %error, "could not look up the rental yet"),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    }

    /// The rental id this request works on, and whether it is new (a key seen for the
    /// first time) rather than an earlier attempt's.
    async fn claim(
        &self,
        connection: &mut diesel_async::AsyncPgConnection,
        customer_id: Uuid,
        request: &RentRequest,
    ) -> Result<(Uuid, bool), ApiError> {
        let fingerprint = request.fingerprint();
        let key = request.idempotency_key.as_str();
        let (inserted, existing) = requests::claim(connection, customer_id, key, &fingerprint, Uuid::now_v7()).await?;
        if inserted {
            return Ok((existing.rental_id, true));
        }
        // A key whose earlier attempt was called off produced nothing, so it may be
        // used again, for this request whatever it is.
        if existing.state == RequestState::Abandoned {
            let fresh = Uuid::now_v7();
            if requests::restart(connection, customer_id, key, &fingerprint, fresh).await? {
                return Ok((fresh, true));
            }
            // Another retry restarted it first: read what it left.
            let (_, again) = requests::claim(connection, customer_id, key, &fingerprint, fresh).await?;
            return Ok((continue_with(again, &fingerprint)?, false));
        }
        Ok((continue_with(existing, &fingerprint)?, false))
    }

    /// Calls off the charge of a request that will not complete; if payment cannot be
    /// reached the request stays VOIDING and the reconciler finishes the job.
    async fn call_off(&self, rental_id: Uuid) {
        let outcome = async {
            let mut connection = self.database.connection().await?;
            requests::set_state(&mut connection, rental_id, RequestState::Voiding).await?;
            self.payments.void(rental_id).await?;
            requests::set_state(&mut connection, rental_id, RequestState::Abandoned).await?;
            Ok::<_, ApiError>(())
        };
        if let Err(error) = outcome.await {
            tracing::warn!(%rental_id, error = %error.message, "could not call off a refused charge yet; the reconciler will");
        }
    }

    /// Finishes requests stuck before their commit, using `database` (the background
    /// pool). Returns how many it called off; stops at the first failure to reach
    /// payment (the rest wait for the next round).
    pub async fn reconcile_once(&self, database: &Database) -> Result<usize, ApiError> {
        let cutoff = db::now() - chrono::Duration::from_std(self.reconcile_after).unwrap_or_default();
        let stuck = {
            let mut connection = database.connection().await?;
            requests::unfinished(&mut connection, cutoff).await?
        };
        let mut called_off = 0;
        for request in stuck {
            // Take it away from any late `rent` first: once VOIDING, it never commits.
            let taken = database
                .transaction(async |tx: &mut Tx<'_>| match requests::lock(tx, request.rental_id).await? {
                    Some(locked) if locked.state == RequestState::Pending => {
                        requests::set_state(tx, request.rental_id, RequestState::Voiding).await?;
                        Ok::<_, ApiError>(true)
                    }
                    Some(locked) => Ok(locked.state == RequestState::Voiding),
                    None => Ok(false),
                })
                .await?;
            if !taken {
                continue;
            }
            if let Err(error) = self.payments.void(request.rental_id).await {
                RECONCILER_ACTIONS.with_label_values(&[SERVICE, "failed"]).inc();
                return Err(error);
            }
            let mut connection = database.connection().await?;
            requests::set_state(&mut connection, request.rental_id, RequestState::Abandoned).await?;
            RECONCILER_ACTIONS.with_label_values(&[SERVICE, "called_off"]).inc();
            tracing::warn!(rental_id = %request.rental_id, "a rent request never completed: its charge was called off");
            called_off += 1;
        }
        Ok(called_off)
    }
}

/// The rental id to work on for an existing request under this key.
fn continue_with(existing: RentRequestRow, fingerprint: &str) -> Result<Uuid, ApiError> {
    if existing.request_hash != fingerprint {
        return Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this idempotencyKey was already used for a different rent request; use a new key for a new request",
        ));
    }
    match existing.state {
        RequestState::Pending | RequestState::Completed => Ok(existing.rental_id),
        RequestState::Voiding | RequestState::Abandoned => Err(ApiError::payment_unavailable(Duration::from_secs(2))),
    }
}

/// Step 4: the rental, its event, its history row and the request's completion, all or
/// nothing.
async fn commit(tx: &mut Tx<'_>, rental: &RentalRow) -> Result<(), ApiError> {
    // The usual case in one statement: the request was PENDING and is now COMPLETED
    // (in this transaction, so only if the rental below commits with it).
    if !requests::change_state(tx, rental.id, RequestState::Pending, RequestState::Completed).await? {
        return match requests::lock(tx, rental.id).await? {
            // A concurrent retry of the same request committed it first.
            Some(request) if request.state == RequestState::Completed => Ok(()),
            _ => Err(ApiError::payment_unavailable(Duration::from_secs(1)).with_message(
                "payment took too long, so the rental was not created and its charge is refunded; please try again",
            )),
        };
    }
    rentals::insert(tx, rental).await?;
    let event = RentalAccepted {
        rental_id: rental.id,
        customer_id: rental.customer_id,
        product_id: rental.product_id,
        months: rental.months,
        monthly_fee: rental.monthly_fee,
        delivery_address: rental.delivery_address.clone(),
        payment_id: rental.payment_id,
        at: rental.created_at,
    };
    outbox::enqueue(tx, &event).await?;
    Ok(())
}

/// Runs the reconciler until `stopping`. While the database or payment is out of
/// reach it waits, and says so once per outage.
pub async fn reconcile_until(renting: std::sync::Arc<Renting>, database: Database, stopping: CancellationToken) {
    let mut outage = Outage::new("rental reconciler: the database or payment");
    let mut tick = tokio::time::interval(RECONCILE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stopping.cancelled() => return,
        }
        match renting.reconcile_once(&database).await {
            Ok(_) => outage.recovered(),
            Err(error) => outage.failed(&error.message),
        }
    }
}
