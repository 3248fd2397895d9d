//! Field service after the installation: planning care visits when a term starts or
//! grows, calling them off and planning the one pickup when a rental ends, and the
//! technicians' and customers' changes to a visit. One transaction each; every change
//! of a visit is a `visit.*` event (rental's timeline and activity, inventory's stock).
//!
//! The plan survives events in any order: a rental's end that arrives before its
//! activation leaves an ended plan behind, so the late activation plans nothing.

use chrono::{DateTime, Utc};
use contracts::{
    RentalActivated, RentalEnded, RentalExtended, VisitCancelled, VisitChange, VisitDone, VisitRescheduled,
    VisitScheduled, VisitStarted,
};
use event_bus::{HandlerError, outbox};
use subgraph_kit::clock::Calendar;
use subgraph_kit::{ApiError, Database, Identity, Tx, db};
use uuid::Uuid;

use crate::domain::{
    DeliveryStatus, VisitKind, VisitMoves, VisitStatus, VisitStep, care_plan, customer_may_move, pickup_date,
};
use crate::storage::deliveries;
use crate::storage::visits::{self, PlanRow, VisitRow};

fn change(row: &VisitRow, at: DateTime<Utc>) -> VisitChange {
    VisitChange {
        visit_id: row.id,
        rental_id: row.rental_id,
        customer_id: row.customer_id,
        product_id: row.product_id,
        delivery_id: row.delivery_id,
        kind: row.kind,
        status: row.status,
        scheduled_for: row.scheduled_for,
        at,
    }
}

/// Plans the care visits numbered `from` on, up to the plan's term end, and announces
/// the new ones.
async fn plan_care_visits(tx: &mut Tx<'_>, calendar: &Calendar, plan: &PlanRow, from: i32) -> Result<(), HandlerError> {
    let (Some(starts_at), Some(ends_at)) = (plan.term_starts_at, plan.term_ends_at) else { return Ok(()) };
    let now = db::now();
    let planned: Vec<VisitRow> = care_plan(calendar, starts_at, ends_at, plan.care_interval_months, from)
        .into_iter()
        .map(|(number, due)| VisitRow::planned(plan, VisitKind::Care, number, due, now))
        .collect();
    let inserted = visits::insert_new(tx, &planned).await?;
    let events: Vec<VisitScheduled> = inserted.iter().map(|row| VisitScheduled(change(row, now))).collect();
    outbox::enqueue_all(tx, &events).await?;
    Ok(())
}

/// `rental.activated`: the term started; its care visits are planned at every interval.
pub async fn plan_term(tx: &mut Tx<'_>, calendar: &Calendar, activated: &RentalActivated) -> Result<(), HandlerError> {
    let now = db::now();
    let mut plan = visits::plan_once(
        tx,
        &PlanRow {
            rental_id: activated.rental_id,
            customer_id: activated.customer_id,
            product_id: activated.product_id,
            address: activated.delivery_address.clone(),
            care_interval_months: activated.care_interval_months,
            term_starts_at: None,
            term_ends_at: None,
            ended_at: None,
            updated_at: now,
        },
    )
    .await?;
    if plan.ended_at.is_some() || plan.term_starts_at.is_some() {
        // Ended already (the end overtook this), or planned already (a replay).
        return Ok(());
    }
    plan.term_starts_at = Some(activated.starts_at);
    plan.term_ends_at = Some(activated.ends_at);
    plan.updated_at = now;
    visits::save_plan(tx, &plan).await?;
    plan_care_visits(tx, calendar, &plan, 1).await
}

/// `rental.extended`: the term grew; the care visits of the new months are planned. An
/// extension that overtook the activation plans the whole (longer) term itself, and the
/// late activation then finds it planned.
pub async fn extend_term(tx: &mut Tx<'_>, calendar: &Calendar, extended: &RentalExtended) -> Result<(), HandlerError> {
    let now = db::now();
    let mut plan = visits::plan_once(
        tx,
        &PlanRow {
            rental_id: extended.rental_id,
            customer_id: extended.customer_id,
            product_id: extended.product_id,
            address: extended.delivery_address.clone(),
            care_interval_months: extended.care_interval_months,
            term_starts_at: None,
            term_ends_at: None,
            ended_at: None,
            updated_at: now,
        },
    )
    .await?;
    let longer = plan.term_ends_at.is_none_or(|ends_at| ends_at < extended.ends_at);
    if plan.ended_at.is_some() || !longer {
        return Ok(());
    }
    plan.term_starts_at = Some(extended.starts_at);
    plan.term_ends_at = Some(extended.ends_at);
    plan.updated_at = now;
    visits::save_plan(tx, &plan).await?;
    let next = visits::last_care_number(tx, extended.rental_id).await? + 1;
    plan_care_visits(tx, calendar, &plan, next).await
}

/// `rental.ended`: the remaining care visits are called off, and the unit's pickup is
/// planned for the next day (once: a rental has one pickup, whatever replays).
pub async fn end_term(tx: &mut Tx<'_>, calendar: &Calendar, ended: &RentalEnded) -> Result<(), HandlerError> {
    let now = db::now();
    let mut plan = visits::plan_once(
        tx,
        &PlanRow {
            rental_id: ended.rental_id,
            customer_id: ended.customer_id,
            product_id: ended.product_id,
            address: ended.delivery_address.clone(),
            care_interval_months: contracts::DEFAULT_CARE_INTERVAL_MONTHS,
            term_starts_at: None,
            term_ends_at: None,
            ended_at: None,
            updated_at: now,
        },
    )
    .await?;
    if plan.ended_at.is_none() {
        plan.ended_at = Some(ended.at);
        plan.updated_at = now;
        visits::save_plan(tx, &plan).await?;
    }
    let mut called_off = visits::lock_open_care(tx, ended.rental_id).await?;
    for visit in &mut called_off {
        if let VisitStep::MovesTo(cancelled) = visit.status.cancel() {
            visit.status = cancelled;
            visit.cancelled_at = Some(now);
            visit.updated_at = now;
        }
    }
    visits::save_all(tx, &called_off).await?;
    let cancelled: Vec<VisitCancelled> = called_off.iter().map(|row| VisitCancelled(change(row, now))).collect();
    outbox::enqueue_all(tx, &cancelled).await?;

    let Some(delivery) = deliveries::lock_by_rental(tx, ended.rental_id).await? else {
        return Err(HandlerError::Poison(format!("rental {} ended with no delivery to collect", ended.rental_id)));
    };
    if delivery.status != DeliveryStatus::Delivered {
        return Err(HandlerError::Poison(format!(
            "rental {} ended, but its delivery is {} rather than DELIVERED",
            ended.rental_id, delivery.status
        )));
    }
    let plan = PlanRow { address: ended.delivery_address.clone(), ..plan };
    let mut pickup = VisitRow::planned(&plan, VisitKind::Pickup, 1, pickup_date(calendar, ended.at), now);
    pickup.delivery_id = Some(delivery.id);
    let inserted = visits::insert_new(tx, std::slice::from_ref(&pickup)).await?;
    let scheduled: Vec<VisitScheduled> = inserted.iter().map(|row| VisitScheduled(change(row, now))).collect();
    outbox::enqueue_all(tx, &scheduled).await?;
    Ok(())
}

fn no_such_visit(id: Uuid) -> ApiError {
    ApiError::not_found(format!("there is no visit with id {id}"))
}

/// A visit the caller may see, locked; another customer's reads as missing.
async fn visible_locked(tx: &mut Tx<'_>, caller: &Identity, id: Uuid) -> Result<VisitRow, ApiError> {
    visits::lock(tx, id)
        .await?
        .filter(|visit| caller.may_see_customer(visit.customer_id))
        .ok_or_else(|| no_such_visit(id))
}

/// `startVisit` (operators): the technician is there. Starting a started visit returns
/// it as it is.
pub async fn start(database: &Database, id: Uuid) -> Result<VisitRow, ApiError> {
    database
        .transaction(async |tx: &mut Tx<'_>| {
            let mut visit = visits::lock(tx, id).await?.ok_or_else(|| no_such_visit(id))?;
            let VisitStep::MovesTo(status) = visit.status.start()? else { return Ok(visit) };
            let now = db::now();
            visit.status = status;
            visit.started_at.get_or_insert(now);
            visit.updated_at = now;
            visits::save_all(tx, std::slice::from_ref(&visit)).await?;
            outbox::enqueue(tx, &VisitStarted(change(&visit, now))).await?;
            Ok(visit)
        })
        .await
}

/// `completeVisit` (operators): the visit is done, with the technician's notes; a pickup
/// brings the unit home (inventory counts it back). Completing a done visit returns it
/// as it is.
pub async fn complete(database: &Database, id: Uuid, notes: Option<String>) -> Result<VisitRow, ApiError> {
    database
        .transaction(async |tx: &mut Tx<'_>| {
            let mut visit = visits::lock(tx, id).await?.ok_or_else(|| no_such_visit(id))?;
            let VisitStep::MovesTo(status) = visit.status.complete()? else { return Ok(visit) };
            let now = db::now();
            visit.status = status;
            visit.started_at.get_or_insert(now);
            visit.done_at = Some(now);
            if notes.is_some() {
                visit.notes = notes;
            }
            visit.updated_at = now;
            visits::save_all(tx, std::slice::from_ref(&visit)).await?;
            outbox::enqueue(tx, &VisitDone(change(&visit, now))).await?;
            Ok(visit)
        })
        .await
}

/// `rescheduleVisit`: an operator moves any visit not done (a pickup whose customer was
/// not there goes back to SCHEDULED); a customer moves their own upcoming care visit,
/// within 14 days of its planned date.
pub async fn reschedule(
    database: &Database,
    calendar: &Calendar,
    caller: &Identity,
    id: Uuid,
    to: DateTime<Utc>,
) -> Result<VisitRow, ApiError> {
    database
        .transaction(async |tx: &mut Tx<'_>| {
            let mut visit = visible_locked(tx, caller, id).await?;
            let now = db::now();
            let VisitStep::MovesTo(status) = visit.status.reschedule()? else { return Ok(visit) };
            if !caller.is_operator() {
                if visit.kind != VisitKind::Care || visit.status != VisitStatus::Scheduled {
                    return Err(ApiError::forbidden(
                        "customers may move their upcoming care visits; call us to move a pickup or a started visit",
                    ));
                }
                customer_may_move(calendar, visit.planned_for, to, now)?;
            } else if to <= now {
                return Err(ApiError::bad_input("scheduledFor must be in the future"));
            }
            if visit.scheduled_for == to && visit.status == status {
                return Ok(visit);
            }
            visit.status = status;
            visit.scheduled_for = to;
            visit.first_rescheduled_at.get_or_insert(now);
            visit.updated_at = now;
            visits::save_all(tx, std::slice::from_ref(&visit)).await?;
            outbox::enqueue(tx, &VisitRescheduled(change(&visit, now))).await?;
            Ok(visit)
        })
        .await
}
