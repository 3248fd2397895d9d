//! Card numbers: checked where they enter (rental) and where they are charged
//! (payment), and never shown or stored in full.

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

#[cfg(test)]
mod tests {
    use super::*;

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
