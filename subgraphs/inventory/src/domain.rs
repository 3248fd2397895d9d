//! Catalog and stock rules, free of I/O: what a valid product and a valid restock look
//! like, and what a shipment does to stock.

use subgraph_kit::ApiError;
use subgraph_kit::text_enum;

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
pub const MAX_MONTHLY_FEE: i32 = 10_000_000;
pub const MAX_STOCK: i32 = 1_000_000;
pub const MAX_RESTOCK: i32 = 10_000;

/// 1-100 characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let name = text.trim();
        if name.is_empty() {
            return Err(ApiError::bad_input("name must not be empty"));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(ApiError::bad_input(format!("name must be at most {MAX_NAME_CHARS} characters")));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Up to 2000 characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let description = text.trim();
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(ApiError::bad_input(format!("description must be at most {MAX_DESCRIPTION_CHARS} characters")));
        }
        Ok(Self(description.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A monthly fee in won (KRW has no minor unit): 1 to 10,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthlyFee(i32);

impl MonthlyFee {
    pub fn parse(won: i32) -> Result<Self, ApiError> {
        if !(1..=MAX_MONTHLY_FEE).contains(&won) {
            return Err(ApiError::bad_input(format!(
                "monthlyFee must be between 1 and {MAX_MONTHLY_FEE} won, got {won}"
            )));
        }
        Ok(Self(won))
    }

    pub fn won(self) -> i32 {
        self.0
    }
}

/// Units a new product starts with: 0 to 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialStock(i32);

impl InitialStock {
    pub fn parse(units: i32) -> Result<Self, ApiError> {
        if !(0..=MAX_STOCK).contains(&units) {
            return Err(ApiError::bad_input(format!("initialStock must be between 0 and {MAX_STOCK}, got {units}")));
        }
        Ok(Self(units))
    }

    pub fn units(self) -> i32 {
        self.0
    }
}

/// Months between two filter-care visits of a product: 1 to 24 (4 when not said).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CareInterval(i32);

impl CareInterval {
    pub const DEFAULT: CareInterval = CareInterval(contracts::DEFAULT_CARE_INTERVAL_MONTHS);

    pub fn parse(months: i32) -> Result<Self, ApiError> {
        if !(1..=24).contains(&months) {
            return Err(ApiError::bad_input(format!("careIntervalMonths must be between 1 and 24, got {months}")));
        }
        Ok(Self(months))
    }

    pub fn months(self) -> i32 {
        self.0
    }
}

/// A product that passed validation and may be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: ProductName,
    pub description: Description,
    pub monthly_fee: MonthlyFee,
    pub initial_stock: InitialStock,
    pub care_interval: CareInterval,
}

impl NewProduct {
    pub fn parse(
        name: &str,
        description: &str,
        monthly_fee: i32,
        initial_stock: i32,
        care_interval_months: Option<i32>,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            name: ProductName::parse(name)?,
            description: Description::parse(description)?,
            monthly_fee: MonthlyFee::parse(monthly_fee)?,
            initial_stock: InitialStock::parse(initial_stock)?,
            care_interval: care_interval_months.map_or(Ok(CareInterval::DEFAULT), CareInterval::parse)?,
        })
    }
}

/// Units added by one restock: a positive number, within reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestockQuantity(i32);

impl RestockQuantity {
    pub fn parse(units: i32) -> Result<Self, ApiError> {
        if units <= 0 {
            return Err(ApiError::bad_input(format!("quantity must be a positive number of units, got {units}")));
        }
        if units > MAX_RESTOCK {
            return Err(ApiError::bad_input(format!("quantity must be at most {MAX_RESTOCK} units per restock")));
        }
        Ok(Self(units))
    }

    pub fn units(self) -> i32 {
        self.0
    }
}

text_enum! {
    /// What inventory did for one delivery, so that its start and its cancellation
    /// each apply exactly once, whatever order they arrive in.
    pub enum ShipmentState: "shipment state" {
        /// One unit left the shelf for it.
        Taken = "TAKEN",
        /// It started with no unit on hand; it waits for a restock.
        Short = "SHORT",
        /// It was cancelled after it started; its unit is back (or its wait is over).
        Returned = "RETURNED",
        /// It was cancelled before its start arrived here; a late start takes nothing.
        Cancelled = "CANCELLED",
        /// It was delivered, and its unit came back with the pickup at the end of the
        /// rental.
        Collected = "COLLECTED",
    }
}

text_enum! {
    /// Why a product's stock changed (the ledger, `stock_movements`).
    pub enum MovementReason: "stock movement" {
        Created = "CREATED",
        Restocked = "RESTOCKED",
        Taken = "TAKEN",
        Returned = "RETURNED",
        Collected = "COLLECTED",
    }
}

/// What a started delivery does, given what inventory already did for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStart {
    /// Take a unit if there is one, otherwise record the shortage.
    TakeOrWait,
    /// Cancelled before the start arrived, or handled already: nothing.
    Nothing,
}

pub fn on_start(shipment: Option<ShipmentState>) -> OnStart {
    match shipment {
        None => OnStart::TakeOrWait,
        Some(_) => OnStart::Nothing,
    }
}

/// What a cancelled delivery gives back, given what inventory did for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCancel {
    /// Its unit returns to the shelf (and may serve a waiting shipment).
    ReturnUnit,
    /// It leaves the shortage queue.
    LeaveQueue,
    /// Its start has not arrived: mark it, so a late start takes nothing.
    MarkCancelled,
    /// Handled already.
    Nothing,
}

pub fn on_cancel(shipment: Option<ShipmentState>) -> OnCancel {
    match shipment {
        Some(ShipmentState::Taken) => OnCancel::ReturnUnit,
        Some(ShipmentState::Short) => OnCancel::LeaveQueue,
        Some(ShipmentState::Returned | ShipmentState::Cancelled | ShipmentState::Collected) => OnCancel::Nothing,
        None => OnCancel::MarkCancelled,
    }
}

/// What a completed pickup does, given what inventory did for the delivery it collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPickup {
    /// The unit that left with the delivery is back on the shelf.
    Collect,
    /// It came back already (a replayed event): nothing, so no unit counts twice.
    Nothing,
}

/// Only a unit that left (TAKEN) can come back; anything else contradicts the records.
pub fn on_pickup(shipment: Option<ShipmentState>) -> Result<OnPickup, String> {
    match shipment {
        Some(ShipmentState::Taken) => Ok(OnPickup::Collect),
        Some(ShipmentState::Collected) => Ok(OnPickup::Nothing),
        other => Err(format!("a pickup collects a unit that never left for its delivery (shipment {other:?})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sensible_product_passes_and_is_trimmed() {
        let product = NewProduct::parse("  AquaPure Mini ", "", 19_900, 3, None).unwrap();
        assert_eq!(product.name.as_str(), "AquaPure Mini");
    }

    #[test]
    fn each_bad_field_is_named_in_its_error() {
        let cases = [
            (NewProduct::parse(" ", "", 1, 0, None), "name"),
            (NewProduct::parse(&"x".repeat(101), "", 1, 0, None), "name"),
            (NewProduct::parse("a", &"x".repeat(2001), 1, 0, None), "description"),
            (NewProduct::parse("a", "", 0, 0, None), "monthlyFee"),
            (NewProduct::parse("a", "", 1, -1, None), "initialStock"),
            (NewProduct::parse("a", "", 1, 1, Some(30)), "careIntervalMonths"),
        ];
        for (result, field) in cases {
            let error = result.unwrap_err();
            assert_eq!(error.code, subgraph_kit::ErrorCode::BadUserInput);
            assert!(error.message.starts_with(field), "{} should name {field}", error.message);
        }
    }

    #[test]
    fn restock_needs_a_positive_bounded_quantity() {
        assert_eq!(RestockQuantity::parse(5).map(RestockQuantity::units), Ok(5));
        assert!(RestockQuantity::parse(0).is_err());
        assert!(RestockQuantity::parse(-3).is_err());
        assert!(RestockQuantity::parse(MAX_RESTOCK + 1).is_err());
    }

    #[test]
    fn a_shipment_takes_once_and_gives_back_what_it_took() {
        assert_eq!(on_start(None), OnStart::TakeOrWait);
        for handled in ShipmentState::ALL_STATES {
            assert_eq!(on_start(Some(*handled)), OnStart::Nothing, "{handled:?}");
        }
        assert_eq!(on_cancel(Some(ShipmentState::Taken)), OnCancel::ReturnUnit);
        assert_eq!(on_cancel(Some(ShipmentState::Short)), OnCancel::LeaveQueue);
        assert_eq!(on_cancel(None), OnCancel::MarkCancelled);
        assert_eq!(on_cancel(Some(ShipmentState::Returned)), OnCancel::Nothing);
    }

    #[test]
    fn a_pickup_returns_the_unit_once() {
        assert_eq!(on_pickup(Some(ShipmentState::Taken)), Ok(OnPickup::Collect));
        assert_eq!(on_pickup(Some(ShipmentState::Collected)), Ok(OnPickup::Nothing));
        assert!(on_pickup(Some(ShipmentState::Short)).is_err());
        assert!(on_pickup(None).is_err());
        assert_eq!(CareInterval::parse(4), Ok(CareInterval(4)));
        assert!(CareInterval::parse(0).unwrap_err().message.starts_with("careIntervalMonths"));
        assert!(CareInterval::parse(25).is_err());
    }

    impl ShipmentState {
        const ALL_STATES: &[ShipmentState] = <ShipmentState as subgraph_kit::domain::TextEnum>::ALL;
    }
}
