//! Payment rules, free of I/O: a first charge is paid, then maybe refunded once; an
//! invoice's life; what a valid charge and a valid card are; when a declined invoice is
//! tried again; and the simulated card network (the only simulated part of the system).
//!
//! ```text
//! invoice:  PENDING ──charged──▶ PAID ──refunded (period 1, cancelled rental)──▶ REFUNDED
//!              │ ▲                 ▲
//!       declined│ │retry           │charged on a retry (dunning, payInvoice)
//!              ▼ │                 │
//!            FAILED ───────────────┘
//!   PENDING / FAILED ──voided by an operator──▶ VOID
//! ```

use chrono::{DateTime, Duration, Utc};
pub use contracts::{CardNumber, Expiry, InvoiceKind};
use subgraph_kit::ApiError;
use subgraph_kit::clock::Calendar;
use subgraph_kit::domain::{IllegalTransition, TextEnum};
use subgraph_kit::text_enum;
use uuid::Uuid;

text_enum! {
    pub enum PaymentStatus: "payment status" {
        /// The first month's fee was charged to the card.
        Paid = "PAID",
        /// The charge was paid back to the card.
        Refunded = "REFUNDED",
    }
}

impl PaymentStatus {
    /// Refunding twice is refused, so a retried refund never pays out twice.
    pub fn refund(self) -> Result<PaymentStatus, IllegalTransition> {
        match self {
            PaymentStatus::Paid => Ok(PaymentStatus::Refunded),
            from => Err(IllegalTransition { entity: "payment", from: from.as_str(), action: "refunded" }),
        }
    }
}

text_enum! {
    pub enum InvoiceStatus: "invoice status" {
        /// Due, and not charged yet (or its first attempt is under way).
        Pending = "PENDING",
        /// Charged to the card on file.
        Paid = "PAID",
        /// Declined; tried again at `nextAttemptAt`, or no more once that is empty.
        Failed = "FAILED",
        /// Written off by an operator: never charged.
        Void = "VOID",
        /// Paid, then paid back (the first month of a rental cancelled before delivery).
        Refunded = "REFUNDED",
    }
}

fn refused(from: InvoiceStatus, action: &'static str) -> IllegalTransition {
    IllegalTransition { entity: "invoice", from: from.as_str(), action }
}

impl InvoiceStatus {
    /// Whether a charge may be attempted: only an invoice not settled yet.
    pub fn may_be_charged(self) -> bool {
        matches!(self, InvoiceStatus::Pending | InvoiceStatus::Failed)
    }

    /// A customer asks to pay it now (`payInvoice`).
    pub fn pay_now(self) -> Result<(), IllegalTransition> {
        if self.may_be_charged() { Ok(()) } else { Err(refused(self, "paid again")) }
    }

    /// An operator writes it off.
    pub fn void(self) -> Result<InvoiceStatus, IllegalTransition> {
        match self {
            InvoiceStatus::Pending | InvoiceStatus::Failed => Ok(InvoiceStatus::Void),
            from => Err(refused(from, "voided")),
        }
    }
}

/// An amount to charge, in won: positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount(i32);

impl Amount {
    pub fn parse(won: i32) -> Result<Self, ApiError> {
        if won <= 0 {
            return Err(ApiError::bad_input(format!("amount must be a positive number of won, got {won}")));
        }
        Ok(Self(won))
    }

    pub fn won(self) -> i32 {
        self.0
    }
}

/// What rental asks to charge at rent: a rental's first month, once, with the card the
/// customer typed (which becomes the card on file).
#[derive(Debug)]
pub struct ChargeRequest {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub amount: Amount,
    pub card: CardNumber,
    pub expiry: Expiry,
}

/// When a declined invoice is tried again: so many days after its first failure (1, 3
/// and 7 by default, `DUNNING_RETRY_DAYS`), in the clock's days. After the last retry
/// it is not tried automatically any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DunningSchedule {
    pub retry_days: Vec<u32>,
}

impl Default for DunningSchedule {
    fn default() -> Self {
        Self { retry_days: vec![1, 3, 7] }
    }
}

impl DunningSchedule {
    /// `1,3,7`: days after the first failure, increasing.
    pub fn parse(text: &str) -> Result<Self, String> {
        let retry_days = text
            .split(',')
            .map(|day| day.trim().parse::<u32>().map_err(|_| format!("{day:?} is not a number of days")))
            .collect::<Result<Vec<_>, _>>()?;
        if retry_days.is_empty() || retry_days.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err("the retry days must be one or more increasing numbers, like 1,3,7".into());
        }
        Ok(Self { retry_days })
    }

    /// After a decline at `now` of an invoice first declined at `first_failed_at`: when
    /// to try again (the next retry day still ahead), or `None` when every retry day has
    /// passed. The schedule is kept by the calendar, not by counting attempts, so an
    /// extra attempt the customer asks for (`payInvoice`, a new card) costs no retry.
    pub fn next_attempt(
        &self,
        calendar: &Calendar,
        first_failed_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        self.retry_days.iter().map(|days| calendar.days_after(first_failed_at, *days)).find(|retry| *retry > now)
    }
}

/// The simulated card network, the only simulated part of the system. It behaves like a
/// processor's test mode: it knows cards by token, never by number, and answers each
/// charge by the card's documented behaviour.
pub mod network {
    use super::*;

    text_enum! {
        /// How a test card answers charges.
        pub enum Behaviour: "card behaviour" {
            /// Every charge is approved (4242 4242 4242 4242).
            Approve = "APPROVE",
            /// Every charge is declined (4000 0000 0000 0002).
            Decline = "DECLINE",
            /// The customer's own charge (at rent) is approved; every later charge from
            /// the card on file is declined (4000 0000 0000 0341).
            DeclineRecurring = "DECLINE_RECURRING",
        }
    }

    /// Who starts a charge: the customer, with the card in hand (at rent), or the
    /// company, from the card on file (every later month, retries, fees).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Presence {
        Customer,
        OnFile,
    }

    /// How a card answers, by its number: the documented test cards; any other number is
    /// declined, as a real network declines a card it does not know.
    pub fn behaviour_of(card: &CardNumber) -> Behaviour {
        match card.digits() {
            "4242424242424242" => Behaviour::Approve,
            "4000000000000341" => Behaviour::DeclineRecurring,
            _ => Behaviour::Decline,
        }
    }

    /// The brand, from the number's first digits.
    pub fn brand_of(card: &CardNumber) -> &'static str {
        let digits = card.digits();
        match digits.as_bytes() {
            [b'4', ..] => "VISA",
            [b'5', b'1'..=b'5', ..] => "MASTERCARD",
            [b'3', b'4' | b'7', ..] => "AMEX",
            _ => "CARD",
        }
    }

    /// A new token for a card.
    pub fn new_token() -> String {
        format!("tok_{}", Uuid::now_v7().simple())
    }

    /// The network's answer to a charge of a card with `behaviour` and `expiry`, at
    /// `at`: approved, or declined with the reason a customer is told.
    pub fn decide(behaviour: Behaviour, expiry: Expiry, presence: Presence, at: DateTime<Utc>) -> Result<(), String> {
        if expiry.has_passed(at) {
            return Err(format!("the card expired at the end of {:02}/{}", expiry.month, expiry.year));
        }
        match (behaviour, presence) {
            (Behaviour::Approve, _) | (Behaviour::DeclineRecurring, Presence::Customer) => Ok(()),
            (Behaviour::Decline, _) => Err("the card was declined by its issuer".into()),
            (Behaviour::DeclineRecurring, Presence::OnFile) => {
                Err("the issuer declined a charge from the card on file".into())
            }
        }
    }
}

/// How long a claimed attempt is left to the collector that claimed it before another
/// may take it over (and finish it with the same idempotency key).
pub fn claim_lease(calendar: &Calendar) -> Duration {
    (calendar.day() / 2).clamp(Duration::seconds(2), Duration::seconds(30))
}

#[cfg(test)]
mod tests {
    use super::network::{Behaviour, Presence, behaviour_of, brand_of, decide};
    use super::*;

    fn card(number: &str) -> CardNumber {
        CardNumber::parse(number).expect("a valid number")
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a time")
    }

    #[test]
    fn the_test_cards_answer_as_documented() {
        let now = at("2026-12-07T10:00:00Z");
        let valid = Expiry { month: 12, year: 2030 };
        let charge = |number: &str, presence| decide(behaviour_of(&card(number)), valid, presence, now);
        assert_eq!(charge("4242424242424242", Presence::Customer), Ok(()));
        assert_eq!(charge("4242424242424242", Presence::OnFile), Ok(()));
        assert!(charge("4000000000000002", Presence::Customer).is_err());
        assert_eq!(charge("4000000000000341", Presence::Customer), Ok(()), "accepted at rent");
        assert!(charge("4000000000000341", Presence::OnFile).is_err(), "declines every later charge");
        assert_eq!(behaviour_of(&card("5555555555554444")), Behaviour::Decline, "unknown cards are declined");
        assert_eq!(brand_of(&card("4242424242424242")), "VISA");
        assert_eq!(brand_of(&card("5555555555554444")), "MASTERCARD");
    }

    #[test]
    fn an_expired_card_is_declined_and_refused_as_input() {
        let now = at("2026-12-07T10:00:00Z");
        let expired = Expiry { month: 11, year: 2026 };
        assert!(decide(Behaviour::Approve, expired, Presence::OnFile, now).unwrap_err().contains("expired"));
        assert!(decide(Behaviour::Approve, Expiry { month: 12, year: 2026 }, Presence::OnFile, now).is_ok());
        assert!(Expiry::parse(11, 2026, now).unwrap_err().to_string().contains("expired"));
        assert_eq!(Expiry::parse(12, 2026, now), Ok(Expiry { month: 12, year: 2026 }));
    }

    #[test]
    fn dunning_retries_after_one_three_and_seven_days_then_stops() {
        let calendar = Calendar::short(30);
        let schedule = DunningSchedule::default();
        let failed = at("2027-01-01T00:00:00Z");
        let next = |now: &str| schedule.next_attempt(&calendar, failed, at(now));
        assert_eq!(next("2027-01-01T00:00:00Z"), Some(at("2027-01-01T00:00:01Z")));
        assert_eq!(next("2027-01-01T00:00:01Z"), Some(at("2027-01-01T00:00:03Z")));
        // A decline the customer asked for between two retries costs no retry.
        assert_eq!(next("2027-01-01T00:00:02Z"), Some(at("2027-01-01T00:00:03Z")));
        assert_eq!(next("2027-01-01T00:00:03Z"), Some(at("2027-01-01T00:00:07Z")));
        assert_eq!(next("2027-01-01T00:00:07Z"), None);
        assert_eq!(DunningSchedule::parse("2, 5"), Ok(DunningSchedule { retry_days: vec![2, 5] }));
        assert!(DunningSchedule::parse("3,1").is_err());
        assert!(DunningSchedule::parse("").is_err());
    }

    #[test]
    fn invoices_are_paid_or_voided_only_while_unsettled() {
        use InvoiceStatus::*;
        assert!(Failed.pay_now().is_ok());
        assert_eq!(Paid.pay_now().unwrap_err().to_string(), "an invoice that is PAID cannot be paid again");
        assert_eq!(Failed.void(), Ok(Void));
        assert!(Paid.void().is_err());
        for status in InvoiceStatus::ALL {
            assert_eq!(InvoiceStatus::parse(status.as_str()), Ok(*status));
        }
    }

    #[test]
    fn a_payment_is_refunded_at_most_once() {
        assert_eq!(PaymentStatus::Paid.refund(), Ok(PaymentStatus::Refunded));
        assert_eq!(
            PaymentStatus::Refunded.refund().unwrap_err().to_string(),
            "a payment that is REFUNDED cannot be refunded"
        );
    }

    #[test]
    fn only_a_positive_amount_is_charged() {
        assert_eq!(Amount::parse(19_900).map(Amount::won), Ok(19_900));
        assert!(Amount::parse(0).is_err());
        assert!(Amount::parse(-1).is_err());
    }
}
