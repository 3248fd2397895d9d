//! The rental state machine, free of I/O.
//!
//! ```text
//! ACCEPTED ──delivered──▶ ACTIVE
//!     │                       ▲
//!     └──cancel──▶ CANCELLED ─┘ reinstated: the delivery had completed first
//! ```

use std::fmt;
use std::str::FromStr;

use async_graphql::Enum;
use sha2::{Digest, Sha256};
use subgraph_kit::ApiError;
use subgraph_kit::card::CardNumber;
use uuid::Uuid;

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RentalStatus {
    /// Paid; the dispenser is on its way or waiting to ship.
    Accepted,
    /// Delivered and in use.
    Active,
    /// Cancelled before delivery; the payment is refunded.
    Cancelled,
}

/// Why a transition is not allowed, in words for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalTransition {
    pub from: RentalStatus,
    pub action: &'static str,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a rental that is {} cannot be {}", self.from.as_str(), self.action)
    }
}

impl RentalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RentalStatus::Accepted => "ACCEPTED",
            RentalStatus::Active => "ACTIVE",
            RentalStatus::Cancelled => "CANCELLED",
        }
    }

    /// The dispenser was delivered: the rental starts running.
    pub fn activate(self) -> Result<RentalStatus, IllegalTransition> {
        match self {
            RentalStatus::Accepted => Ok(RentalStatus::Active),
            from => Err(IllegalTransition { from, action: "activated" }),
        }
    }

    /// The delivery had already completed when the cancellation reached it: the
    /// cancellation did not take effect and the rental runs.
    pub fn reinstate(self) -> Result<RentalStatus, IllegalTransition> {
        match self {
            RentalStatus::Cancelled => Ok(RentalStatus::Active),
            from => Err(IllegalTransition { from, action: "reinstated" }),
        }
    }

    /// The customer or an operator cancels before delivery.
    pub fn cancel(self) -> Result<RentalStatus, IllegalTransition> {
        match self {
            RentalStatus::Accepted => Ok(RentalStatus::Cancelled),
            from => Err(IllegalTransition { from, action: "cancelled" }),
        }
    }
}

impl FromStr for RentalStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "ACCEPTED" => Ok(RentalStatus::Accepted),
            "ACTIVE" => Ok(RentalStatus::Active),
            "CANCELLED" => Ok(RentalStatus::Cancelled),
            other => Err(format!("unknown rental status {other:?}")),
        }
    }
}

/// What can happen to a rental, as its customer reads it in the timeline.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimelineKind {
    /// The first month was charged.
    Paid,
    DeliveryRequested,
    Shipped,
    Delivered,
    Cancelled,
    Refunded,
}

impl TimelineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimelineKind::Paid => "PAID",
            TimelineKind::DeliveryRequested => "DELIVERY_REQUESTED",
            TimelineKind::Shipped => "SHIPPED",
            TimelineKind::Delivered => "DELIVERED",
            TimelineKind::Cancelled => "CANCELLED",
            TimelineKind::Refunded => "REFUNDED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Paid, Self::DeliveryRequested, Self::Shipped, Self::Delivered, Self::Cancelled, Self::Refunded]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// The timeline entry an event type stands for.
    pub fn of_event(event_type: &str) -> Option<Self> {
        match event_type {
            "payment.charged" => Some(Self::Paid),
            "payment.refunded" => Some(Self::Refunded),
            "delivery.requested" => Some(Self::DeliveryRequested),
            "delivery.started" => Some(Self::Shipped),
            "delivery.completed" => Some(Self::Delivered),
            _ => None,
        }
    }
}

pub const MAX_MONTHS: i32 = 60;
pub const MAX_ADDRESS_CHARS: usize = 500;
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 100;

/// A rent request that passed validation.
#[derive(Debug)]
pub struct RentRequest {
    pub product_id: Uuid,
    pub months: i32,
    pub delivery_address: String,
    pub card: CardNumber,
    pub idempotency_key: String,
}

impl RentRequest {
    pub fn validate(
        product_id: Uuid,
        months: i32,
        delivery_address: &str,
        card_number: &str,
        idempotency_key: &str,
    ) -> Result<Self, ApiError> {
        if !(1..=MAX_MONTHS).contains(&months) {
            return Err(ApiError::bad_input(format!("months must be between 1 and {MAX_MONTHS}, got {months}")));
        }
        let delivery_address = delivery_address.trim();
        if delivery_address.is_empty() {
            return Err(ApiError::bad_input("deliveryAddress must not be empty"));
        }
        if delivery_address.chars().count() > MAX_ADDRESS_CHARS {
            return Err(ApiError::bad_input(format!("deliveryAddress must be at most {MAX_ADDRESS_CHARS} characters")));
        }
        let idempotency_key = idempotency_key.trim();
        if idempotency_key.is_empty() || idempotency_key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
            return Err(ApiError::bad_input(format!(
                "idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters (a UUID is a good choice)"
            )));
        }
        let card = CardNumber::parse(card_number).map_err(ApiError::bad_input)?;
        Ok(Self {
            product_id,
            months,
            delivery_address: delivery_address.to_owned(),
            card,
            idempotency_key: idempotency_key.to_owned(),
        })
    }

    /// A fingerprint of what was asked, to tell a retry from a different request under
    /// the same key. It covers the card's last four digits, not the number: the full
    /// number must not be stored, not even hashed (card numbers are easy to brute-force).
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for part in
            [self.product_id.to_string(), self.months.to_string(), self.delivery_address.clone(), self.card.last4()]
        {
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
        RentRequest::validate(Uuid::nil(), 12, " Seoul ", "4242424242424242", "key-1").unwrap()
    }

    #[test]
    fn a_valid_request_is_trimmed_and_fingerprinted_without_the_card_number() {
        let request = valid();
        assert_eq!(request.delivery_address, "Seoul");
        assert_eq!(request.fingerprint(), valid().fingerprint());
        assert_eq!(request.fingerprint().len(), 64);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (RentRequest::validate(Uuid::nil(), 0, "a", "4242424242424242", "k"), "months"),
            (RentRequest::validate(Uuid::nil(), 61, "a", "4242424242424242", "k"), "months"),
            (RentRequest::validate(Uuid::nil(), 1, "  ", "4242424242424242", "k"), "deliveryAddress"),
            (RentRequest::validate(Uuid::nil(), 1, &"x".repeat(501), "4242424242424242", "k"), "deliveryAddress"),
            (RentRequest::validate(Uuid::nil(), 1, "a", "1234", "k"), "cardNumber"),
            (RentRequest::validate(Uuid::nil(), 1, "a", "4242424242424242", ""), "idempotencyKey"),
        ];
        for (result, field) in cases {
            let error = result.unwrap_err();
            assert_eq!(error.code, subgraph_kit::ErrorCode::BadUserInput);
            assert!(error.message.starts_with(field), "{} should name {field}", error.message);
        }
    }

    #[test]
    fn only_an_accepted_rental_can_be_activated_or_cancelled() {
        assert_eq!(Accepted.activate(), Ok(Active));
        assert_eq!(Accepted.cancel(), Ok(Cancelled));
        for status in [Active, Cancelled] {
            assert!(status.activate().is_err());
            assert!(status.cancel().is_err());
        }
        assert_eq!(Active.cancel().unwrap_err().to_string(), "a rental that is ACTIVE cannot be cancelled");
        assert_eq!(Cancelled.reinstate(), Ok(Active));
        assert!(Accepted.reinstate().is_err());
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in [Accepted, Active, Cancelled] {
            assert_eq!(status.as_str().parse::<super::RentalStatus>(), Ok(status));
        }
    }
}
