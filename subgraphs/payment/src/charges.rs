//! Charging a rental's first month and calling a charge off, as one transaction each.
//! Both are idempotent per rental: the rental service may retry them after a timeout
//! or a crash without charging twice or refunding twice.

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Serialize;
use subgraph_kit::events::outbox;
use subgraph_kit::{ApiError, Database, ErrorCode};
use uuid::Uuid;

use crate::domain::{Authorization, CardNumber, PaymentStatus, authorize};
use crate::storage::{self, PaymentRow};

pub const PAYMENT_CHARGED: &str = "payment.charged";
pub const PAYMENT_REFUNDED: &str = "payment.refunded";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCharged {
    pub payment_id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub amount: i32,
    pub charged_at: chrono::DateTime<Utc>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    pub payment_id: Uuid,
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub amount: i32,
    pub refunded_at: chrono::DateTime<Utc>,
}

pub struct ChargeRequest {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub amount: i32,
    pub card: CardNumber,
}

/// Charges the rental's first month, once. A repeated request for the same rental gets
/// the existing payment back; a request for a rental that was voided is refused.
pub async fn charge(database: &Database, request: ChargeRequest) -> Result<PaymentRow, ApiError> {
    if request.amount <= 0 {
        return Err(ApiError::bad_input("amount must be positive"));
    }
    let mut connection = database.connection().await?;
    connection
        .transaction(async |connection| {
            storage::lock_rental(connection, request.rental_id).await?;
            if storage::is_voided(connection, request.rental_id).await? {
                return Err(ApiError::conflict(
                    "this rental's payment was called off after an earlier failure; start a new rental",
                ));
            }
            if let Some(existing) = storage::find_by_rental(connection, request.rental_id).await? {
                let same = existing.customer_id == request.customer_id && existing.amount == request.amount;
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
                amount: request.amount,
                card_last4: request.card.last4(),
                status: PaymentStatus::Paid.as_str().to_owned(),
                paid_at: Utc::now(),
                refunded_at: None,
            };
            storage::insert(connection, &row).await?;
            let event = PaymentCharged {
                payment_id: row.id,
                rental_id: row.rental_id,
                customer_id: row.customer_id,
                amount: row.amount,
                charged_at: row.paid_at,
            };
            outbox::enqueue(connection, crate::SERVICE, PAYMENT_CHARGED, 1, &event).await?;
            Ok(row)
        })
        .await
}

/// Calls off the rental's charge: refunds it if it happened, and otherwise makes sure
/// it never will. Safe to repeat.
pub async fn void(database: &Database, rental_id: Uuid) -> Result<Option<PaymentRow>, ApiError> {
    let mut connection = database.connection().await?;
    connection
        .transaction(async |connection| {
            storage::lock_rental(connection, rental_id).await?;
            match storage::find_by_rental(connection, rental_id).await? {
                Some(payment) => Ok(Some(refund_in(connection, payment).await?)),
                None => {
                    storage::mark_voided(connection, rental_id).await?;
                    Ok(None)
                }
            }
        })
        .await
}

/// Refunds a payment inside the caller's transaction (which holds the rental's lock);
/// a payment already refunded is returned as it is.
pub async fn refund_in(connection: &mut AsyncPgConnection, mut payment: PaymentRow) -> Result<PaymentRow, ApiError> {
    if payment.status()?.refund().is_err() {
        return Ok(payment);
    }
    let now = Utc::now();
    storage::mark_refunded(connection, payment.id, now).await?;
    payment.status = PaymentStatus::Refunded.as_str().to_owned();
    payment.refunded_at = Some(now);
    let event = PaymentRefunded {
        payment_id: payment.id,
        rental_id: payment.rental_id,
        customer_id: payment.customer_id,
        amount: payment.amount,
        refunded_at: now,
    };
    outbox::enqueue(connection, crate::SERVICE, PAYMENT_REFUNDED, 1, &event).await?;
    Ok(payment)
}
