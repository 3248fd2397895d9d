//! The payment state machine, free of I/O: a payment is paid, then maybe refunded once.

use std::str::FromStr;

use async_graphql::Enum;
pub use subgraph_kit::card::CardNumber;

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    /// The first month's fee was charged to the card.
    Paid,
    /// The charge was paid back to the card.
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Paid => "PAID",
            PaymentStatus::Refunded => "REFUNDED",
        }
    }

    /// Refunding twice is refused, so a retried refund never pays out twice.
    pub fn refund(self) -> Result<PaymentStatus, &'static str> {
        match self {
            PaymentStatus::Paid => Ok(PaymentStatus::Refunded),
            PaymentStatus::Refunded => Err("the payment has already been refunded"),
        }
    }
}

impl FromStr for PaymentStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "PAID" => Ok(PaymentStatus::Paid),
            "REFUNDED" => Ok(PaymentStatus::Refunded),
            other => Err(format!("unknown payment status {other:?}")),
        }
    }
}

/// The card network's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization {
    Approved,
    Declined,
}

/// The simulated card network (the only simulated part of the system): the documented
/// test cards approve and decline; any other number is declined, as a real network
/// would for a card it does not know.
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
        assert!(Refunded.refund().is_err());
        for status in [Paid, Refunded] {
            assert_eq!(status.as_str().parse::<super::PaymentStatus>(), Ok(status));
        }
    }
}
