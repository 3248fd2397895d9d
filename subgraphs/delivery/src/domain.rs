//! The delivery state machine, free of I/O.
//!
//! ```text
//! REQUESTED ──start──▶ SHIPPING ──complete──▶ DELIVERED
//!     │                    │
//!     └──────cancel────────┴──▶ CANCELLED
//! ```

use std::fmt;
use std::str::FromStr;

use async_graphql::Enum;

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting in the operators' queue.
    Requested,
    /// On its way to the customer.
    Shipping,
    /// At the customer's door; the rental is active.
    Delivered,
    /// Called off because the rental was cancelled.
    Cancelled,
}

/// Why a transition is not allowed, in words for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalTransition {
    pub from: DeliveryStatus,
    pub action: &'static str,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a delivery that is {} cannot be {}", self.from.as_str(), self.action)
    }
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Requested => "REQUESTED",
            DeliveryStatus::Shipping => "SHIPPING",
            DeliveryStatus::Delivered => "DELIVERED",
            DeliveryStatus::Cancelled => "CANCELLED",
        }
    }

    /// No further change is possible.
    pub fn is_terminal(self) -> bool {
        matches!(self, DeliveryStatus::Delivered | DeliveryStatus::Cancelled)
    }

    pub fn start(self) -> Result<DeliveryStatus, IllegalTransition> {
        match self {
            DeliveryStatus::Requested => Ok(DeliveryStatus::Shipping),
            from => Err(IllegalTransition { from, action: "started" }),
        }
    }

    pub fn complete(self) -> Result<DeliveryStatus, IllegalTransition> {
        match self {
            DeliveryStatus::Shipping => Ok(DeliveryStatus::Delivered),
            from => Err(IllegalTransition { from, action: "completed" }),
        }
    }

    pub fn cancel(self) -> Result<DeliveryStatus, IllegalTransition> {
        match self {
            DeliveryStatus::Requested | DeliveryStatus::Shipping => Ok(DeliveryStatus::Cancelled),
            from => Err(IllegalTransition { from, action: "cancelled" }),
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "REQUESTED" => Ok(DeliveryStatus::Requested),
            "SHIPPING" => Ok(DeliveryStatus::Shipping),
            "DELIVERED" => Ok(DeliveryStatus::Delivered),
            "CANCELLED" => Ok(DeliveryStatus::Cancelled),
            other => Err(format!("unknown delivery status {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryStatus::*;

    #[test]
    fn the_happy_path_runs_requested_shipping_delivered() {
        assert_eq!(Requested.start().and_then(|s| s.complete()), Ok(Delivered));
        assert!(Delivered.is_terminal());
    }

    #[test]
    fn illegal_moves_are_refused_with_a_sentence() {
        assert!(Requested.complete().is_err());
        assert!(Shipping.start().is_err());
        assert!(Delivered.cancel().is_err());
        assert!(Cancelled.start().is_err());
        assert_eq!(Delivered.start().unwrap_err().to_string(), "a delivery that is DELIVERED cannot be started");
    }

    #[test]
    fn cancelling_works_until_delivery() {
        assert_eq!(Requested.cancel(), Ok(Cancelled));
        assert_eq!(Shipping.cancel(), Ok(Cancelled));
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in [Requested, Shipping, Delivered, Cancelled] {
            assert_eq!(status.as_str().parse::<super::DeliveryStatus>(), Ok(status));
        }
    }
}
