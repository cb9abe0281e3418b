//! Trade records of the `trade-info` topic, and the mapping from the Odin trade events to
//! them, shared by the publisher's mirror and the aggregator.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::decimal;
use crate::envelope::ParsedRecord;
use crate::event::EventType;
use crate::token::{TokenId, TokenIdError};

/// Side of a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Side {
    type Err = TradeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("buy") {
            Ok(Side::Buy)
        } else if s.eq_ignore_ascii_case("sell") {
            Ok(Side::Sell)
        } else {
            Err(TradeError::UnknownSide { side: s.to_owned() })
        }
    }
}

impl<'de> Deserialize<'de> for Side {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a trade could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TradeError {
    #[error("trade is not valid: {reason}")]
    Malformed { reason: String },
    #[error("unknown side {side:?} (expected buy or sell)")]
    UnknownSide { side: String },
    #[error("missing field {field:?}")]
    Missing { field: &'static str },
    #[error("field {field:?}: {reason}")]
    BadField { field: &'static str, reason: String },
    #[error("negative {field} {value}")]
    Negative { field: &'static str, value: Decimal },
    #[error("invalid token: {0}")]
    Token(#[from] TokenIdError),
    #[error("{event_type} is not a trade event")]
    NotATrade { event_type: EventType },
}

fn de_timestamp<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(crate::envelope::TimestampVisitor)
}

/// A trade on `trade-info`:
/// `{"token":"0x…","side":"buy","price":"0.000125","amount":"1250.5","volume_usd":"0.15625","timestamp":<ms>,"tx_hash":"0x…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeRecord {
    pub token: String,
    pub side: Side,
    #[serde(
        deserialize_with = "decimal::deserialize",
        serialize_with = "decimal::serialize"
    )]
    pub price: Decimal,
    #[serde(
        deserialize_with = "decimal::deserialize",
        serialize_with = "decimal::serialize"
    )]
    pub amount: Decimal,
    /// Defaults to price × amount when the record has none.
    #[serde(
        default,
        deserialize_with = "decimal::deserialize_opt",
        serialize_with = "ser_volume"
    )]
    pub volume_usd: Option<Decimal>,
    /// Event time, epoch milliseconds (an RFC 3339 string is accepted on input).
    #[serde(deserialize_with = "de_timestamp")]
    pub timestamp: i64,
    #[serde(default)]
    pub tx_hash: String,
}

/// price × amount, refused when it does not fit a decimal (hostile input must not panic).
fn checked_volume(price: Decimal, amount: Decimal) -> Result<Decimal, TradeError> {
    price
        .checked_mul(amount)
        .ok_or_else(|| TradeError::BadField {
            field: "volume_usd",
            reason: format!("price {price} × amount {amount} overflows"),
        })
}

fn ser_volume<S: serde::Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    decimal::serialize(&v.unwrap_or_default(), s)
}

impl TradeRecord {
    /// Reads and validates a `trade-info` record value.
    pub fn parse(value: &[u8]) -> Result<Self, TradeError> {
        let mut t: TradeRecord =
            serde_json::from_slice(value).map_err(|e| TradeError::Malformed {
                reason: e.to_string(),
            })?;
        t.validate()?;
        if t.volume_usd.is_none() {
            t.volume_usd = Some(checked_volume(t.price, t.amount)?);
        }
        Ok(t)
    }

    /// Volume in USD, price × amount when the record had none.
    pub fn volume_usd(&self) -> Decimal {
        self.volume_usd
            .unwrap_or_else(|| self.price.checked_mul(self.amount).unwrap_or(Decimal::MAX))
    }

    fn validate(&self) -> Result<(), TradeError> {
        TokenId::validate(&self.token)?;
        for (field, value) in [("price", self.price), ("amount", self.amount)] {
            if value.is_sign_negative() && !value.is_zero() {
                return Err(TradeError::Negative { field, value });
            }
        }
        if let Some(v) = self
            .volume_usd
            .filter(|v| v.is_sign_negative() && !v.is_zero())
        {
            return Err(TradeError::Negative {
                field: "volume_usd",
                value: v,
            });
        }
        Ok(())
    }

    /// Maps an Odin trade event to a trade record: BUY_COMPLETED → buy, SELL_COMPLETED →
    /// sell, TRADE_EXECUTED carries `side` in its data. `fallback_ts` (the record timestamp)
    /// is used when the event has no time of its own.
    pub fn from_event(event: &ParsedRecord<'_>, fallback_ts: i64) -> Result<Self, TradeError> {
        let data: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&event.data)
            .map_err(|e| TradeError::Malformed {
                reason: e.to_string(),
            })?;
        Self::from_event_data(
            event.event_type,
            &event.token_id,
            &data,
            event.timestamp.unwrap_or(fallback_ts),
            event.event_id.as_deref(),
        )
    }

    /// The mapping of [`TradeRecord::from_event`] on an event's parts.
    pub fn from_event_data(
        event_type: EventType,
        token: &str,
        data: &serde_json::Map<String, serde_json::Value>,
        timestamp: i64,
        event_id: Option<&str>,
    ) -> Result<Self, TradeError> {
        let side = match event_type {
            EventType::BuyCompleted => Side::Buy,
            EventType::SellCompleted => Side::Sell,
            EventType::TradeExecuted => match data.get("side") {
                Some(serde_json::Value::String(s)) => s.parse()?,
                Some(other) => {
                    return Err(TradeError::BadField {
                        field: "side",
                        reason: format!("expected \"buy\" or \"sell\", got {other}"),
                    })
                }
                None => return Err(TradeError::Missing { field: "side" }),
            },
            other => return Err(TradeError::NotATrade { event_type: other }),
        };
        let dec = |field: &'static str, names: &[&str]| -> Result<Option<Decimal>, TradeError> {
            match names.iter().find_map(|n| data.get(*n)) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => decimal::from_value(v)
                    .map(Some)
                    .map_err(|e| TradeError::BadField {
                        field,
                        reason: e.to_string(),
                    }),
            }
        };
        let price = dec("price", &["price"])?.ok_or(TradeError::Missing { field: "price" })?;
        let amount = dec("amount", &["amount"])?.ok_or(TradeError::Missing { field: "amount" })?;
        let volume_usd = dec("volume_usd", &["volumeUsd", "volume_usd", "volumeUSD"])?;
        let tx_hash = ["txHash", "tx_hash", "transactionHash"]
            .iter()
            .find_map(|n| data.get(*n).and_then(|v| v.as_str()))
            .or(event_id)
            .unwrap_or_default()
            .to_owned();
        let t = TradeRecord {
            token: token.to_owned(),
            side,
            price,
            amount,
            volume_usd: Some(match volume_usd {
                Some(v) => v,
                None => checked_volume(price, amount)?,
            }),
            timestamp,
            tx_hash,
        };
        t.validate()?;
        Ok(t)
    }

    /// The record value.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::parse_record;

    #[test]
    fn parses_the_contract_format() {
        let raw = br#"{"token":"0x01","side":"buy","price":"0.000125","amount":"1250.5","volume_usd":"0.15625","timestamp":1700000000000,"tx_hash":"0xab"}"#;
        let t = TradeRecord::parse(raw).unwrap();
        assert_eq!(t.side, Side::Buy);
        assert_eq!(t.price.to_string(), "0.000125");
        assert_eq!(t.volume_usd().to_string(), "0.15625");
        assert_eq!(
            String::from_utf8(t.to_json()).unwrap(),
            std::str::from_utf8(raw).unwrap()
        );
    }

    #[test]
    fn accepts_numbers_rfc3339_and_defaults_volume() {
        let raw = br#"{"token":"BTC","side":"SELL","price":2.5,"amount":4,"timestamp":"2024-01-01T00:00:00Z","tx_hash":"0x1"}"#;
        let t = TradeRecord::parse(raw).unwrap();
        assert_eq!(t.side, Side::Sell);
        assert_eq!(t.timestamp, 1_704_067_200_000);
        assert_eq!(t.volume_usd().to_string(), "10.0");
    }

    #[test]
    fn rejects_invalid_trades() {
        let bad = |s: &str| TradeRecord::parse(s.as_bytes()).unwrap_err();
        assert!(matches!(
            bad(r#"{"token":"BTC","side":"buy","price":"1","amount":"-1","timestamp":1}"#),
            TradeError::Negative {
                field: "amount",
                ..
            }
        ));
        assert!(matches!(
            bad(r#"{"token":"BTC","side":"hold","price":"1","amount":"1","timestamp":1}"#),
            TradeError::Malformed { .. }
        ));
        assert!(matches!(
            bad(r#"{"side":"buy","price":"1","amount":"1","timestamp":1}"#),
            TradeError::Malformed { .. }
        ));
        assert!(matches!(
            bad(r#"{"token":"B C","side":"buy","price":"1","amount":"1","timestamp":1}"#),
            TradeError::Token(_)
        ));
        assert!(matches!(bad("not json"), TradeError::Malformed { .. }));
        assert!(matches!(
            bad(r#"{"token":"BTC","side":"buy","price":"1e27","amount":"1e27","timestamp":1}"#),
            TradeError::BadField {
                field: "volume_usd",
                ..
            }
        ));
    }

    #[test]
    fn maps_trade_events() {
        let raw = br#"{"metadata":{"eventId":"e9","eventType":"SELL_COMPLETED","timestamp":99,"tokenId":"ETH"},"data":{"price":"3","amount":2}}"#;
        let p = parse_record(raw, None).unwrap();
        let t = TradeRecord::from_event(&p, 0).unwrap();
        assert_eq!(
            (t.side, t.timestamp, t.tx_hash.as_str()),
            (Side::Sell, 99, "e9")
        );
        assert_eq!(t.volume_usd().to_string(), "6");

        let raw = br#"{"type":"TRADE_EXECUTED","tokenId":"BTC","price":1,"amount":1,"side":"buy","txHash":"0xf","volumeUsd":"7"}"#;
        let t = TradeRecord::from_event(&parse_record(raw, None).unwrap(), 5).unwrap();
        assert_eq!(
            (t.side, t.timestamp, t.tx_hash.as_str()),
            (Side::Buy, 5, "0xf")
        );
        assert_eq!(t.volume_usd().to_string(), "7");

        let no_side = br#"{"type":"TRADE_EXECUTED","tokenId":"BTC","price":1,"amount":1}"#;
        let e = TradeRecord::from_event(&parse_record(no_side, None).unwrap(), 0).unwrap_err();
        assert_eq!(e, TradeError::Missing { field: "side" });
        let not_trade = br#"{"type":"TOKEN_LISTED","tokenId":"BTC"}"#;
        assert!(matches!(
            TradeRecord::from_event(&parse_record(not_trade, None).unwrap(), 0),
            Err(TradeError::NotATrade { .. })
        ));
    }
}
