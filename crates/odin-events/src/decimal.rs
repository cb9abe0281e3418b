//! Decimal values that arrive as JSON strings or numbers and leave as strings.
//!
//! Prices and amounts are summed by the aggregator, so they are exact decimals, never floats.

use std::borrow::Cow;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serializer};

/// Why a decimal could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a decimal number")]
pub struct DecimalError {
    pub value: String,
}

/// Parses `"0.000125"`, `"1250"`, `"1.5e-7"` exactly.
pub fn parse(s: &str) -> Result<Decimal, DecimalError> {
    let t = s.trim();
    Decimal::from_str_exact(t)
        .or_else(|_| Decimal::from_scientific(t))
        .map_err(|_| DecimalError {
            value: s.to_owned(),
        })
}

/// A JSON number's shortest text (serde_json prints what it parsed) read as a decimal.
pub fn from_number(n: &serde_json::Number) -> Result<Decimal, DecimalError> {
    parse(&n.to_string())
}

/// A JSON value that is a decimal string or a number.
pub fn from_value(v: &serde_json::Value) -> Result<Decimal, DecimalError> {
    match v {
        serde_json::Value::String(s) => parse(s),
        serde_json::Value::Number(n) => from_number(n),
        other => Err(DecimalError {
            value: other.to_string(),
        }),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrNum<'a> {
    Str(#[serde(borrow)] Cow<'a, str>),
    Num(serde_json::Number),
}

/// Serde `deserialize_with`: a decimal string or a JSON number.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    match StrOrNum::deserialize(d)? {
        StrOrNum::Str(s) => parse(&s),
        StrOrNum::Num(n) => from_number(&n),
    }
    .map_err(serde::de::Error::custom)
}

/// Serde `deserialize_with` for optional fields.
pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    match Option::<StrOrNum>::deserialize(d)? {
        None => Ok(None),
        Some(StrOrNum::Str(s)) => parse(&s).map(Some),
        Some(StrOrNum::Num(n)) => from_number(&n).map(Some),
    }
    .map_err(serde::de::Error::custom)
}

/// Serde `serialize_with`: the decimal as a string without trailing zeros.
pub fn serialize<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&v.normalize())
}

/// Converts a decimal to `f64` for display-only figures (e.g. percentages).
pub fn to_f64(d: Decimal) -> f64 {
    f64::from_str(&d.to_string()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strings_numbers_and_scientific() {
        assert_eq!(parse("0.000125").unwrap().to_string(), "0.000125");
        assert_eq!(parse("1.5e-7").unwrap().to_string(), "0.00000015");
        assert!(parse("abc").is_err());
        assert!(parse("").is_err());
        let n: serde_json::Number = serde_json::from_str("1250.5").unwrap();
        assert_eq!(from_number(&n).unwrap().to_string(), "1250.5");
    }

    #[test]
    fn sums_are_exact() {
        let tenth = parse("0.1").unwrap();
        let sum: Decimal = std::iter::repeat_n(tenth, 10).sum();
        assert_eq!(sum, Decimal::ONE);
    }
}
