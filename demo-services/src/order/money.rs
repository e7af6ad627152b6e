//! Money in integer minor units (cents).
//!
//! Prices arrive as JSON numbers, which are binary floats: `0.1` is not
//! 0.1, and three of them do not add up to 0.3. So a price is checked to
//! have at most two decimal places, turned into whole cents once, and all
//! arithmetic and storage is in cents; a JSON answer shows cents / 100,
//! which serializes as the shortest decimal that reads back to it (`0.3`,
//! `19.98`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of money in cents, never negative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cents(i64);

/// The highest price of one item: 1,000,000,000.00.
pub const MAX_PRICE: Cents = Cents(100_000_000_000);

/// A number that is not an amount of money the service accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyError {
    /// Negative, or above [`MAX_PRICE`].
    OutOfRange,
    /// More than two decimal places, e.g. `0.125`.
    TooPrecise,
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MoneyError::OutOfRange => "must be a number from 0 to 1000000000",
            MoneyError::TooPrecise => "must have at most two decimal places",
        })
    }
}

impl std::error::Error for MoneyError {}

impl Cents {
    /// This many cents.
    pub fn new(cents: i64) -> Cents {
        Cents(cents.max(0))
    }

    /// The amount in cents.
    pub fn get(self) -> i64 {
        self.0
    }

    /// A price written as a JSON number, e.g. `9.99`: at least 0, at most
    /// [`MAX_PRICE`], with at most two decimal places.
    pub fn from_decimal(amount: f64) -> Result<Cents, MoneyError> {
        Cents::from_decimal_up_to(amount, MAX_PRICE)
    }

    /// Like [`from_decimal`](Cents::from_decimal), up to `max`.
    fn from_decimal_up_to(amount: f64, max: Cents) -> Result<Cents, MoneyError> {
        if !amount.is_finite() || amount < 0.0 || amount > max.as_f64() {
            return Err(MoneyError::OutOfRange);
        }
        let cents = (amount * 100.0).round();
        // A number with two decimals parses to the float nearest to it, and
        // so does cents / 100: they agree to within float rounding. A third
        // decimal is off by at least 0.001, far above that.
        if (cents / 100.0 - amount).abs() > amount * 4.0 * f64::EPSILON {
            return Err(MoneyError::TooPrecise);
        }
        Ok(Cents(cents as i64))
    }

    /// `self × quantity`, `None` on overflow.
    pub fn times(self, quantity: i64) -> Option<Cents> {
        self.0.checked_mul(quantity).filter(|c| *c >= 0).map(Cents)
    }

    /// `self + other`, `None` on overflow.
    pub fn plus(self, other: Cents) -> Option<Cents> {
        self.0.checked_add(other.0).map(Cents)
    }

    /// The amount as a float, for JSON: the float nearest to the decimal.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// A JSON number: `19.98`.
impl Serialize for Cents {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

/// A JSON number with at most two decimals (any amount whose cents a
/// float holds exactly, not only prices: totals too).
impl<'de> Deserialize<'de> for Cents {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let amount = f64::deserialize(d)?;
        Cents::from_decimal_up_to(amount, Cents(1 << 53)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_decimals_at_most() {
        assert_eq!(Cents::from_decimal(9.99), Ok(Cents(999)));
        assert_eq!(Cents::from_decimal(0.1), Ok(Cents(10)));
        assert_eq!(Cents::from_decimal(5.0), Ok(Cents(500)));
        assert_eq!(Cents::from_decimal(1e9), Ok(MAX_PRICE));
        assert_eq!(
            Cents::from_decimal(999_999_999.99),
            Ok(Cents(99_999_999_999))
        );
        assert_eq!(Cents::from_decimal(0.125), Err(MoneyError::TooPrecise));
        assert_eq!(Cents::from_decimal(0.001), Err(MoneyError::TooPrecise));
        assert_eq!(Cents::from_decimal(1.005), Err(MoneyError::TooPrecise));
        assert_eq!(Cents::from_decimal(-1.0), Err(MoneyError::OutOfRange));
        assert_eq!(Cents::from_decimal(1e9 + 1.0), Err(MoneyError::OutOfRange));
    }

    #[test]
    fn sums_are_exact_and_serialize_short() {
        let dime = Cents::from_decimal(0.1).unwrap();
        let total = dime.times(3).unwrap();
        assert_eq!(total, Cents(30));
        assert_eq!(serde_json::to_string(&total).unwrap(), "0.3");
        assert_eq!(total.to_string(), "0.30");
        let total = Cents::from_decimal(9.99).unwrap().times(2).unwrap();
        assert_eq!(serde_json::to_string(&total).unwrap(), "19.98");
        assert_eq!(Cents(5).to_string(), "0.05");
    }
}
