//! The delivery state machine and the rule that ties it to stock, free of I/O.
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

use subgraph_kit::domain::{IllegalTransition, TextEnum};
use subgraph_kit::{ApiError, ErrorCode, text_enum};

text_enum! {
    pub enum DeliveryStatus: "delivery status" {
        /// Waiting in the operators' queue.
        Requested = "REQUESTED",
        /// On its way to the customer.
        Shipping = "SHIPPING",
        /// At the customer's door; the rental is active.
        Delivered = "DELIVERED",
        /// Called off because the rental was cancelled.
        Cancelled = "CANCELLED",
    }
}

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

impl DeliveryStatus {
    /// No further change is possible.
    pub fn is_terminal(self) -> bool {
        matches!(self, DeliveryStatus::Delivered | DeliveryStatus::Cancelled)
    }

    /// An operator ships it.
    pub fn start(self) -> Result<Step, IllegalTransition> {
        match self {
            DeliveryStatus::Requested => Ok(Step::MovesTo(DeliveryStatus::Shipping)),
            DeliveryStatus::Shipping => Ok(Step::AlreadyThere),
            from => Err(refused(from, "started")),
        }
    }

    /// An operator hands it over: only a shipment whose unit inventory took.
    pub fn complete(self, unit: Unit) -> Result<Step, ApiError> {
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

    /// Its rental was cancelled.
    pub fn cancel(self) -> Result<Step, IllegalTransition> {
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

#[cfg(test)]
mod tests {
    use super::DeliveryStatus::*;
    use super::*;

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
