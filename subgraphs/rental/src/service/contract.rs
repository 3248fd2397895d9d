//! The contract after delivery, as rental owns it: its clock (announcing each period as
//! it starts, completing a term that has run out), extension, early termination, and
//! what the account's events (payment's invoices) change.
//!
//! Rental owns the schedule because the term is the contract's: when it started, how
//! long it runs, whether it has ended. A period is announced as due (`rental.period_due`)
//! in the same transaction that moves the rental's schedule on, under the rental's row
//! lock, and only while the rental runs; ending a rental takes the same lock. So a period
//! that starts after the end is never announced, and payment, which owns the money,
//! charges each announced period once (docs/billing.md, "Who owns the schedule").

use chrono::{DateTime, Utc};
use contracts::{
    EndReason, InvoiceFailed, InvoiceKind, InvoicePaid, InvoiceVoided, PaymentMethodUpdated, RentalEnded,
    RentalExtended, RentalPeriodDue,
};
use event_bus::{EventMeta, HandlerError, outbox};
use subgraph_kit::backoff::Outage;
use subgraph_kit::clock::Calendar;
use subgraph_kit::{ApiError, Database, ErrorCode, Identity, Tx, db};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{locked, visible_locked};
use crate::domain::{MAX_TERM_MONTHS, Months, RentalStatus, Step, Term, TimelineKind};
use crate::storage::extensions::{self, ExtensionRow};
use crate::storage::rentals::{self, RentalRow};
use crate::storage::timeline::{self, Step as TimelineStep};

/// Rentals one round of the contract clock moves on at most.
const ROUND: i64 = 500;

/// `extendRental`: lengthens a running contract in good standing by `months` (1-60) at
/// the same fee (its customer only). Billing goes on into the new months.
pub async fn extend(
    database: &Database,
    calendar: &Calendar,
    caller: &Identity,
    rental_id: Uuid,
    months: Months,
) -> Result<RentalRow, ApiError> {
    if caller.customer_id().is_none() {
        return Err(ApiError::forbidden("only the rental's customer may extend it"));
    }
    database
        .transaction(async |tx: &mut Tx<'_>| {
            let mut rental = visible_locked(tx, caller, rental_id).await?;
            rental.status.extend().map_err(|refused| {
                ApiError::conflict(format!("{refused}: only an active rental (delivered, paid up) can be extended"))
            })?;
            let now = db::now();
            let term = running_term(&rental, calendar, now, "extended")?;
            let total = rental.months + months.get();
            if total > MAX_TERM_MONTHS {
                return Err(ApiError::bad_input(format!(
                    "a contract runs at most {MAX_TERM_MONTHS} months; this one has {} already",
                    rental.months
                )));
            }
            let longer = Term { months: total, ..term };
            rental.months = total;
            rental.term_ends_at = Some(longer.ends_at(calendar));
            if rental.next_period_at.is_none() {
                rental.next_period_at = longer.start_of(calendar, rental.next_period);
            }
            rental.updated_at = now;
            rentals::save(tx, &rental).await?;
            let extension = ExtensionRow {
                id: Uuid::now_v7(),
                rental_id,
                added_months: months.get(),
                months_after: total,
                at: now,
            };
            extensions::insert(tx, &extension).await?;
            let event = RentalExtended {
                rental_id,
                customer_id: rental.customer_id,
                product_id: rental.product_id,
                delivery_address: rental.delivery_address.clone(),
                care_interval_months: super::care_interval(tx, rental.product_id).await?,
                months: total,
                added_months: months.get(),
                starts_at: longer.starts_at,
                ends_at: longer.ends_at(calendar),
                at: now,
            };
            let event_id = outbox::enqueue(tx, &event).await?;
            let step =
                TimelineStep::repeated(rental_id, TimelineKind::Extended, format!("extension:{}", extension.id), now);
            timeline::record(tx, event_id, &step).await?;
            Ok(rental)
        })
        .await
}

/// `terminateRental`: ends a running contract before its term is over (its customer or
/// an operator). The termination fee is charged at once from the card on file, later
/// periods are never charged, and the unit is picked up. Terminating a terminated rental
/// returns it as it is.
pub async fn terminate(
    database: &Database,
    calendar: &Calendar,
    caller: &Identity,
    rental_id: Uuid,
) -> Result<RentalRow, ApiError> {
    let reason = match caller {
        Identity::Customer { .. } => EndReason::TerminatedByCustomer,
        Identity::Operator { .. } => EndReason::TerminatedByOperator,
        Identity::Service { .. } => {
            return Err(ApiError::forbidden("only a rental's customer or an operator may end it"));
        }
    };
    database
        .transaction(async |tx: &mut Tx<'_>| {
            let mut rental = visible_locked(tx, caller, rental_id).await?;
            let step = rental.status.terminate().map_err(|refused| {
                let hint = match rental.status {
                    RentalStatus::Accepted => {
                        " (before delivery, cancel it with cancelRental: the first month is refunded)"
                    }
                    _ => "",
                };
                ApiError::conflict(format!("{refused}{hint}"))
            })?;
            let Step::MovesTo(terminated) = step else { return Ok(rental) };
            let now = db::now();
            let term = running_term(&rental, calendar, now, "terminated")?;
            let fee = term.termination_fee(calendar, rental.monthly_fee, now);
            end(tx, calendar, &mut rental, terminated, reason, fee, now).await?;
            Ok(rental)
        })
        .await
}

/// The term of a rental that runs, if it is not over at `now`.
fn running_term(rental: &RentalRow, calendar: &Calendar, now: DateTime<Utc>, action: &str) -> Result<Term, ApiError> {
    let term =
        rental.term().ok_or_else(|| ApiError::conflict(format!("the rental cannot be {action} before delivery")))?;
    if now >= term.ends_at(calendar) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("the rental's term is over, so it cannot be {action}; it completes once its last month is paid"),
        ));
    }
    Ok(term)
}

/// Ends a delivered rental at `at`: a period that started before then is announced if
/// the clock has not done it yet (it looks once a tick, and the end can fall between a
/// period's start and that tick), later periods never are, `rental.ended` asks for the
/// pickup (and the fee, if any), and the timeline says so.
async fn end(
    tx: &mut Tx<'_>,
    calendar: &Calendar,
    rental: &mut RentalRow,
    status: RentalStatus,
    reason: EndReason,
    termination_fee: i32,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let mut started = Vec::new();
    if let Some(term) = rental.term() {
        while rental.next_period_at.is_some_and(|starts| starts <= at) {
            started.push(announce_next_period(rental, &term, calendar, at));
        }
    }
    outbox::enqueue_all(tx, &started).await?;
    rental.status = status;
    rental.end_reason = Some(reason);
    rental.ended_at = Some(at);
    rental.termination_fee = (termination_fee > 0).then_some(termination_fee);
    rental.next_period_at = None;
    rental.updated_at = db::now();
    rentals::save(tx, rental).await?;
    let ended = RentalEnded {
        rental_id: rental.id,
        customer_id: rental.customer_id,
        product_id: rental.product_id,
        delivery_address: rental.delivery_address.clone(),
        reason,
        termination_fee,
        at,
    };
    let event_id = outbox::enqueue(tx, &ended).await?;
    let kind = if reason == EndReason::Completed { TimelineKind::Completed } else { TimelineKind::Terminated };
    timeline::record(tx, event_id, &TimelineStep::once(rental.id, kind, at)).await?;
    timeline::record(tx, event_id, &TimelineStep::once(rental.id, TimelineKind::PickupRequested, at)).await?;
    Ok(())
}

/// One round of the contract clock at `now`: announces the periods that have started
/// (one per rental per round; a rental that missed several catches up round by round),
/// then completes the terms that are over. Returns how many rentals moved on.
pub async fn tick(database: &Database, calendar: &Calendar, now: DateTime<Utc>) -> Result<usize, ApiError> {
    let announced = database
        .transaction(async |tx: &mut Tx<'_>| {
            let mut due = rentals::lock_with_period_due(tx, now, ROUND).await?;
            let mut events = Vec::with_capacity(due.len());
            for rental in &mut due {
                let Some(term) = rental.term() else { continue };
                events.push(announce_next_period(rental, &term, calendar, now));
            }
            rentals::save_all(tx, &due).await?;
            outbox::enqueue_all(tx, &events).await?;
            Ok::<_, ApiError>(events.len())
        })
        .await?;
    let completed = database
        .transaction(async |tx: &mut Tx<'_>| {
            let over = rentals::lock_with_term_over(tx, now, ROUND).await?;
            let count = over.len();
            for mut rental in over {
                // It ends when its last month ends, whenever the clock notices.
                let ended_at = rental.term_ends_at.unwrap_or(now);
                end(tx, calendar, &mut rental, RentalStatus::Completed, EndReason::Completed, 0, ended_at).await?;
            }
            Ok::<_, ApiError>(count)
        })
        .await?;
    Ok(announced + completed)
}

/// `rental.period_due` for the rental's next period, its schedule moved on to the one
/// after (none once the term has no more).
fn announce_next_period(
    rental: &mut RentalRow,
    term: &Term,
    calendar: &Calendar,
    now: DateTime<Utc>,
) -> RentalPeriodDue {
    let period = rental.next_period;
    rental.next_period = period + 1;
    rental.next_period_at = term.start_of(calendar, period + 1);
    rental.updated_at = now;
    RentalPeriodDue {
        rental_id: rental.id,
        customer_id: rental.customer_id,
        period,
        starts_at: term.period_start(calendar, period),
        ends_at: term.period_start(calendar, period + 1).min(term.ends_at(calendar)),
        amount: rental.monthly_fee,
        at: now,
    }
}

/// Runs the contract clock until `stopping`, every tick of the clock and again at once
/// while a round was full. While the database is out of reach it waits, and says so
/// once per outage.
pub async fn run_clock_until(database: Database, calendar: Calendar, stopping: CancellationToken) {
    let mut outage = Outage::new("rental contract clock: the database");
    let mut tick_every = tokio::time::interval(calendar.tick());
    tick_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick_every.tick() => {}
            () = stopping.cancelled() => return,
        }
        loop {
            match tick(&database, &calendar, db::now()).await {
                Ok(moved) => {
                    outage.recovered();
                    if (moved as i64) < ROUND || stopping.is_cancelled() {
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

/// `invoice.paid`: a month (or the fee) was charged; a past-due rental whose account is
/// clear runs again.
pub async fn invoice_paid(tx: &mut Tx<'_>, meta: EventMeta, paid: &InvoicePaid) -> Result<(), HandlerError> {
    let mut rental = locked(tx, paid.rental_id, "invoice paid").await?;
    let step = TimelineStep::of_invoice(paid.rental_id, TimelineKind::Charged, paid.invoice_id, paid.period, paid.at);
    timeline::record(tx, meta.id, &step).await?;
    if paid.kind == InvoiceKind::Period {
        rental.periods_paid += 1;
    }
    follow_account(&mut rental, paid.seq, paid.outstanding);
    rentals::save(tx, &rental).await?;
    Ok(())
}

/// `invoice.failed`: a charge was declined. The rental is past due while any invoice is;
/// when the last automatic attempt of a month fails, the rental ends for non-payment.
pub async fn invoice_failed(
    tx: &mut Tx<'_>,
    calendar: &Calendar,
    meta: EventMeta,
    failed: &InvoiceFailed,
) -> Result<(), HandlerError> {
    let mut rental = locked(tx, failed.rental_id, "invoice failed").await?;
    let declined = TimelineStep::of_attempt(
        failed.rental_id,
        TimelineKind::PaymentFailed,
        failed.invoice_id,
        failed.attempt,
        failed.period,
        failed.at,
    );
    timeline::record(tx, meta.id, &declined).await?;
    if failed.attempt == 1 {
        let past_due = TimelineStep::of_invoice(
            failed.rental_id,
            TimelineKind::PastDue,
            failed.invoice_id,
            failed.period,
            failed.at,
        );
        timeline::record(tx, meta.id, &past_due).await?;
    }
    follow_account(&mut rental, failed.seq, failed.outstanding);
    if failed.final_attempt && failed.kind == InvoiceKind::Period && rental.status.is_running() {
        let reason = EndReason::TerminatedForNonPayment;
        end(tx, calendar, &mut rental, RentalStatus::Terminated, reason, 0, failed.at).await?;
        tracing::warn!(rental_id = %rental.id, "the last attempt of a monthly invoice failed: rental terminated");
        return Ok(());
    }
    rentals::save(tx, &rental).await?;
    Ok(())
}

/// `invoice.voided`: an operator wrote an invoice off; the account may be clear again.
pub async fn invoice_voided(tx: &mut Tx<'_>, meta: EventMeta, voided: &InvoiceVoided) -> Result<(), HandlerError> {
    let mut rental = locked(tx, voided.rental_id, "invoice voided").await?;
    let step = TimelineStep::of_invoice(
        voided.rental_id,
        TimelineKind::InvoiceVoided,
        voided.invoice_id,
        voided.period,
        voided.at,
    );
    timeline::record(tx, meta.id, &step).await?;
    follow_account(&mut rental, voided.seq, voided.outstanding);
    rentals::save(tx, &rental).await?;
    Ok(())
}

/// `payment_method.updated`: the customer put a new card on file.
pub async fn card_updated(
    tx: &mut Tx<'_>,
    meta: EventMeta,
    updated: &PaymentMethodUpdated,
) -> Result<(), HandlerError> {
    let occurrence = format!("card:{}", updated.change_id);
    let step = TimelineStep::repeated(updated.rental_id, TimelineKind::CardUpdated, occurrence, updated.at);
    timeline::record(tx, meta.id, &step).await?;
    Ok(())
}

/// Applies what the account says after change `seq` (unless a newer change was applied
/// already): past due while `outstanding` invoices are FAILED, active once none is.
fn follow_account(rental: &mut RentalRow, seq: i64, outstanding: i32) {
    if seq <= rental.billing_seq {
        return;
    }
    rental.billing_seq = seq;
    if let Step::MovesTo(status) = rental.status.follow_account(outstanding) {
        rental.status = status;
    }
    rental.updated_at = db::now();
}
