//! Rental rules, free of I/O: the rental state machine, the contract's term and its
//! periods, the early-termination fee, what a valid rent request is, the idempotency
//! request's life, and the steps of the customer's timeline.
//!
//! ```text
//!                      ┌──────── payment declined ───────┐
//!                      ▼                                 │
//! ACCEPTED ──delivered──▶ ACTIVE ◀── paid ── PAST_DUE ◀──┘
//!     │          ▲         │  │                  │
//!   cancel   reinstated    │  └─ last period ends, all paid ──▶ COMPLETED
//!     ▼          │         └──── terminate (customer, operator) ──▶ TERMINATED
//! CANCELLED ─────┘                          PAST_DUE ── last retry fails ──▶ TERMINATED
//! ```
//!
//! The term starts at delivery: period k runs from k-1 months after the start to k
//! months after it (the clock's months, `subgraph_kit::clock`). Period 1 is paid at rent;
//! each later one is charged when it starts, while the rental runs.

use chrono::{DateTime, Utc};
pub use contracts::{CardNumber, DEFAULT_CARE_INTERVAL_MONTHS, EndReason, Expiry};
use sha2::{Digest, Sha256};
use subgraph_kit::clock::Calendar;
use subgraph_kit::domain::{IllegalTransition, TextEnum};
use subgraph_kit::{ApiError, text_enum};
use uuid::Uuid;

text_enum! {
    pub enum RentalStatus: "rental status" {
        /// Paid; the dispenser is on its way or waiting to ship.
        Accepted = "ACCEPTED",
        /// Delivered and in use; its months are charged as they start.
        Active = "ACTIVE",
        /// In use, with a monthly charge declined and being retried.
        PastDue = "PAST_DUE",
        /// Cancelled before delivery; the payment is refunded.
        Cancelled = "CANCELLED",
        /// Ended early (by the customer or an operator, or for non-payment); the unit is
        /// picked up.
        Terminated = "TERMINATED",
        /// Ran its whole term; the unit is picked up.
        Completed = "COMPLETED",
    }
}

/// What a request does to a rental.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    MovesTo(RentalStatus),
    /// It is there already: nothing to do.
    AlreadyThere,
}

fn refused(from: RentalStatus, action: &'static str) -> IllegalTransition {
    IllegalTransition { entity: "rental", from: from.as_str(), action }
}

impl RentalStatus {
    /// The rental runs (is delivered and not ended): its periods are charged.
    pub fn is_running(self) -> bool {
        matches!(self, RentalStatus::Active | RentalStatus::PastDue)
    }

    /// The rental has ended after delivery.
    pub fn has_ended(self) -> bool {
        matches!(self, RentalStatus::Terminated | RentalStatus::Completed)
    }

    /// The dispenser was delivered: the rental starts running. A rental cancelled
    /// meanwhile waits for delivery's verdict on the cancellation; one reinstated
    /// already (the events crossed) is running already.
    pub fn activate(self) -> Step {
        match self {
            RentalStatus::Accepted => Step::MovesTo(RentalStatus::Active),
            _ => Step::AlreadyThere,
        }
    }

    /// The delivery had already completed when the cancellation reached it: the
    /// cancellation did not take effect and the rental runs.
    pub fn reinstate(self) -> Result<Step, IllegalTransition> {
        match self {
            RentalStatus::Cancelled => Ok(Step::MovesTo(RentalStatus::Active)),
            status if status.is_running() || status.has_ended() => Ok(Step::AlreadyThere),
            from => Err(refused(from, "reinstated")),
        }
    }

    /// The customer or an operator cancels before delivery; cancelling again changes
    /// nothing.
    pub fn cancel(self) -> Result<Step, IllegalTransition> {
        match self {
            RentalStatus::Accepted => Ok(Step::MovesTo(RentalStatus::Cancelled)),
            RentalStatus::Cancelled => Ok(Step::AlreadyThere),
            from => Err(refused(from, "cancelled")),
        }
    }

    /// What the account says after a change: past due while any invoice is FAILED,
    /// back to active once none is. Only a running rental follows its account.
    pub fn follow_account(self, outstanding: i32) -> Step {
        match (self, outstanding > 0) {
            (RentalStatus::Active, true) => Step::MovesTo(RentalStatus::PastDue),
            (RentalStatus::PastDue, false) => Step::MovesTo(RentalStatus::Active),
            _ => Step::AlreadyThere,
        }
    }

    /// The customer extends the contract: only while it runs and is in good standing.
    pub fn extend(self) -> Result<(), IllegalTransition> {
        match self {
            RentalStatus::Active => Ok(()),
            from => Err(refused(from, "extended")),
        }
    }

    /// The customer or an operator ends the contract early; terminating a terminated
    /// rental changes nothing.
    pub fn terminate(self) -> Result<Step, IllegalTransition> {
        match self {
            status if status.is_running() => Ok(Step::MovesTo(RentalStatus::Terminated)),
            RentalStatus::Terminated => Ok(Step::AlreadyThere),
            from => Err(refused(from, "terminated")),
        }
    }
}

/// The contract's term: from the delivery, `months` months long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    pub starts_at: DateTime<Utc>,
    pub months: i32,
}

impl Term {
    /// When period `k` (1-based) starts: k-1 months after the start.
    pub fn period_start(&self, calendar: &Calendar, k: i32) -> DateTime<Utc> {
        calendar.months_after(self.starts_at, k - 1)
    }

    /// When the term ends (the first instant after it).
    pub fn ends_at(&self, calendar: &Calendar) -> DateTime<Utc> {
        calendar.months_after(self.starts_at, self.months)
    }

    /// When period `k` starts, if the term has a period `k`.
    pub fn start_of(&self, calendar: &Calendar, k: i32) -> Option<DateTime<Utc>> {
        (1..=self.months).contains(&k).then(|| self.period_start(calendar, k))
    }

    /// The fee for ending the contract at `at` (won): 60 % of the daily fee (the monthly
    /// fee / 30) for each whole day left in the term, rounded down in the customer's
    /// favour.
    pub fn termination_fee(&self, calendar: &Calendar, monthly_fee: i32, at: DateTime<Utc>) -> i32 {
        let days_left = calendar.whole_days_between(at, self.ends_at(calendar));
        let fee = i64::from(monthly_fee) * 60 * days_left / (100 * 30);
        i32::try_from(fee).unwrap_or(i32::MAX)
    }
}

text_enum! {
    /// What can happen to a rental, as its customer reads it in the timeline.
    pub enum TimelineKind: "timeline step" {
        /// The first month was charged, at rent.
        Paid = "PAID",
        DeliveryRequested = "DELIVERY_REQUESTED",
        Shipped = "SHIPPED",
        /// Delivered: the term starts.
        Delivered = "DELIVERED",
        Cancelled = "CANCELLED",
        Refunded = "REFUNDED",
        /// A later month (with its period), or the termination fee, was charged.
        Charged = "CHARGED",
        /// An attempt to charge an invoice was declined.
        PaymentFailed = "PAYMENT_FAILED",
        /// An invoice became past due (its first decline); it is retried.
        PastDue = "PAST_DUE",
        /// An operator wrote an invoice off.
        InvoiceVoided = "INVOICE_VOIDED",
        /// The customer put a new card on file.
        CardUpdated = "CARD_UPDATED",
        /// The contract was lengthened.
        Extended = "EXTENDED",
        /// The contract ended early (by the customer, an operator, or for non-payment).
        Terminated = "TERMINATED",
        /// The contract ran its whole term.
        Completed = "COMPLETED",
        /// The unit is to be collected.
        PickupRequested = "PICKUP_REQUESTED",
        /// A technician's visit was planned for the pickup.
        PickupScheduled = "PICKUP_SCHEDULED",
        /// A visit was moved to another date.
        VisitRescheduled = "VISIT_RESCHEDULED",
        /// A technician started a visit.
        VisitStarted = "VISIT_STARTED",
        /// A filter-care visit was done.
        CareVisitDone = "CARE_VISIT_DONE",
        /// The technician collected the unit.
        PickedUp = "PICKED_UP",
        /// The unit is back in stock.
        Returned = "RETURNED",
    }
}

text_enum! {
    /// How far a rent request (one customer's idempotency key) got.
    pub enum RequestState: "rent request state" {
        /// The charge may or may not have happened; the rental is not committed.
        Pending = "PENDING",
        /// The rental is committed (in the same transaction as this state).
        Completed = "COMPLETED",
        /// Given up on: its charge is being called off.
        Voiding = "VOIDING",
        /// Its charge was called off (refunded, or made impossible); the key is free.
        Abandoned = "ABANDONED",
    }
}

pub const MAX_MONTHS: i32 = 60;
/// The longest a contract may run, extensions included.
pub const MAX_TERM_MONTHS: i32 = 1200;
pub const MAX_ADDRESS_CHARS: usize = 500;
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 100;

/// A contract length, or an extension of one: 1 to 60 months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Months(i32);

impl Months {
    pub fn parse(months: i32) -> Result<Self, ApiError> {
        if !(1..=MAX_MONTHS).contains(&months) {
            return Err(ApiError::bad_input(format!("months must be between 1 and {MAX_MONTHS}, got {months}")));
        }
        Ok(Self(months))
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// Where to deliver: 1 to 500 characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAddress(String);

impl DeliveryAddress {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let address = text.trim();
        if address.is_empty() {
            return Err(ApiError::bad_input("deliveryAddress must not be empty"));
        }
        if address.chars().count() > MAX_ADDRESS_CHARS {
            return Err(ApiError::bad_input(format!("deliveryAddress must be at most {MAX_ADDRESS_CHARS} characters")));
        }
        Ok(Self(address.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The client's name for one rent request: 1 to 100 characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let key = text.trim();
        if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
            return Err(ApiError::bad_input(format!(
                "idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters (a UUID is a good choice)"
            )));
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A rent request that passed validation.
#[derive(Debug)]
pub struct RentRequest {
    pub product_id: Uuid,
    pub months: Months,
    pub delivery_address: DeliveryAddress,
    pub card: CardNumber,
    /// The card's expiry (month, year), if the customer gave it; payment checks it.
    pub card_expiry: Option<(i32, i32)>,
    pub idempotency_key: IdempotencyKey,
}

impl RentRequest {
    pub fn parse(
        product_id: Uuid,
        months: i32,
        delivery_address: &str,
        card_number: &str,
        card_expiry: (Option<i32>, Option<i32>),
        idempotency_key: &str,
    ) -> Result<Self, ApiError> {
        let card_expiry = match card_expiry {
            (Some(month), Some(year)) => {
                Expiry::parse(month, year, chrono::Utc::now()).map_err(|refused| {
                    ApiError::bad_input(refused.describe("cardExpMonth", "cardExpYear", month, year))
                })?;
                Some((month, year))
            }
            (None, None) => None,
            _ => return Err(ApiError::bad_input("cardExpMonth and cardExpYear go together: give both, or neither")),
        };
        Ok(Self {
            card_expiry,
            product_id,
            months: Months::parse(months)?,
            delivery_address: DeliveryAddress::parse(delivery_address)?,
            idempotency_key: IdempotencyKey::parse(idempotency_key)?,
            card: CardNumber::parse(card_number).map_err(ApiError::bad_input)?,
        })
    }

    /// A fingerprint of what was asked, to tell a retry from a different request under
    /// the same key. It covers the card's last four digits, not the number: the full
    /// number must not be stored, not even hashed (card numbers are easy to brute-force).
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.product_id.to_string(),
            self.months.get().to_string(),
            self.delivery_address.as_str().to_owned(),
            self.card.last4(),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

/// The first month's fee is charged at once.
pub fn first_charge(monthly_fee: i32) -> i32 {
    monthly_fee
}

#[cfg(test)]
mod tests {
    use super::RentalStatus::*;
    use super::*;

    fn valid() -> RentRequest {
        RentRequest::parse(Uuid::nil(), 12, " Seoul ", "4242424242424242", (None, None), "key-1").unwrap()
    }

    #[test]
    fn a_valid_request_is_trimmed_and_fingerprinted_without_the_card_number() {
        let request = valid();
        assert_eq!(request.delivery_address.as_str(), "Seoul");
        assert_eq!(request.fingerprint(), valid().fingerprint());
        assert_eq!(request.fingerprint().len(), 64);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (RentRequest::parse(Uuid::nil(), 0, "a", "4242424242424242", (None, None), "k"), "months"),
            (RentRequest::parse(Uuid::nil(), 61, "a", "4242424242424242", (None, None), "k"), "months"),
            (RentRequest::parse(Uuid::nil(), 1, "  ", "4242424242424242", (None, None), "k"), "deliveryAddress"),
            (
                RentRequest::parse(Uuid::nil(), 1, &"x".repeat(501), "4242424242424242", (None, None), "k"),
                "deliveryAddress",
            ),
            (RentRequest::parse(Uuid::nil(), 1, "a", "1234", (None, None), "k"), "cardNumber"),
            (RentRequest::parse(Uuid::nil(), 1, "a", "4242424242424242", (None, None), ""), "idempotencyKey"),
        ];
        for (result, field) in cases {
            let error = result.unwrap_err();
            assert_eq!(error.code, subgraph_kit::ErrorCode::BadUserInput);
            assert!(error.message.starts_with(field), "{} should name {field}", error.message);
        }
    }

    #[test]
    fn only_an_accepted_rental_can_be_activated_or_cancelled() {
        assert_eq!(Accepted.activate(), Step::MovesTo(Active));
        assert_eq!(Accepted.cancel(), Ok(Step::MovesTo(Cancelled)));
        assert_eq!(Cancelled.cancel(), Ok(Step::AlreadyThere), "cancelling twice changes nothing");
        assert_eq!(Active.cancel().unwrap_err().to_string(), "a rental that is ACTIVE cannot be cancelled");
        assert_eq!(Cancelled.activate(), Step::AlreadyThere, "a cancelled rental waits for delivery's verdict");
        assert_eq!(Cancelled.reinstate(), Ok(Step::MovesTo(Active)));
        assert!(Accepted.reinstate().is_err());
    }

    #[test]
    fn a_running_rental_follows_its_account_extends_and_terminates() {
        assert_eq!(Active.follow_account(1), Step::MovesTo(PastDue));
        assert_eq!(PastDue.follow_account(0), Step::MovesTo(Active));
        assert_eq!(PastDue.follow_account(2), Step::AlreadyThere);
        assert_eq!(Terminated.follow_account(1), Step::AlreadyThere, "an ended rental stays ended");
        assert!(Active.extend().is_ok());
        assert_eq!(PastDue.extend().unwrap_err().to_string(), "a rental that is PAST_DUE cannot be extended");
        assert_eq!(Accepted.extend().unwrap_err().to_string(), "a rental that is ACCEPTED cannot be extended");
        assert_eq!(Active.terminate(), Ok(Step::MovesTo(Terminated)));
        assert_eq!(PastDue.terminate(), Ok(Step::MovesTo(Terminated)));
        assert_eq!(Terminated.terminate(), Ok(Step::AlreadyThere), "terminating twice changes nothing");
        assert!(Accepted.terminate().is_err(), "before delivery it is cancelled, not terminated");
        assert!(Completed.terminate().is_err());
    }

    #[test]
    fn the_term_runs_from_delivery_and_the_fee_counts_whole_days_left() {
        let calendar = Calendar::CALENDAR;
        let start: DateTime<Utc> = "2027-01-31T10:00:00Z".parse().unwrap();
        let term = Term { starts_at: start, months: 12 };
        assert_eq!(term.period_start(&calendar, 1), start);
        assert_eq!(term.period_start(&calendar, 2), "2027-02-28T10:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(term.period_start(&calendar, 3), "2027-03-31T10:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(term.ends_at(&calendar), "2028-01-31T10:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(term.start_of(&calendar, 13), None);
        // 30 days left of a 30,000 won month: 60 % of 1,000 won a day, 30 days.
        let short = Calendar::short(30);
        let month_term = Term { starts_at: start, months: 2 };
        let after_one_month = short.months_after(start, 1);
        assert_eq!(month_term.termination_fee(&short, 30_000, after_one_month), 18_000);
        assert_eq!(month_term.termination_fee(&short, 30_000, month_term.ends_at(&short)), 0);
        assert_eq!(month_term.termination_fee(&short, 19_900, after_one_month), 11_940);
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in RentalStatus::ALL {
            assert_eq!(RentalStatus::parse(status.as_str()), Ok(*status));
        }
        for kind in TimelineKind::ALL {
            assert_eq!(TimelineKind::parse(kind.as_str()), Ok(*kind));
        }
    }
}
