//! Renting, paid or not at all (N1).
//!
//! 1. Validate; fail fast if the payment breaker is open (nothing is written).
//! 2. Claim the idempotency key: a PENDING request row with a fresh rental id.
//! 3. Charge through payment, idempotent per rental id.
//! 4. Commit the rental, its `rental.accepted` event and the COMPLETED request in one
//!    transaction, only if the request is still PENDING.
//!
//! A crash or timeout between 2 and 4 leaves a PENDING request. The reconciler calls
//! off the charge of any request left PENDING for too long (payment refunds it, or
//! refuses it forever if it has not happened), and step 4 refuses to commit a request
//! the reconciler has taken. So a rental exists only with a successful charge, and a
//! charge without a rental is refunded. docs/rent.md has the sequence diagrams.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Serialize;
use subgraph_kit::events::outbox;
use subgraph_kit::{ApiError, Database, ErrorCode};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{RentRequest, RentalStatus, first_charge};
use crate::payments::{ChargeOutcome, PaymentClient};
use crate::storage::{self, RentalRow, RequestState};

pub const RENTAL_ACCEPTED: &str = "rental.accepted";
pub const RENTAL_CANCELLED: &str = "rental.cancelled";

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RentalAccepted {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub months: i32,
    pub monthly_fee: i32,
    pub delivery_address: String,
    pub payment_id: Uuid,
    pub accepted_at: chrono::DateTime<Utc>,
}

/// `rental.cancelled` v1: enough for delivery to cancel (or to record a cancelled
/// delivery if the request has not reached it yet).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RentalCancelled {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub delivery_address: String,
    pub payment_id: Uuid,
    pub cancelled_at: chrono::DateTime<Utc>,
}

/// Everything renting needs, shared by the GraphQL layer and the reconciler.
pub struct Renting {
    pub database: Database,
    pub payments: PaymentClient,
    /// A PENDING request older than this is given up on and its charge called off.
    pub reconcile_after: Duration,
}

impl Renting {
    pub async fn rent(&self, customer_id: Uuid, request: RentRequest) -> Result<RentalRow, ApiError> {
        self.payments.check_available()?;
        let mut connection = self.database.connection().await?;
        let product = storage::catalog_entry(&mut connection, request.product_id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("there is no product with id {}", request.product_id)))?;

        let (rental_id, fresh) = self.claim(&mut connection, customer_id, &request).await?;
        // Only a retry under a known key can find its rental already committed.
        if !fresh && let Some(done) = storage::find_in(&mut connection, rental_id).await? {
            return Ok(done);
        }
        drop(connection);

        let amount = first_charge(product.monthly_fee);
        let payment_id = match self.payments.charge(rental_id, customer_id, amount, &request.card).await? {
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

        let now = Utc::now();
        let rental = RentalRow {
            id: rental_id,
            customer_id,
            product_id: product.product_id,
            months: request.months,
            monthly_fee: product.monthly_fee,
            delivery_address: request.delivery_address.clone(),
            status: RentalStatus::Accepted.as_str().to_owned(),
            created_at: now,
            updated_at: now,
            payment_id,
        };
        let mut connection = self.database.connection().await?;
        connection.transaction(async |connection| commit(connection, &rental).await).await?;
        Ok(rental)
    }

    /// The rental id this request works on, and whether it is new (a key seen for the
    /// first time) rather than an earlier attempt's.
    async fn claim(
        &self,
        connection: &mut AsyncPgConnection,
        customer_id: Uuid,
        request: &RentRequest,
    ) -> Result<(Uuid, bool), ApiError> {
        let fingerprint = request.fingerprint();
        let (inserted, existing) =
            storage::claim_request(connection, customer_id, &request.idempotency_key, &fingerprint, Uuid::now_v7())
                .await?;
        if inserted {
            return Ok((existing.rental_id, true));
        }
        // A key whose earlier attempt was called off produced nothing, so it may be
        // used again, for this request whatever it is.
        if existing.state == RequestState::Abandoned {
            let fresh = Uuid::now_v7();
            if storage::restart_request(connection, customer_id, &request.idempotency_key, &fingerprint, fresh).await? {
                return Ok((fresh, true));
            }
            // Another retry restarted it first: read what it left.
            let (_, again) =
                storage::claim_request(connection, customer_id, &request.idempotency_key, &fingerprint, fresh).await?;
            return Ok((self.continue_with(again, &fingerprint)?, false));
        }
        Ok((self.continue_with(existing, &fingerprint)?, false))
    }

    /// The rental id to work on for an existing request under this key.
    fn continue_with(&self, existing: storage::RentRequestRow, fingerprint: &str) -> Result<Uuid, ApiError> {
        if existing.request_hash != fingerprint {
            return Err(ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this idempotencyKey was already used for a different rent request; use a new key for a new request",
            ));
        }
        match existing.state {
            RequestState::Pending | RequestState::Completed => Ok(existing.rental_id),
            RequestState::Voiding | RequestState::Abandoned => {
                Err(ApiError::payment_unavailable(Duration::from_secs(2)))
            }
        }
    }

    /// Calls off the charge of a request that will not complete; if payment cannot be
    /// reached the request stays VOIDING and the reconciler finishes the job.
    async fn call_off(&self, rental_id: Uuid) {
        let outcome = async {
            let mut connection = self.database.connection().await?;
            storage::set_request_state(&mut connection, rental_id, RequestState::Voiding).await?;
            self.payments.void(rental_id).await?;
            storage::set_request_state(&mut connection, rental_id, RequestState::Abandoned).await?;
            Ok::<_, ApiError>(())
        };
        if let Err(error) = outcome.await {
            tracing::warn!(%rental_id, error = %error.message, "could not call off a refused charge yet; the reconciler will");
        }
    }

    /// Finishes requests stuck before their commit, using `database` (the background
    /// pool). Returns how many it called off.
    pub async fn reconcile_once(&self, database: &Database) -> Result<usize, ApiError> {
        let cutoff = Utc::now() - chrono::Duration::from_std(self.reconcile_after).unwrap_or_default();
        let mut connection = database.connection().await?;
        let stuck = storage::unfinished_requests(&mut connection, cutoff).await?;
        let mut called_off = 0;
        for request in stuck {
            // Take it away from any late `rent` first: once VOIDING, it never commits.
            let taken = connection
                .transaction(async |connection| match storage::lock_request(connection, request.rental_id).await? {
                    Some(locked) if locked.state == RequestState::Pending => {
                        storage::set_request_state(connection, request.rental_id, RequestState::Voiding).await?;
                        Ok::<_, ApiError>(true)
                    }
                    Some(locked) => Ok(locked.state == RequestState::Voiding),
                    None => Ok(false),
                })
                .await?;
            if !taken {
                continue;
            }
            // If payment is down, the request stays VOIDING and is tried again later;
            // the others are still worked on.
            if let Err(error) = self.payments.void(request.rental_id).await {
                tracing::warn!(rental_id = %request.rental_id, error = %error.message, "calling off a charge failed; will retry");
                continue;
            }
            storage::set_request_state(&mut connection, request.rental_id, RequestState::Abandoned).await?;
            tracing::warn!(rental_id = %request.rental_id, "rent request was not completed; its charge was called off");
            called_off += 1;
        }
        Ok(called_off)
    }
}

/// Step 4: the rental, its event and the request's completion, all or nothing.
async fn commit(connection: &mut AsyncPgConnection, rental: &RentalRow) -> Result<(), ApiError> {
    // The usual case in one statement: the request was PENDING and is now COMPLETED
    // (in this transaction, so only if the rental below commits with it).
    if !storage::move_request(connection, rental.id, RequestState::Pending, RequestState::Completed).await? {
        return match storage::lock_request(connection, rental.id).await? {
            // A concurrent retry of the same request committed it first.
            Some(request) if request.state == RequestState::Completed => Ok(()),
            _ => Err(ApiError::payment_unavailable(Duration::from_secs(1)).with_message(
                "payment took too long, so the rental was not created and its charge is refunded; please try again",
            )),
        };
    }
    storage::insert(connection, rental).await?;
    let event = RentalAccepted {
        rental_id: rental.id,
        customer_id: rental.customer_id,
        product_id: rental.product_id,
        months: rental.months,
        monthly_fee: rental.monthly_fee,
        delivery_address: rental.delivery_address.clone(),
        payment_id: rental.payment_id,
        accepted_at: rental.created_at,
    };
    outbox::enqueue(connection, crate::SERVICE, RENTAL_ACCEPTED, 1, &event).await?;
    storage::project(connection, rental.id).await?;
    Ok(())
}

/// Runs the reconciler every second until `shutdown`.
pub fn spawn_reconciler(renting: Arc<Renting>, database: Database, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            if let Err(error) = renting.reconcile_once(&database).await {
                tracing::warn!(error = %error.message, "reconciling rent requests failed; will retry");
            }
        }
    });
}

/// Cancels a rental that is not yet delivered. The rental reads CANCELLED at once;
/// delivery then cancels the delivery (and payment refunds, inventory restocks), or,
/// if the delivery had completed first, refuses and the rental is reinstated.
pub async fn cancel(
    database: &Database,
    caller: &subgraph_kit::Identity,
    rental_id: Uuid,
) -> Result<RentalRow, ApiError> {
    let mut connection = database.connection().await?;
    connection
        .transaction(async |connection| {
            let mut rental = storage::lock_rental(connection, rental_id)
                .await?
                .filter(|rental| caller.may_see_customer(rental.customer_id))
                .ok_or_else(|| ApiError::not_found(format!("there is no rental with id {rental_id}")))?;
            let cancelled = rental.status()?.cancel().map_err(|refused| {
                ApiError::conflict(format!("{refused}: only a rental that is not yet delivered can be cancelled"))
            })?;
            let now = Utc::now();
            storage::set_status(connection, rental_id, cancelled, now).await?;
            rental.status = cancelled.as_str().to_owned();
            rental.updated_at = now;
            let event = RentalCancelled {
                rental_id,
                customer_id: rental.customer_id,
                product_id: rental.product_id,
                delivery_address: rental.delivery_address.clone(),
                payment_id: rental.payment_id,
                cancelled_at: now,
            };
            let event_id = outbox::enqueue(connection, crate::SERVICE, RENTAL_CANCELLED, 1, &event).await?;
            storage::record_timeline(connection, event_id, rental_id, crate::domain::TimelineKind::Cancelled, now)
                .await?;
            Ok(rental)
        })
        .await
}
