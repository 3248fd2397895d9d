//! The rental state machine, free of I/O.
//!
//! ```text
//! ACCEPTED ──delivered──▶ ACTIVE
//!     │
//!     └──cancel──▶ CANCELLED      (only before delivery)
//! ```

use std::fmt;
use std::str::FromStr;

use async_graphql::Enum;

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

#[cfg(test)]
mod tests {
    use super::RentalStatus::*;

    #[test]
    fn only_an_accepted_rental_can_be_activated_or_cancelled() {
        assert_eq!(Accepted.activate(), Ok(Active));
        assert_eq!(Accepted.cancel(), Ok(Cancelled));
        for status in [Active, Cancelled] {
            assert!(status.activate().is_err());
            assert!(status.cancel().is_err());
        }
        assert_eq!(Active.cancel().unwrap_err().to_string(), "a rental that is ACTIVE cannot be cancelled");
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in [Accepted, Active, Cancelled] {
            assert_eq!(status.as_str().parse::<super::RentalStatus>(), Ok(status));
        }
    }
}
