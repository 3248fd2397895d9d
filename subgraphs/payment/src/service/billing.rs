//! Charging invoices from the card on file: the collector that charges every invoice
//! when it falls due (and again on the dunning schedule), `payInvoice`, a new card that
//! retries what is past due, and an operator voiding an invoice.
//!
//! An attempt takes three steps, each of which a crash may interrupt:
//!
//! 1. **Claim** (one transaction): the invoice is locked; an attempt is recorded with the
//!    idempotency key it will use and the card it will charge, unless one is open
//!    already, which is then resumed with its own key and card. The invoice's
//!    `next_attempt_at` moves a lease ahead, so no other collector takes it meanwhile.
//! 2. **Ask the network** with that key. The network captures once per key and answers a
//!    repeated key with its first answer.
//! 3. **Record** (one transaction, under the rental's lock): if the attempt is still open,
//!    it is closed with the network's answer, the invoice is PAID or FAILED (with its next
//!    retry), and `invoice.paid` / `invoice.failed` go to the outbox.
//!
//! A crash after step 1 or 2 leaves the attempt open; when the lease runs out, any
//! collector (or a `payInvoice`) resumes it with the same key, so the network answers
//! what it answered before and nothing is charged twice. An invoice has at most one open
//! attempt (a unique index), and a new one is opened only after the last was declined, so
//! each invoice, and so each (rental, period), is charged successfully at most once.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use contracts::{InvoiceChange, InvoiceFailed, InvoicePaid, InvoiceVoided, PaymentMethodUpdated};
use event_bus::outbox;
use subgraph_kit::backoff::Outage;
use subgraph_kit::clock::Calendar;
use subgraph_kit::{ApiError, Database, Identity, Tx, db};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::network::{self, Presence};
use crate::domain::{CardNumber, DunningSchedule, Expiry, InvoiceStatus, claim_lease};
use crate::storage::invoices::{self, APPROVED, AttemptRow, DECLINED, InvoiceRow};
use crate::storage::methods::{self, MethodRow};
use crate::storage::network::{self as ledger, Capture, NetworkCard};
use crate::storage::payments;

/// Invoices one collector round charges at most.
const ROUND: i64 = 200;

/// `water_invoice_attempts_total{service, outcome}`: attempts recorded (`approved`,
/// `declined`).
static ATTEMPTS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    subgraph_kit::metrics::counter(
        "water_invoice_attempts_total",
        "Attempts to charge an invoice from the card on file, by outcome.",
        &["service", "outcome"],
    )
});

/// Everything charging needs: the database, the clock, the dunning schedule.
pub struct Billing {
    pub database: Database,
    pub calendar: Calendar,
    pub schedule: DunningSchedule,
}

/// An invoice taken for an attempt: which attempt, with which key and card.
#[derive(Debug, Clone)]
struct Claim {
    invoice_id: Uuid,
    rental_id: Uuid,
    attempt: i32,
    key: String,
    token: String,
    amount: i32,
}

impl Billing {
    /// Charges up to one round of the invoices due now; returns how many it attempted.
    pub async fn collect_due(&self, database: &Database) -> Result<usize, ApiError> {
        let now = db::now();
        let lease = claim_lease(&self.calendar);
        let claims = database
            .transaction(async |tx: &mut Tx<'_>| {
                let due = invoices::lock_due(tx, now, ROUND).await?;
                claim(tx, due, now, now + lease).await
            })
            .await?;
        self.finish(database, &claims).await?;
        Ok(claims.len())
    }

    /// Charges one invoice now, whatever its schedule (`payInvoice`, a new card): the
    /// invoice as it is afterwards. An attempt already under way is finished, not doubled.
    pub async fn collect_one(&self, invoice_id: Uuid) -> Result<InvoiceRow, ApiError> {
        let now = db::now();
        let lease = claim_lease(&self.calendar);
        let claims = self
            .database
            .transaction(async |tx: &mut Tx<'_>| {
                let invoice = invoices::lock(tx, invoice_id).await?.ok_or_else(|| no_such_invoice(invoice_id))?;
                if !invoice.status.may_be_charged() {
                    return Ok(Vec::new());
                }
                claim(tx, vec![invoice], now, now + lease).await
            })
            .await?;
        self.finish(&self.database, &claims).await?;
        let mut connection = self.database.connection().await?;
        invoices::find(&mut connection, invoice_id).await?.ok_or_else(|| no_such_invoice(invoice_id))
    }

    /// Steps 2 and 3 for `claims`.
    async fn finish(&self, database: &Database, claims: &[Claim]) -> Result<(), ApiError> {
        if claims.is_empty() {
            return Ok(());
        }
        let answers = ask_network(database, claims).await?;
        database.transaction(async |tx: &mut Tx<'_>| record(tx, self, claims, &answers).await).await
    }

    /// `updatePaymentMethod`: puts a new card on file for the rental (its customer only)
    /// and retries at once every invoice of the rental that is past due and still being
    /// retried. Returns the card as it is on file.
    pub async fn replace_card(
        &self,
        caller: &Identity,
        rental_id: Uuid,
        card: CardNumber,
        expiry: Expiry,
    ) -> Result<MethodRow, ApiError> {
        let now = db::now();
        let (method, retrying) = self
            .database
            .transaction(async |tx: &mut Tx<'_>| {
                payments::lock_rental(tx, rental_id).await?;
                let current = methods::lock(tx, rental_id)
                    .await?
                    .filter(|method| caller.customer_id() == Some(method.customer_id))
                    .ok_or_else(|| no_such_rental(rental_id))?;
                let new_card = NetworkCard {
                    token: network::new_token(),
                    brand: network::brand_of(&card).to_owned(),
                    last4: card.last4(),
                    exp_month: expiry.month,
                    exp_year: expiry.year,
                    behaviour: network::behaviour_of(&card),
                };
                ledger::insert_card(tx, &new_card).await?;
                let method = MethodRow {
                    token: new_card.token,
                    brand: new_card.brand,
                    last4: new_card.last4,
                    exp_month: new_card.exp_month,
                    exp_year: new_card.exp_year,
                    updated_at: now,
                    ..current
                };
                let change_id = methods::put(tx, &method).await?;
                let updated = PaymentMethodUpdated {
                    change_id,
                    rental_id,
                    customer_id: method.customer_id,
                    brand: method.brand.clone(),
                    last4: method.last4.clone(),
                    at: now,
                };
                outbox::enqueue(tx, &updated).await?;
                let retrying = invoices::retrying(tx, rental_id).await?;
                Ok::<_, ApiError>((method, retrying))
            })
            .await?;
        // The new card is on file: that is this request's answer, whatever the retries
        // do. A decline is the invoice's news (invoice.failed); a retry that cannot run
        // now (the database going away) is left to the collector, which finds the
        // invoice due.
        for invoice_id in retrying {
            if let Err(error) = self.collect_one(invoice_id).await {
                tracing::warn!(%invoice_id, error = %error.message, "a past-due invoice could not be retried with the new card yet");
            }
        }
        Ok(method)
    }

    /// `voidInvoice` (operators): writes off an invoice that is not paid; it is never
    /// charged afterwards. Voiding a void invoice returns it as it is.
    pub async fn void(&self, invoice_id: Uuid) -> Result<InvoiceRow, ApiError> {
        let rental_id = {
            let mut connection = self.database.connection().await?;
            invoices::find(&mut connection, invoice_id).await?.ok_or_else(|| no_such_invoice(invoice_id))?.rental_id
        };
        self.database
            .transaction(async |tx: &mut Tx<'_>| {
                payments::lock_rental(tx, rental_id).await?;
                let mut invoice = invoices::lock(tx, invoice_id).await?.ok_or_else(|| no_such_invoice(invoice_id))?;
                if invoice.status == InvoiceStatus::Void {
                    return Ok(invoice);
                }
                invoice.status = invoice.status.void()?;
                if !invoices::open_attempts(tx, &[invoice_id]).await?.is_empty() {
                    return Err(ApiError::conflict(
                        "this invoice is being charged right now, so it cannot be voided; try again in a few seconds",
                    )
                    .retry_after(5));
                }
                let now = db::now();
                invoice.voided_at = Some(now);
                invoice.next_attempt_at = None;
                invoices::save_all(tx, std::slice::from_ref(&invoice), now).await?;
                let change = account_changes(tx, &[(&invoice, 0)], now).await?.remove(0);
                outbox::enqueue(tx, &InvoiceVoided(change)).await?;
                Ok(invoice)
            })
            .await
    }
}

/// Step 1 for `due` (locked): resumes each one's open attempt, or opens the next.
async fn claim(
    tx: &mut Tx<'_>,
    mut due: Vec<InvoiceRow>,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<Vec<Claim>, ApiError> {
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = due.iter().map(|invoice| invoice.id).collect();
    let open: HashMap<Uuid, AttemptRow> =
        invoices::open_attempts(tx, &ids).await?.into_iter().map(|attempt| (attempt.invoice_id, attempt)).collect();
    let rentals: Vec<Uuid> = due.iter().map(|invoice| invoice.rental_id).collect();
    let cards: HashMap<Uuid, String> =
        methods::of_rentals(tx, &rentals).await?.into_iter().map(|method| (method.rental_id, method.token)).collect();
    let mut claims = Vec::with_capacity(due.len());
    let mut opened = Vec::new();
    for invoice in &mut due {
        let (attempt, key, token) = match open.get(&invoice.id) {
            Some(attempt) => (attempt.attempt, attempt.idempotency_key.clone(), attempt.token.clone()),
            None => {
                invoice.attempts += 1;
                let key = format!("invoice:{}:{}", invoice.id, invoice.attempts);
                // A rental without a card on file is charged to no card: the network
                // declines it, and the invoice follows the dunning schedule.
                let token = cards.get(&invoice.rental_id).cloned().unwrap_or_else(|| NO_CARD.to_owned());
                opened.push(AttemptRow {
                    invoice_id: invoice.id,
                    attempt: invoice.attempts,
                    idempotency_key: key.clone(),
                    token: token.clone(),
                    started_at: now,
                    outcome: None,
                    decline_reason: None,
                    finished_at: None,
                });
                (invoice.attempts, key, token)
            }
        };
        invoice.next_attempt_at = Some(lease_until);
        claims.push(Claim {
            invoice_id: invoice.id,
            rental_id: invoice.rental_id,
            attempt,
            key,
            token,
            amount: invoice.amount,
        });
    }
    invoices::insert_attempts(tx, &opened).await?;
    invoices::save_all(tx, &due, now).await?;
    Ok(claims)
}

/// The token of "no card": the network knows no such card.
const NO_CARD: &str = "none";

/// Step 2: the network's answer to each claim, by key (in a transaction of its own, as
/// with a real processor).
async fn ask_network(database: &Database, claims: &[Claim]) -> Result<HashMap<String, Capture>, ApiError> {
    let now = db::now();
    let mut connection = database.connection().await?;
    let tokens: Vec<String> = claims.iter().map(|claim| claim.token.clone()).collect();
    let cards: HashMap<String, NetworkCard> =
        ledger::cards(&mut connection, &tokens).await?.into_iter().map(|card| (card.token.clone(), card)).collect();
    let mut answers = HashMap::new();
    let mut decided = Vec::new();
    for claim in claims {
        let Some(card) = cards.get(&claim.token) else {
            answers.insert(
                claim.key.clone(),
                Capture {
                    idempotency_key: claim.key.clone(),
                    token: claim.token.clone(),
                    amount: claim.amount,
                    approved: false,
                    decline_reason: Some("there is no card on file for this rental".into()),
                    captured_at: now,
                },
            );
            continue;
        };
        let decision = network::decide(card.behaviour, card.expiry(), Presence::OnFile, now);
        decided.push(Capture {
            idempotency_key: claim.key.clone(),
            token: claim.token.clone(),
            amount: claim.amount,
            approved: decision.is_ok(),
            decline_reason: decision.err(),
            captured_at: now,
        });
    }
    for capture in ledger::record_captures(&mut connection, &decided).await? {
        answers.insert(capture.idempotency_key.clone(), capture);
    }
    Ok(answers)
}

/// Step 3: closes each claim's attempt that is still open with the network's answer.
async fn record(
    tx: &mut Tx<'_>,
    billing: &Billing,
    claims: &[Claim],
    answers: &HashMap<String, Capture>,
) -> Result<(), ApiError> {
    let now = db::now();
    let rentals: Vec<Uuid> = claims.iter().map(|claim| claim.rental_id).collect();
    payments::lock_rentals(tx, &rentals).await?;
    let ids: Vec<Uuid> = claims.iter().map(|claim| claim.invoice_id).collect();
    let mut locked: HashMap<Uuid, InvoiceRow> =
        invoices::lock_many(tx, &ids).await?.into_iter().map(|invoice| (invoice.id, invoice)).collect();
    let open: HashMap<Uuid, i32> = invoices::open_attempts(tx, &ids)
        .await?
        .into_iter()
        .map(|attempt| (attempt.invoice_id, attempt.attempt))
        .collect();
    let mut closed = Vec::new();
    let mut changed: Vec<(InvoiceRow, Result<(), String>)> = Vec::new();
    for claim in claims {
        // Another collector (after the lease) or a payInvoice finished it first.
        if open.get(&claim.invoice_id) != Some(&claim.attempt) {
            continue;
        }
        let (Some(answer), Some(mut invoice)) = (answers.get(&claim.key), locked.remove(&claim.invoice_id)) else {
            continue;
        };
        if answer.approved {
            closed.push((claim.invoice_id, claim.attempt, APPROVED, None));
            invoice.status = InvoiceStatus::Paid;
            // When payment recorded it paid (the capture's own time is the network's).
            invoice.paid_at = Some(now);
            invoice.next_attempt_at = None;
            invoice.failure_reason = None;
            changed.push((invoice, Ok(())));
        } else {
            let reason = answer.decline_reason.clone().unwrap_or_else(|| "the card was declined".into());
            closed.push((claim.invoice_id, claim.attempt, DECLINED, Some(reason.clone())));
            let first_failed = *invoice.first_failed_at.get_or_insert(now);
            invoice.status = InvoiceStatus::Failed;
            invoice.failure_reason = Some(reason.clone());
            invoice.next_attempt_at = billing.schedule.next_attempt(&billing.calendar, first_failed, now);
            changed.push((invoice, Err(reason)));
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    invoices::close_attempts(tx, &closed, now).await?;
    let rows: Vec<InvoiceRow> = changed.iter().map(|(invoice, _)| invoice.clone()).collect();
    invoices::save_all(tx, &rows, now).await?;
    let with_attempts: Vec<(&InvoiceRow, i32)> = rows.iter().map(|invoice| (invoice, invoice.attempts)).collect();
    let changes = account_changes(tx, &with_attempts, now).await?;
    let mut paid = Vec::new();
    let mut failed = Vec::new();
    for ((invoice, outcome), change) in changed.into_iter().zip(changes) {
        match outcome {
            Ok(()) => {
                ATTEMPTS.with_label_values(&[crate::SERVICE, "approved"]).inc();
                paid.push(InvoicePaid(change));
            }
            Err(reason) => {
                ATTEMPTS.with_label_values(&[crate::SERVICE, "declined"]).inc();
                failed.push(InvoiceFailed {
                    change,
                    reason,
                    next_attempt_at: invoice.next_attempt_at,
                    final_attempt: invoice.next_attempt_at.is_none(),
                });
            }
        }
    }
    outbox::enqueue_all(tx, &paid).await?;
    outbox::enqueue_all(tx, &failed).await?;
    Ok(())
}

/// What the invoice events say about `invoices` (with the attempt each change was):
/// the rental's outstanding count after the change and the change's place in the
/// rental's account history. Call with the rentals locked and the changes written.
async fn account_changes(
    tx: &mut Tx<'_>,
    invoices: &[(&InvoiceRow, i32)],
    now: DateTime<Utc>,
) -> Result<Vec<InvoiceChange>, ApiError> {
    let rentals: Vec<Uuid> = invoices.iter().map(|(invoice, _)| invoice.rental_id).collect();
    let outstanding = invoices::outstanding(tx, &rentals).await?;
    let seqs = invoices::next_seqs(tx, invoices.len()).await?;
    Ok(invoices
        .iter()
        .zip(seqs)
        .map(|((invoice, attempt), seq)| InvoiceChange {
            invoice_id: invoice.id,
            rental_id: invoice.rental_id,
            customer_id: invoice.customer_id,
            kind: invoice.kind,
            period: invoice.period,
            amount: invoice.amount,
            attempt: *attempt,
            outstanding: outstanding.get(&invoice.rental_id).copied().unwrap_or(0),
            seq,
            at: now,
        })
        .collect())
}

fn no_such_invoice(id: Uuid) -> ApiError {
    ApiError::not_found(format!("there is no invoice with id {id}"))
}

fn no_such_rental(id: Uuid) -> ApiError {
    ApiError::not_found(format!("there is no rental with id {id}"))
}

/// Runs the collector until `stopping`: every tick of the clock, the invoices that are
/// due are charged, a round at a time while there are more. While the database is out
/// of reach it waits, and says so once per outage.
pub async fn collect_until(billing: Arc<Billing>, database: Database, stopping: CancellationToken) {
    let mut outage = Outage::new("payment collector: the database");
    let mut tick = tokio::time::interval(billing.calendar.tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stopping.cancelled() => return,
        }
        loop {
            match billing.collect_due(&database).await {
                Ok(attempted) => {
                    outage.recovered();
                    if (attempted as i64) < ROUND || stopping.is_cancelled() {
                        break;
                    }
                }
                Err(error) => {
                    outage.failed(&error.message);
                    break;
                }
            }
        }
    }
}
