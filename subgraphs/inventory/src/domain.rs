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

/// A product that passed validation and may be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: ProductName,
    pub description: Description,
    pub monthly_fee: MonthlyFee,
    pub initial_stock: InitialStock,
}

impl NewProduct {
    pub fn parse(name: &str, description: &str, monthly_fee: i32, initial_stock: i32) -> Result<Self, ApiError> {
        Ok(Self {
            name: ProductName::parse(name)?,
            description: Description::parse(description)?,
            monthly_fee: MonthlyFee::parse(monthly_fee)?,
            initial_stock: InitialStock::parse(initial_stock)?,
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
    }
}

text_enum! {
    /// Why a product's stock changed (the ledger, `stock_movements`).
    pub enum MovementReason: "stock movement" {
        Created = "CREATED",
        Restocked = "RESTOCKED",
        Taken = "TAKEN",
        Returned = "RETURNED",
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
        Some(ShipmentState::Returned | ShipmentState::Cancelled) => OnCancel::Nothing,
        None => OnCancel::MarkCancelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sensible_product_passes_and_is_trimmed() {
        let product = NewProduct::parse("  AquaPure Mini ", "", 19_900, 3).unwrap();
        assert_eq!(product.name.as_str(), "AquaPure Mini");
    }

    #[test]
    fn each_bad_field_is_named_in_its_error() {
        let cases = [
            (NewProduct::parse(" ", "", 1, 0), "name"),
            (NewProduct::parse(&"x".repeat(101), "", 1, 0), "name"),
            (NewProduct::parse("a", &"x".repeat(2001), 1, 0), "description"),
            (NewProduct::parse("a", "", 0, 0), "monthlyFee"),
            (NewProduct::parse("a", "", 1, -1), "initialStock"),
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

    impl ShipmentState {
        const ALL_STATES: &[ShipmentState] = <ShipmentState as subgraph_kit::domain::TextEnum>::ALL;
    }
}
