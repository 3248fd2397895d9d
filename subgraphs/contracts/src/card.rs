//! Card numbers and expiries: checked where they enter (rental) and where they are
//! charged (payment), and a number is never shown or stored in full.

use chrono::{DateTime, Datelike, Utc};

/// A card number that passed validation. It lives only in memory, for the one call to
/// the card network: `Debug` shows the last four digits only, and nothing stores it.
pub struct CardNumber(String);

impl std::fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardNumber(…{})", self.last4())
    }
}

impl CardNumber {
    /// 12 to 19 digits (spaces and dashes allowed) with a valid Luhn check digit.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let digits: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) || !(12..=19).contains(&digits.len()) {
            return Err("cardNumber must be 12 to 19 digits");
        }
        if !luhn_valid(&digits) {
            return Err("cardNumber is not a valid card number (its check digit is wrong)");
        }
        Ok(Self(digits))
    }

    pub fn last4(&self) -> String {
        self.0[self.0.len() - 4..].to_owned()
    }
}

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

impl CardNumber {
    /// The digits, for the card network and nothing else.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

/// When a card expires: the end of its expiry month. It travels with the card number
/// from rental (which checks what the customer typed) to payment (which keeps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub month: i32,
    pub year: i32,
}

/// Why an expiry is refused; each caller names its own fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryRefused {
    /// The month is not 1-12.
    Month,
    /// The year is not a four-digit year from this year to 20 years ahead.
    Year { this_year: i32 },
    /// The card has expired.
    Passed { month: i32, year: i32 },
}

impl ExpiryRefused {
    /// The refusal in words, naming the fields as the caller's input names them.
    pub fn describe(self, month_field: &str, year_field: &str, month: i32, year: i32) -> String {
        match self {
            ExpiryRefused::Month => format!("{month_field} must be between 1 and 12, got {month}"),
            ExpiryRefused::Year { this_year } => {
                format!("{year_field} must be a four-digit year from {this_year} to {}, got {year}", this_year + 20)
            }
            ExpiryRefused::Passed { month, year } => {
                format!("the card expired at the end of {month:02}/{year}: use a card that is still valid")
            }
        }
    }
}

impl std::fmt::Display for ExpiryRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (month, year) = match self {
            ExpiryRefused::Passed { month, year } => (*month, *year),
            _ => (0, 0),
        };
        f.write_str(&self.describe("the expiry month", "the expiry year", month, year))
    }
}

impl Expiry {
    /// A card's expiry as the customer types it: month 1-12, a four-digit year, not in
    /// the past and at most 20 years ahead.
    pub fn parse(month: i32, year: i32, now: DateTime<Utc>) -> Result<Self, ExpiryRefused> {
        if !(1..=12).contains(&month) {
            return Err(ExpiryRefused::Month);
        }
        let this_year = now.year();
        if !(this_year..=this_year + 20).contains(&year) {
            return Err(ExpiryRefused::Year { this_year });
        }
        let expiry = Self { month, year };
        if expiry.has_passed(now) {
            return Err(ExpiryRefused::Passed { month, year });
        }
        Ok(expiry)
    }

    /// The expiry of a card given without one (a `rent` that names no expiry): test
    /// cards accept any future date, so the end of the year five years from now.
    pub fn assumed(now: DateTime<Utc>) -> Self {
        Self { month: 12, year: now.year() + 5 }
    }

    /// True once the expiry month is over.
    pub fn has_passed(self, at: DateTime<Utc>) -> bool {
        (at.year(), at.month() as i32) > (self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_is_a_month_and_a_year_still_ahead() {
        let now: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        assert_eq!(Expiry::parse(12, 2026, now), Ok(Expiry { month: 12, year: 2026 }));
        assert_eq!(Expiry::parse(11, 2026, now), Err(ExpiryRefused::Passed { month: 11, year: 2026 }));
        assert_eq!(Expiry::parse(13, 2027, now), Err(ExpiryRefused::Month));
        assert_eq!(Expiry::parse(1, 27, now), Err(ExpiryRefused::Year { this_year: 2026 }));
        assert!(ExpiryRefused::Month.describe("cardExpMonth", "cardExpYear", 13, 2027).starts_with("cardExpMonth"));
    }

    #[test]
    fn card_numbers_are_checked_and_only_the_last_four_digits_show() {
        let card = CardNumber::parse("4242 4242 4242 4242").unwrap();
        assert_eq!(card.last4(), "4242");
        assert_eq!(format!("{card:?}"), "CardNumber(…4242)");
        assert!(CardNumber::parse("4242424242424241").is_err(), "bad check digit");
        assert!(CardNumber::parse("4242abcd42424242").is_err());
        assert!(CardNumber::parse("4242").is_err());
    }
}
