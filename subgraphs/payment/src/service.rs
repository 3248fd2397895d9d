//! Payment's use cases, one transaction each: charging a rental's first month (which
//! puts the card on file and pays period 1), calling a charge off, refunding when a
//! delivery is cancelled, and following the contract (its term, due periods, its end).
//! The charge and the void are idempotent per rental: rental may retry after a timeout
//! or a crash without charging or refunding twice. A full card number is used for the
//! one authorization and its token and never stored, logged or sent on.
//!
//! - [`billing`]: charging invoices from the card on file (the collector, dunning,
//!   `payInvoice`), replacing the card, voiding an invoice.

pub mod billing;

use contracts::{DeliveryCancelled, PaymentCharged, PaymentRefunded, RentalActivated, RentalEnded, RentalPeriodDue};
use event_bus::{HandlerError, outbox};
use subgraph_kit::{ApiError, Database, ErrorCode, Tx, db};
use uuid::Uuid;

use crate::domain::network::{self, Presence};
use crate::domain::{ChargeRequest, InvoiceKind, InvoiceStatus, PaymentStatus};
use crate::storage::invoices::{self, AttemptRow, InvoiceRow};
use crate::storage::methods::{self, MethodRow};
use crate::storage::network::{Capture, NetworkCard, rent_key};
use crate::storage::payments::{self, PaymentRow};

/// Charges the rental's first month, once, and keeps the card on file (its token only)
/// for the months after. A repeated request for the same rental gets the existing
/// payment back; a request for a rental that was voided is refused.
///
/// The network's capture is written in this same transaction (the simulated network
/// shares payment's database): the charge at rent, its capture, the payment, the first
/// invoice and the card on file commit together or not at all.
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
            let now = db::now();
            let behaviour = network::behaviour_of(&request.card);
            if let Err(reason) = network::decide(behaviour, request.expiry, Presence::Customer, now) {
                return Err(ApiError::new(ErrorCode::PaymentDeclined, format!("{reason}; nothing was charged")));
            }
            let card = NetworkCard {
                token: network::new_token(),
                brand: network::brand_of(&request.card).to_owned(),
                last4: request.card.last4(),
                exp_month: request.expiry.month,
                exp_year: request.expiry.year,
                behaviour,
            };
            crate::storage::network::insert_card(tx, &card).await?;
            let key = rent_key(request.rental_id);
            let capture = Capture {
                idempotency_key: key.clone(),
                token: card.token.clone(),
                amount: request.amount.won(),
                approved: true,
                decline_reason: None,
                captured_at: now,
            };
            crate::storage::network::record_captures(tx, std::slice::from_ref(&capture)).await?;
            let row = PaymentRow {
                id: Uuid::now_v7(),
                rental_id: request.rental_id,
                customer_id: request.customer_id,
                amount: request.amount.won(),
                card_last4: card.last4.clone(),
                status: PaymentStatus::Paid,
                paid_at: now,
                refunded_at: None,
            };
            payments::insert(tx, &row).await?;
            let mut first =
                InvoiceRow::due(row.rental_id, row.customer_id, InvoiceKind::Period, Some(1), None, row.amount, now);
            first.status = InvoiceStatus::Paid;
            first.attempts = 1;
            first.next_attempt_at = None;
            first.paid_at = Some(now);
            first.payment_id = Some(row.id);
            invoices::insert_once(tx, &first).await?;
            let attempt = AttemptRow {
                invoice_id: first.id,
                attempt: 1,
                idempotency_key: key,
                token: card.token.clone(),
                started_at: now,
                outcome: Some(invoices::APPROVED.to_owned()),
                decline_reason: None,
                finished_at: Some(now),
            };
            invoices::insert_attempts(tx, std::slice::from_ref(&attempt)).await?;
            let method = MethodRow {
                rental_id: row.rental_id,
                customer_id: row.customer_id,
                token: card.token,
                brand: card.brand,
                last4: card.last4,
                exp_month: card.exp_month,
                exp_year: card.exp_year,
                updated_at: now,
            };
            methods::put(tx, &method).await?;
            let event = PaymentCharged {
                payment_id: row.id,
                rental_id: row.rental_id,
                customer_id: row.customer_id,
                amount: row.amount,
                at: row.paid_at,
            };
            outbox::enqueue(tx, &event).await?;
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

/// Refunds a payment (at the network too, and its first-month invoice with it) inside a
/// transaction that holds the rental's lock; a payment refunded already is returned as
/// it is.
async fn refund(tx: &mut Tx<'_>, mut payment: PaymentRow) -> Result<PaymentRow, ApiError> {
    let refunded = match payment.status.refund() {
        Ok(refunded) => refunded,
        Err(_) => return Ok(payment),
    };
    let now = db::now();
    payments::mark_refunded(tx, payment.id, now).await?;
    crate::storage::network::refund(tx, &rent_key(payment.rental_id), now).await?;
    if let Some(mut first) = invoices::lock_first(tx, payment.rental_id).await? {
        first.status = InvoiceStatus::Refunded;
        first.refunded_at = Some(now);
        invoices::save_all(tx, std::slice::from_ref(&first), now).await?;
    }
    payment.status = refunded;
    payment.refunded_at = Some(now);
    let event = PaymentRefunded {
        payment_id: payment.id,
        rental_id: payment.rental_id,
        customer_id: payment.customer_id,
        amount: payment.amount,
        at: now,
    };
    outbox::enqueue(tx, &event).await?;
    Ok(payment)
}

/// `rental.activated`: the term started, so the first month (paid at rent) now covers
/// a known span.
pub async fn date_first_period(tx: &mut Tx<'_>, activated: &RentalActivated) -> Result<(), HandlerError> {
    payments::lock_rental(tx, activated.rental_id).await?;
    if let Some(mut first) = invoices::lock_first(tx, activated.rental_id).await? {
        first.period_start = Some(activated.starts_at);
        first.period_end = Some(activated.first_period_ends_at);
        invoices::save_all(tx, std::slice::from_ref(&first), db::now()).await?;
    }
    Ok(())
}

/// `rental.period_due`: a period of a running contract started; it is invoiced once,
/// ever (a repeated announcement finds its invoice there), and the collector charges it
/// at once.
pub async fn invoice_period(tx: &mut Tx<'_>, due: &RentalPeriodDue) -> Result<(), HandlerError> {
    let span = Some((due.starts_at, due.ends_at));
    let invoice = InvoiceRow::due(
        due.rental_id,
        due.customer_id,
        InvoiceKind::Period,
        Some(due.period),
        span,
        due.amount,
        db::now(),
    );
    invoices::insert_once(tx, &invoice).await?;
    Ok(())
}

/// `rental.ended`: an early termination's fee is invoiced, once, and charged at once.
pub async fn invoice_termination_fee(tx: &mut Tx<'_>, ended: &RentalEnded) -> Result<(), HandlerError> {
    if ended.termination_fee > 0 {
        let fee = InvoiceRow::due(
            ended.rental_id,
            ended.customer_id,
            InvoiceKind::TerminationFee,
            None,
            None,
            ended.termination_fee,
            db::now(),
        );
        invoices::insert_once(tx, &fee).await?;
    }
    Ok(())
}
