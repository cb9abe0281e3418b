//! Per-token aggregate records of the `aggregate-info` topic.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::decimal;

/// Version written in every aggregate record.
pub const AGGREGATE_VERSION: &str = "1.0";

/// One token's aggregates at one publish tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenAggregateData {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub aggregate_data: Vec<TokenAggregateItem>,
    /// Wall clock when the record was generated, RFC 3339 UTC.
    pub generated_at: String,
    pub version: String,
}

/// The aggregates of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenAggregateItem {
    /// The window's name, e.g. `5min`.
    pub time_window: String,
    pub sell_count: u64,
    pub buy_count: u64,
    pub total_trades: u64,
    #[serde(
        deserialize_with = "decimal::deserialize",
        serialize_with = "decimal::serialize"
    )]
    pub sell_volume: Decimal,
    #[serde(
        deserialize_with = "decimal::deserialize",
        serialize_with = "decimal::serialize"
    )]
    pub buy_volume: Decimal,
    #[serde(
        deserialize_with = "decimal::deserialize",
        serialize_with = "decimal::serialize"
    )]
    pub total_volume: Decimal,
    #[serde(
        deserialize_with = "decimal::deserialize",
        serialize_with = "decimal::serialize"
    )]
    pub volume_usd: Decimal,
    /// (close − open) / open × 100, rounded to 4 decimals; 0 when open is 0.
    pub price_change: f64,
    #[serde(
        deserialize_with = "decimal::deserialize",
        serialize_with = "decimal::serialize"
    )]
    pub open_price: Decimal,
    #[serde(
        deserialize_with = "decimal::deserialize",
        serialize_with = "decimal::serialize"
    )]
    pub close_price: Decimal,
    /// The end of the window (the publish tick), RFC 3339 UTC.
    pub timestamp: String,
}

/// `price_change` as the contract defines it: exact decimal arithmetic, then rounded to four
/// decimals (half away from zero) and turned into a JSON number.
pub fn price_change(open: Decimal, close: Decimal) -> f64 {
    if open.is_zero() {
        return 0.0;
    }
    let pct = ((close - open) * Decimal::ONE_HUNDRED)
        .checked_div(open)
        .unwrap_or_default()
        .round_dp_with_strategy(4, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    decimal::to_f64(pct)
}

impl TokenAggregateData {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_change_is_rounded_and_safe() {
        let d = |s: &str| crate::decimal::parse(s).unwrap();
        assert_eq!(price_change(d("3"), d("4")), 33.3333);
        assert_eq!(price_change(d("3"), d("2")), -33.3333);
        assert_eq!(price_change(d("0"), d("4")), 0.0);
        assert_eq!(price_change(d("1"), d("1")), 0.0);
    }

    #[test]
    fn serialises_with_the_contract_names() {
        let item = TokenAggregateItem {
            time_window: "1min".into(),
            sell_count: 1,
            buy_count: 2,
            total_trades: 3,
            sell_volume: Decimal::new(15, 1),
            buy_volume: Decimal::ONE,
            total_volume: Decimal::new(25, 1),
            volume_usd: Decimal::new(100, 2),
            price_change: 1.5,
            open_price: Decimal::ONE,
            close_price: Decimal::new(1015, 3),
            timestamp: "2024-01-01T00:00:30Z".into(),
        };
        let data = TokenAggregateData {
            token: "BTC".into(),
            symbol: None,
            name: None,
            aggregate_data: vec![item],
            generated_at: "2024-01-01T00:00:30.5Z".into(),
            version: AGGREGATE_VERSION.into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&data.to_json()).unwrap();
        assert!(v.get("symbol").is_none());
        let i = &v["aggregate_data"][0];
        assert_eq!(i["sell_volume"], "1.5");
        assert_eq!(i["volume_usd"], "1");
        assert_eq!(i["price_change"], 1.5);
        assert_eq!(i["total_trades"], 3);
        let back: TokenAggregateData = serde_json::from_value(v).unwrap();
        assert_eq!(back, data);
    }
}
