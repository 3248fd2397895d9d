//! Payment's use cases, one transaction each: charging a rental's first month, calling
//! a charge off, and refunding when a delivery is cancelled. All are idempotent per
//! rental: rental may retry after a timeout or a crash without charging or refunding
//! twice. A full card number is used for the one authorization and never stored,
//! logged or sent on: only its last four digits are kept.

use contracts::{DeliveryCancelled, PaymentCharged, PaymentRefunded};
use event_bus::{HandlerError, outbox};
use subgraph_kit::db;
use subgraph_kit::domain::TextEnum;
use subgraph_kit::{ApiError, Database, ErrorCode, Tx};
use uuid::Uuid;

use crate::SERVICE;
use crate::domain::{Authorization, ChargeRequest, PaymentStatus, authorize};
use crate::storage::payments::{self, PaymentRow};

/// Charges the rental's first month, once. A repeated request for the same rental gets
/// the existing payment back; a request for a rental that was voided is refused.
pub async fn charge(database: &Database, request: ChargeRequest) -> Result<PaymentRow, ApiError> {
    database
        .transaction(async |tx: &mut Tx<'_>| {
            payments::lock_rental(tx, request.rental_id).await?;
            if payments::is_voided(tx, request.rental_id).await? {
                return Err(ApiError::conflict(
                    "this rental's payment was called off after an earlier failure; start a new rental",
                ));
            }
            if let Some(existing) = payments::find_by_rental(tx, request.rental_id).await? {
                let same = existing.customer_id == request.customer_id && existing.amount == request.amount.won();
                return if same {
                    Ok(existing)
                } else {
                    Err(ApiError::conflict("this rental was already charged with different details"))
                };
            }
            // The simulated network answers at once; a real one would be called outside
            // this transaction, with the attempt recorded first.
            if authorize(&request.card) == Authorization::Declined {
                return Err(ApiError::new(ErrorCode::PaymentDeclined, "the card was declined; nothing was charged"));
            }
            let row = PaymentRow {
                id: Uuid::now_v7(),
                rental_id: request.rental_id,
                customer_id: request.customer_id,
                amount: request.amount.won(),
                card_last4: request.card.last4(),
                status: PaymentStatus::Paid.as_str().to_owned(),
                paid_at: db::now(),
                refunded_at: None,
            };
            payments::insert(tx, &row).await?;
            let event = PaymentCharged {
                payment_id: row.id,
                rental_id: row.rental_id,
                customer_id: row.customer_id,
                amount: row.amount,
                at: row.paid_at,
            };
            outbox::enqueue(tx, SERVICE, &event).await?;
            Ok(row)
        })
        .await
}

/// Calls off the rental's charge: refunds it if it happened, and otherwise makes sure
/// it never will. Safe to repeat.
pub async fn void(database: &Database, rental_id: Uuid) -> Result<Option<PaymentRow>, ApiError> {
    database
        .transaction(async |tx: &mut Tx<'_>| {
            payments::lock_rental(tx, rental_id).await?;
            match payments::find_by_rental(tx, rental_id).await? {
                Some(payment) => Ok(Some(refund(tx, payment).await?)),
                None => {
                    payments::mark_voided(tx, rental_id).await?;
                    Ok(None)
                }
            }
        })
        .await
}

/// `delivery.cancelled`: the rental was called off before delivery, so its charge is
/// refunded.
pub async fn refund_cancelled_delivery(tx: &mut Tx<'_>, cancelled: &DeliveryCancelled) -> Result<(), HandlerError> {
    payments::lock_rental(tx, cancelled.rental_id).await?;
    match payments::find_by_rental(tx, cancelled.rental_id).await? {
        Some(payment) => {
            refund(tx, payment).await?;
        }
        // A rental exists only after its charge, so this cannot happen; if it does,
        // make sure no charge ever follows.
        None => payments::mark_voided(tx, cancelled.rental_id).await?,
    }
    Ok(())
}

/// Refunds a payment inside a transaction that holds the rental's lock; a payment
/// refunded already is returned as it is.
async fn refund(tx: &mut Tx<'_>, mut payment: PaymentRow) -> Result<PaymentRow, ApiError> {
    let refunded = match payment.status()?.refund() {
        Ok(refunded) => refunded,
        Err(_) => return Ok(payment),
    };
    let now = db::now();
    payments::mark_refunded(tx, payment.id, now).await?;
    payment.status = refunded.as_str().to_owned();
    payment.refunded_at = Some(now);
    let event = PaymentRefunded {
        payment_id: payment.id,
        rental_id: payment.rental_id,
        customer_id: payment.customer_id,
        amount: payment.amount,
        at: now,
    };
    outbox::enqueue(tx, SERVICE, &event).await?;
    Ok(payment)
}
