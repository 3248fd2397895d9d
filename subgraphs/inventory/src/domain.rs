//! Catalog rules, free of I/O: what a valid product and a valid restock look like.

use subgraph_kit::ApiError;

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
pub const MAX_MONTHLY_FEE: i32 = 10_000_000;
pub const MAX_STOCK: i32 = 1_000_000;
pub const MAX_RESTOCK: i32 = 10_000;

/// A product that passed validation and may be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: String,
    pub description: String,
    pub monthly_fee: i32,
    pub initial_stock: i32,
}

impl NewProduct {
    pub fn validate(name: &str, description: &str, monthly_fee: i32, initial_stock: i32) -> Result<Self, ApiError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(ApiError::bad_input("name must not be empty"));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(ApiError::bad_input(format!("name must be at most {MAX_NAME_CHARS} characters")));
        }
        let description = description.trim();
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(ApiError::bad_input(format!("description must be at most {MAX_DESCRIPTION_CHARS} characters")));
        }
        if !(1..=MAX_MONTHLY_FEE).contains(&monthly_fee) {
            return Err(ApiError::bad_input(format!(
                "monthlyFee must be between 1 and {MAX_MONTHLY_FEE} won, got {monthly_fee}"
            )));
        }
        if !(0..=MAX_STOCK).contains(&initial_stock) {
            return Err(ApiError::bad_input(format!(
                "initialStock must be between 0 and {MAX_STOCK}, got {initial_stock}"
            )));
        }
        Ok(Self { name: name.to_owned(), description: description.to_owned(), monthly_fee, initial_stock })
    }
}

/// Checks a restock quantity: a positive number of units, within reason.
pub fn validate_restock(quantity: i32) -> Result<i32, ApiError> {
    if quantity <= 0 {
        return Err(ApiError::bad_input(format!("quantity must be a positive number of units, got {quantity}")));
    }
    if quantity > MAX_RESTOCK {
        return Err(ApiError::bad_input(format!("quantity must be at most {MAX_RESTOCK} units per restock")));
    }
    Ok(quantity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sensible_product_passes_and_is_trimmed() {
        let product = NewProduct::validate("  AquaPure Mini ", "", 19_900, 3).unwrap();
        assert_eq!(product.name, "AquaPure Mini");
    }

    #[test]
    fn each_bad_field_is_named_in_its_error() {
        let cases = [
            (NewProduct::validate(" ", "", 1, 0), "name"),
            (NewProduct::validate(&"x".repeat(101), "", 1, 0), "name"),
            (NewProduct::validate("a", &"x".repeat(2001), 1, 0), "description"),
            (NewProduct::validate("a", "", 0, 0), "monthlyFee"),
            (NewProduct::validate("a", "", 1, -1), "initialStock"),
        ];
        for (result, field) in cases {
            let error = result.unwrap_err();
            assert_eq!(error.code, subgraph_kit::ErrorCode::BadUserInput);
            assert!(error.message.starts_with(field), "{} should name {field}", error.message);
        }
    }

    #[test]
    fn restock_needs_a_positive_bounded_quantity() {
        assert_eq!(validate_restock(5), Ok(5));
        assert!(validate_restock(0).is_err());
        assert!(validate_restock(-3).is_err());
        assert!(validate_restock(MAX_RESTOCK + 1).is_err());
    }
}
