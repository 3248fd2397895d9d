//! Field-service rules, free of I/O: the delivery (installation) state machine and the
//! rule that ties it to stock, the visits' state machine, the care plan, and what a
//! customer may move.
//!
//! ```text
//! REQUESTED ──start──▶ SHIPPING ──complete──▶ DELIVERED   (only with its unit TAKEN)
//!     │                    │
//!     └──────cancel────────┴──▶ CANCELLED
//! ```
//!
//! A started delivery asks inventory for a unit (`unit` PENDING); inventory answers
//! that it took one (TAKEN) or has none yet (SHORT, until a restock). The unit only
//! moves forward, so news arriving late or twice changes nothing.

use chrono::{DateTime, Utc};
pub use contracts::{DeliveryStatus, VisitKind, VisitStatus};
use subgraph_kit::clock::Calendar;
use subgraph_kit::domain::{IllegalTransition, TextEnum};
use subgraph_kit::{ApiError, ErrorCode, text_enum};

text_enum! {
    /// Where the delivery's unit stands, as inventory reported it.
    pub enum Unit: "delivery unit" {
        /// Not started: no unit asked for yet.
        NotAsked = "NONE",
        /// Started; inventory has not answered yet.
        Pending = "PENDING",
        /// Inventory had none: waiting for a restock.
        Short = "SHORT",
        /// Inventory took a unit for it.
        Taken = "TAKEN",
    }
}

/// What an operator's request does to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The delivery moves to this status.
    MovesTo(DeliveryStatus),
    /// It is there already (a retried request): answer it as it is.
    AlreadyThere,
}

fn refused(from: DeliveryStatus, action: &'static str) -> IllegalTransition {
    IllegalTransition { entity: "delivery", from: from.as_str(), action }
}

/// The moves of the delivery state machine. `DeliveryStatus` itself is part of the
/// event contract (every delivery event carries it), so it is declared in `contracts`
/// and its rules live here.
pub trait DeliveryMoves: Sized {
    /// No further change is possible.
    fn is_terminal(self) -> bool;
    /// An operator ships it.
    fn start(self) -> Result<Step, IllegalTransition>;
    /// An operator hands it over: only a shipment whose unit inventory took.
    fn complete(self, unit: Unit) -> Result<Step, ApiError>;
    /// Its rental was cancelled.
    fn cancel(self) -> Result<Step, IllegalTransition>;
}

impl DeliveryMoves for DeliveryStatus {
    fn is_terminal(self) -> bool {
        matches!(self, DeliveryStatus::Delivered | DeliveryStatus::Cancelled)
    }

    fn start(self) -> Result<Step, IllegalTransition> {
        match self {
            DeliveryStatus::Requested => Ok(Step::MovesTo(DeliveryStatus::Shipping)),
            DeliveryStatus::Shipping => Ok(Step::AlreadyThere),
            from => Err(refused(from, "started")),
        }
    }

    fn complete(self, unit: Unit) -> Result<Step, ApiError> {
        match (self, unit) {
            (DeliveryStatus::Delivered, _) => Ok(Step::AlreadyThere),
            (DeliveryStatus::Shipping, Unit::Taken) => Ok(Step::MovesTo(DeliveryStatus::Delivered)),
            (DeliveryStatus::Shipping, Unit::Short) => Err(ApiError::new(
                ErrorCode::WaitingForStock,
                "this delivery is waiting for stock: its product had no unit when it started; \
                 restock the product, then complete the delivery",
            )),
            (DeliveryStatus::Shipping, _) => Err(ApiError::new(
                ErrorCode::WaitingForStock,
                "inventory has not confirmed a unit for this delivery yet; try again in a moment",
            )
            .retry_after(1)),
            (from, _) => Err(refused(from, "completed").into()),
        }
    }

    fn cancel(self) -> Result<Step, IllegalTransition> {
        match self {
            DeliveryStatus::Requested | DeliveryStatus::Shipping => Ok(Step::MovesTo(DeliveryStatus::Cancelled)),
            DeliveryStatus::Cancelled => Ok(Step::AlreadyThere),
            from => Err(refused(from, "cancelled")),
        }
    }
}

impl Unit {
    /// Inventory says it had no unit. Only a shipment still waiting for an answer
    /// changes: news of a shortage after the unit was taken is stale.
    pub fn short(self) -> Unit {
        match self {
            Unit::Pending => Unit::Short,
            other => other,
        }
    }

    /// Inventory took a unit for it.
    pub fn taken(self) -> Unit {
        match self {
            Unit::Pending | Unit::Short => Unit::Taken,
            other => other,
        }
    }
}

/// What a request does to a visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitStep {
    /// The visit moves to this status.
    MovesTo(VisitStatus),
    /// It is there already (a retried request): answer it as it is.
    AlreadyThere,
}

fn visit_refused(from: VisitStatus, action: &'static str) -> IllegalTransition {
    IllegalTransition { entity: "visit", from: from.as_str(), action }
}

/// The moves of a technician's visit. `VisitStatus` is part of the event contract, so
/// it is declared in `contracts`; its rules live here.
///
/// ```text
/// SCHEDULED ──start──▶ IN_PROGRESS ──complete──▶ DONE
///     │  ▲                  │
///     │  └──reschedule──────┘   (the customer was not there)
///     └──cancel (a care visit after the rental ended)──▶ CANCELLED
/// ```
pub trait VisitMoves: Sized {
    /// A technician starts it.
    fn start(self) -> Result<VisitStep, IllegalTransition>;
    /// A technician completes it (a scheduled one too: started and done at once).
    fn complete(self) -> Result<VisitStep, IllegalTransition>;
    /// It moves to another date: only a visit not done or cancelled.
    fn reschedule(self) -> Result<VisitStep, IllegalTransition>;
    /// It will not happen (a care visit of a rental that ended): a visit not done yet is
    /// called off, the one under way too.
    fn cancel(self) -> VisitStep;
}

impl VisitMoves for VisitStatus {
    fn start(self) -> Result<VisitStep, IllegalTransition> {
        match self {
            VisitStatus::Scheduled => Ok(VisitStep::MovesTo(VisitStatus::InProgress)),
            VisitStatus::InProgress => Ok(VisitStep::AlreadyThere),
            from => Err(visit_refused(from, "started")),
        }
    }

    fn complete(self) -> Result<VisitStep, IllegalTransition> {
        match self {
            VisitStatus::Scheduled | VisitStatus::InProgress => Ok(VisitStep::MovesTo(VisitStatus::Done)),
            VisitStatus::Done => Ok(VisitStep::AlreadyThere),
            from => Err(visit_refused(from, "completed")),
        }
    }

    fn reschedule(self) -> Result<VisitStep, IllegalTransition> {
        match self {
            VisitStatus::Scheduled | VisitStatus::InProgress => Ok(VisitStep::MovesTo(VisitStatus::Scheduled)),
            from => Err(visit_refused(from, "rescheduled")),
        }
    }

    fn cancel(self) -> VisitStep {
        match self {
            VisitStatus::Scheduled | VisitStatus::InProgress => VisitStep::MovesTo(VisitStatus::Cancelled),
            VisitStatus::Done | VisitStatus::Cancelled => VisitStep::AlreadyThere,
        }
    }
}

/// How far from its planned date a customer may move a care visit, in days.
pub const CUSTOMER_MOVE_DAYS: u32 = 14;
/// The longest a visit's notes may be.
pub const MAX_NOTES_CHARS: usize = 2000;

/// The care visits of a term that starts at `starts_at` and ends at `ends_at`, one
/// every `interval_months`, numbered from 1: visit n is due n intervals after the
/// start, and only visits due before the end are planned. Returns those numbered
/// `from` on: (number, due date).
pub fn care_plan(
    calendar: &Calendar,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    interval_months: i32,
    from: i32,
) -> Vec<(i32, DateTime<Utc>)> {
    let interval = interval_months.max(1);
    (from.max(1)..)
        .map(|number| (number, calendar.months_after(starts_at, number * interval)))
        .take_while(|(_, due)| *due < ends_at)
        .collect()
}

/// When the pickup of a rental that ended at `ended_at` is planned: the next day.
pub fn pickup_date(calendar: &Calendar, ended_at: DateTime<Utc>) -> DateTime<Utc> {
    calendar.days_after(ended_at, 1)
}

/// Whether a customer may move their care visit planned for `planned_for` to `to`: a
/// date still ahead, within [`CUSTOMER_MOVE_DAYS`] days of the plan.
pub fn customer_may_move(
    calendar: &Calendar,
    planned_for: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    if to <= now {
        return Err(ApiError::bad_input("scheduledFor must be in the future"));
    }
    let window = calendar.day() * CUSTOMER_MOVE_DAYS as i32;
    if to < planned_for - window || to > planned_for + window {
        return Err(ApiError::bad_input(format!(
            "a care visit can be moved to at most {CUSTOMER_MOVE_DAYS} days before or after its planned date \
             ({planned_for}); call us for another date"
        )));
    }
    Ok(())
}

/// A technician's notes: at most 2000 characters, trimmed.
pub fn parse_notes(notes: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(notes) = notes.map(str::trim).filter(|notes| !notes.is_empty()) else { return Ok(None) };
    if notes.chars().count() > MAX_NOTES_CHARS {
        return Err(ApiError::bad_input(format!("notes must be at most {MAX_NOTES_CHARS} characters")));
    }
    Ok(Some(notes.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::DeliveryStatus::*;
    use super::*;

    #[test]
    fn care_visits_fall_at_each_interval_within_the_term() {
        let calendar = Calendar::CALENDAR;
        let start: DateTime<Utc> = "2027-01-31T10:00:00Z".parse().unwrap();
        let end = calendar.months_after(start, 12);
        let plan = care_plan(&calendar, start, end, 4, 1);
        let dates: Vec<String> = plan.iter().map(|(_, due)| due.format("%Y-%m-%d").to_string()).collect();
        assert_eq!(dates, ["2027-05-31", "2027-09-30"], "the twelfth month's visit would fall on the end");
        assert_eq!(plan.iter().map(|(number, _)| *number).collect::<Vec<_>>(), [1, 2]);
        let longer = calendar.months_after(start, 18);
        assert_eq!(care_plan(&calendar, start, longer, 4, 3).iter().map(|(n, _)| *n).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn a_customer_moves_a_care_visit_within_fourteen_days_ahead() {
        let calendar = Calendar::CALENDAR;
        let now: DateTime<Utc> = "2027-03-01T00:00:00Z".parse().unwrap();
        let planned: DateTime<Utc> = "2027-03-20T00:00:00Z".parse().unwrap();
        assert!(customer_may_move(&calendar, planned, planned + chrono::Duration::days(14), now).is_ok());
        assert!(customer_may_move(&calendar, planned, planned + chrono::Duration::days(15), now).is_err());
        assert!(customer_may_move(&calendar, planned, planned - chrono::Duration::days(14), now).is_ok());
        assert!(customer_may_move(&calendar, planned, now - chrono::Duration::days(1), now).is_err());
    }

    #[test]
    fn visits_move_forward_and_repeat_idempotently() {
        use VisitStatus::*;
        assert_eq!(Scheduled.start(), Ok(VisitStep::MovesTo(InProgress)));
        assert_eq!(InProgress.start(), Ok(VisitStep::AlreadyThere));
        assert_eq!(Done.complete(), Ok(VisitStep::AlreadyThere));
        assert_eq!(Cancelled.complete().unwrap_err().to_string(), "a visit that is CANCELLED cannot be completed");
        assert_eq!(InProgress.reschedule(), Ok(VisitStep::MovesTo(Scheduled)), "the customer was not there");
        assert!(Done.reschedule().is_err());
        assert_eq!(Scheduled.cancel(), VisitStep::MovesTo(Cancelled));
        assert_eq!(InProgress.cancel(), VisitStep::MovesTo(Cancelled), "a care visit under way when the rental ends");
        assert_eq!(Done.cancel(), VisitStep::AlreadyThere);
        assert!(parse_notes(Some(&"x".repeat(2001))).is_err());
        assert_eq!(parse_notes(Some("  ")), Ok(None));
    }

    #[test]
    fn the_happy_path_runs_requested_shipping_delivered() {
        assert_eq!(Requested.start(), Ok(Step::MovesTo(Shipping)));
        assert_eq!(Shipping.complete(Unit::Taken), Ok(Step::MovesTo(Delivered)));
        assert!(Delivered.is_terminal());
    }

    #[test]
    fn repeating_the_step_a_delivery_is_in_changes_nothing() {
        assert_eq!(Shipping.start(), Ok(Step::AlreadyThere));
        assert_eq!(Delivered.complete(Unit::Taken), Ok(Step::AlreadyThere));
        assert_eq!(Cancelled.cancel(), Ok(Step::AlreadyThere));
    }

    #[test]
    fn a_delivery_is_completed_only_with_its_unit_taken() {
        for unit in [Unit::Pending, Unit::Short] {
            let refused = Shipping.complete(unit).unwrap_err();
            assert_eq!(refused.code, ErrorCode::WaitingForStock, "{unit:?}");
        }
        assert_eq!(Requested.complete(Unit::NotAsked).unwrap_err().code, ErrorCode::Conflict);
    }

    #[test]
    fn illegal_moves_are_refused_with_a_sentence() {
        assert!(Delivered.cancel().is_err());
        assert!(Cancelled.start().is_err());
        assert_eq!(Delivered.start().unwrap_err().to_string(), "a delivery that is DELIVERED cannot be started");
        assert_eq!(Requested.cancel(), Ok(Step::MovesTo(Cancelled)));
        assert_eq!(Shipping.cancel(), Ok(Step::MovesTo(Cancelled)));
    }

    #[test]
    fn a_unit_only_moves_forward() {
        assert_eq!(Unit::Pending.short(), Unit::Short);
        assert_eq!(Unit::Short.taken(), Unit::Taken);
        assert_eq!(Unit::Taken.short(), Unit::Taken, "a late shortage does not undo a taken unit");
        assert_eq!(Unit::NotAsked.taken(), Unit::NotAsked);
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Ok(*status));
        }
    }
}
