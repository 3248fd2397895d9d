//! Rental rules, free of I/O: the rental state machine, what a valid rent request is,
//! the idempotency request's life, and the steps of the customer's timeline.
//!
//! ```text
//! ACCEPTED ──delivered──▶ ACTIVE
//!     │                       ▲
//!     └──cancel──▶ CANCELLED ─┘ reinstated: the delivery had completed first
//! ```

use sha2::{Digest, Sha256};
use subgraph_kit::domain::{IllegalTransition, TextEnum};
use subgraph_kit::{ApiError, text_enum};
use uuid::Uuid;

pub use contracts::CardNumber;

text_enum! {
    pub enum RentalStatus: "rental status" {
        /// Paid; the dispenser is on its way or waiting to ship.
        Accepted = "ACCEPTED",
        /// Delivered and in use.
        Active = "ACTIVE",
        /// Cancelled before delivery; the payment is refunded.
        Cancelled = "CANCELLED",
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
    /// The dispenser was delivered: the rental starts running. A rental cancelled
    /// meanwhile waits for delivery's verdict on the cancellation; one reinstated
    /// already (the events crossed) is active already.
    pub fn activate(self) -> Step {
        match self {
            RentalStatus::Accepted => Step::MovesTo(RentalStatus::Active),
            RentalStatus::Active | RentalStatus::Cancelled => Step::AlreadyThere,
        }
    }

    /// The delivery had already completed when the cancellation reached it: the
    /// cancellation did not take effect and the rental runs.
    pub fn reinstate(self) -> Result<Step, IllegalTransition> {
        match self {
            RentalStatus::Cancelled => Ok(Step::MovesTo(RentalStatus::Active)),
            RentalStatus::Active => Ok(Step::AlreadyThere),
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
}

text_enum! {
    /// What can happen to a rental, as its customer reads it in the timeline.
    pub enum TimelineKind: "timeline step" {
        /// The first month was charged.
        Paid = "PAID",
        DeliveryRequested = "DELIVERY_REQUESTED",
        Shipped = "SHIPPED",
        Delivered = "DELIVERED",
        Cancelled = "CANCELLED",
        Refunded = "REFUNDED",
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
pub const MAX_ADDRESS_CHARS: usize = 500;
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 100;

/// A contract length: 1 to 60 months.
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
    pub idempotency_key: IdempotencyKey,
}

impl RentRequest {
    pub fn parse(
        product_id: Uuid,
        months: i32,
        delivery_address: &str,
        card_number: &str,
        idempotency_key: &str,
    ) -> Result<Self, ApiError> {
        Ok(Self {
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
        RentRequest::parse(Uuid::nil(), 12, " Seoul ", "4242424242424242", "key-1").unwrap()
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
            (RentRequest::parse(Uuid::nil(), 0, "a", "4242424242424242", "k"), "months"),
            (RentRequest::parse(Uuid::nil(), 61, "a", "4242424242424242", "k"), "months"),
            (RentRequest::parse(Uuid::nil(), 1, "  ", "4242424242424242", "k"), "deliveryAddress"),
            (RentRequest::parse(Uuid::nil(), 1, &"x".repeat(501), "4242424242424242", "k"), "deliveryAddress"),
            (RentRequest::parse(Uuid::nil(), 1, "a", "1234", "k"), "cardNumber"),
            (RentRequest::parse(Uuid::nil(), 1, "a", "4242424242424242", ""), "idempotencyKey"),
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
    fn statuses_round_trip_through_text() {
        for status in RentalStatus::ALL {
            assert_eq!(RentalStatus::parse(status.as_str()), Ok(*status));
        }
        for kind in TimelineKind::ALL {
            assert_eq!(TimelineKind::parse(kind.as_str()), Ok(*kind));
        }
    }
}
