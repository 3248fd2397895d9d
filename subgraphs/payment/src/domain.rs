//! Payment rules, free of I/O: a payment is paid, then maybe refunded once; what a
//! valid charge is; and the simulated card network (the only simulated part of the
//! system).

use subgraph_kit::ApiError;
use subgraph_kit::domain::{IllegalTransition, TextEnum};
use subgraph_kit::text_enum;
use uuid::Uuid;

pub use contracts::CardNumber;

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

/// What rental asks to charge: a rental's first month, once.
#[derive(Debug)]
pub struct ChargeRequest {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub amount: Amount,
    pub card: CardNumber,
}

/// The card network's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization {
    Approved,
    Declined,
}

/// The simulated card network: the documented test cards approve and decline; any
/// other number is declined, as a real network would for a card it does not know.
pub fn authorize(card: &CardNumber) -> Authorization {
    match card.digits() {
        "4242424242424242" => Authorization::Approved,
        _ => Authorization::Declined,
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus::*;
    use super::*;

    #[test]
    fn the_test_cards_approve_and_decline() {
        assert_eq!(authorize(&CardNumber::parse("4242424242424242").unwrap()), Authorization::Approved);
        assert_eq!(authorize(&CardNumber::parse("4000000000000002").unwrap()), Authorization::Declined);
    }

    #[test]
    fn a_payment_is_refunded_at_most_once() {
        assert_eq!(Paid.refund(), Ok(Refunded));
        assert_eq!(Refunded.refund().unwrap_err().to_string(), "a payment that is REFUNDED cannot be refunded");
        for status in [Paid, Refunded] {
            assert_eq!(PaymentStatus::parse(status.as_str()), Ok(status));
        }
    }

    #[test]
    fn only_a_positive_amount_is_charged() {
        assert_eq!(Amount::parse(19_900).map(Amount::won), Ok(19_900));
        assert!(Amount::parse(0).is_err());
        assert!(Amount::parse(-1).is_err());
    }
}
