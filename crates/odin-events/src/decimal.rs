//! Decimal values that arrive as JSON strings or numbers and leave as strings.
//!
//! Prices and amounts are summed by the aggregator, so they are exact decimals, never floats.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserializer, Serializer};

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

/// Reads a decimal string or a JSON number straight from the deserializer: the hot path of
/// every trade, so no intermediate `Value` or untagged-enum buffering.
struct DecimalVisitor;

impl serde::de::Visitor<'_> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a decimal string or a number")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Decimal, E> {
        parse(s).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Decimal, E> {
        // serde_json prints a float as its shortest round-trip text: read that exactly.
        match serde_json::Number::from_f64(v) {
            Some(n) => from_number(&n).map_err(E::custom),
            None => Err(E::custom(DecimalError {
                value: v.to_string(),
            })),
        }
    }
}

struct OptDecimalVisitor;

impl<'de> serde::de::Visitor<'de> for OptDecimalVisitor {
    type Value = Option<Decimal>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a decimal string, a number or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(DecimalVisitor).map(Some)
    }
}

/// Serde `deserialize_with`: a decimal string or a JSON number.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    d.deserialize_any(DecimalVisitor)
}

/// Serde `deserialize_with` for optional fields.
pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    d.deserialize_option(OptDecimalVisitor)
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

    #[derive(serde::Deserialize, Debug)]
    struct T {
        #[serde(deserialize_with = "deserialize")]
        v: Decimal,
        #[serde(default, deserialize_with = "deserialize_opt")]
        o: Option<Decimal>,
    }

    #[test]
    fn deserializes_strings_numbers_and_null() {
        let t: T = serde_json::from_str(r#"{"v":"0.000125","o":null}"#).unwrap();
        assert_eq!((t.v.to_string(), t.o), ("0.000125".into(), None));
        let t: T = serde_json::from_str(r#"{"v":1250.5,"o":"1.5e-7"}"#).unwrap();
        assert_eq!(t.v.to_string(), "1250.5");
        assert_eq!(t.o.unwrap().to_string(), "0.00000015");
        let t: T = serde_json::from_str(r#"{"v":-3,"o":18446744073709551615}"#).unwrap();
        assert_eq!(t.v.to_string(), "-3");
        assert_eq!(t.o.unwrap().to_string(), "18446744073709551615");
        let t: T = serde_json::from_str(r#"{"v":"\u0031.5"}"#).unwrap();
        assert_eq!(t.v.to_string(), "1.5", "escaped strings are read too");
        for bad in [
            r#"{"v":true}"#,
            r#"{"v":null}"#,
            r#"{"v":"x"}"#,
            r#"{"v":[1]}"#,
            r#"{"v":1,"o":{}}"#,
        ] {
            assert!(serde_json::from_str::<T>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sums_are_exact() {
        let tenth = parse("0.1").unwrap();
        let sum: Decimal = std::iter::repeat_n(tenth, 10).sum();
        assert_eq!(sum, Decimal::ONE);
    }
}
