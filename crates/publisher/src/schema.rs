//! The fields each event type's `data` must carry, and their JSON types.
//!
//! Kept in the publisher (not the event model) because it is the ingestion contract: the
//! consumers read `data` tolerantly, the publisher refuses what the backend got wrong. The
//! simulator's output is checked against the same table in tests.

use odin_events::EventType;
use serde_json::{Map, Value};

/// The JSON shape a required field must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A JSON number, or a string holding a decimal number (prices keep their precision).
    Numeric,
    /// A JSON integer ≥ 0.
    Count,
    /// A non-empty string.
    Text,
    /// `"buy"` or `"sell"` (any case).
    Side,
    Bool,
    Object,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Numeric => "a number (or a decimal string)",
            Kind::Count => "a non-negative integer",
            Kind::Text => "a non-empty string",
            Kind::Side => "\"buy\" or \"sell\"",
            Kind::Bool => "a boolean",
            Kind::Object => "an object",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            Kind::Numeric => match v {
                Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
                Value::String(s) => odin_events::decimal::parse(s).is_ok(),
                _ => false,
            },
            Kind::Count => v.as_u64().is_some(),
            Kind::Text => v.as_str().is_some_and(|s| !s.trim().is_empty()),
            Kind::Side => v
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("buy") || s.eq_ignore_ascii_case("sell")),
            Kind::Bool => v.is_boolean(),
            Kind::Object => v.is_object(),
        }
    }
}

use Kind::*;

/// The required `data` fields of `t`.
pub fn required_fields(t: EventType) -> &'static [(&'static str, Kind)] {
    match t {
        EventType::TradeExecuted => &[("price", Numeric), ("amount", Numeric), ("side", Side)],
        EventType::BuyCompleted | EventType::SellCompleted => {
            &[("price", Numeric), ("amount", Numeric)]
        }
        EventType::LiquidityAdded | EventType::LiquidityRemoved => {
            &[("btcAmount", Numeric), ("tokenAmount", Numeric)]
        }
        EventType::LiquidityRebalanced => &[("btcReserve", Numeric), ("tokenReserve", Numeric)],
        EventType::MetadataUpdated => &[("name", Text)],
        EventType::TokenNameChanged => &[("name", Text), ("ticker", Text)],
        EventType::TokenFlagsChanged => &[("flags", Object)],
        EventType::TwitterVerified => &[("twitterHandle", Text)],
        EventType::SocialLinksUpdated => &[("links", Object)],
        EventType::CommentPosted => &[("commentId", Text), ("author", Text), ("text", Text)],
        EventType::CommentPinned => &[("commentId", Text), ("pinned", Bool)],
        EventType::CommentUpvoted => &[("commentId", Text), ("upvotes", Count)],
        EventType::FavoriteToggled => &[("user", Text), ("favorited", Bool)],
        EventType::TokenCreated => &[("name", Text), ("ticker", Text), ("creator", Text)],
        EventType::TokenListed => &[("price", Numeric)],
        EventType::PriceDeltaUpdated => &[("price", Numeric), ("priceChange24h", Numeric)],
        EventType::HolderCountUpdated => &[("holderCount", Count)],
        EventType::AnalyticsRecalculated => &[("volume24h", Numeric), ("marketCap", Numeric)],
        EventType::TrendingUpdated => &[("rank", Count)],
        EventType::BalanceUpdated => &[("address", Text), ("balance", Numeric)],
        EventType::TransferCompleted => &[("from", Text), ("to", Text), ("amount", Numeric)],
    }
}

/// Checks `data` against the table; the error names the first bad field.
pub fn check(t: EventType, data: &Map<String, Value>) -> Result<(), String> {
    for (field, kind) in required_fields(t) {
        match data.get(*field) {
            None | Some(Value::Null) => {
                return Err(format!("{t} requires data.{field} ({})", kind.describe()))
            }
            Some(v) if !kind.accepts(v) => {
                return Err(format!(
                    "data.{field} must be {}, got {}",
                    kind.describe(),
                    short(v)
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A value for an error message, cut so a huge value does not make a huge answer.
pub(crate) fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() <= 64 {
        return s;
    }
    let mut end = 64;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn every_type_has_required_fields() {
        for t in EventType::ALL {
            assert!(!required_fields(t).is_empty(), "{t}");
            assert!(check(t, &Map::new()).is_err(), "{t}");
        }
    }

    #[test]
    fn trades_need_numeric_price_amount_and_side() {
        let t = EventType::TradeExecuted;
        check(
            t,
            &obj(json!({"price": 1.5, "amount": "2.25", "side": "BUY"})),
        )
        .unwrap();
        let e = check(t, &obj(json!({"price": "abc", "amount": 1, "side": "buy"}))).unwrap_err();
        assert!(e.contains("data.price"), "{e}");
        let e = check(t, &obj(json!({"price": 1, "amount": 1}))).unwrap_err();
        assert!(e.contains("data.side"), "{e}");
        let e = check(t, &obj(json!({"price": 1, "amount": 1, "side": "hold"}))).unwrap_err();
        assert!(e.contains("buy"), "{e}");
        check(
            EventType::BuyCompleted,
            &obj(json!({"price": 1, "amount": 1})),
        )
        .unwrap();
    }

    #[test]
    fn kinds() {
        assert!(!Count.accepts(&json!(-1)));
        assert!(!Count.accepts(&json!(1.5)));
        assert!(Count.accepts(&json!(7)));
        assert!(!Text.accepts(&json!("  ")));
        assert!(!Bool.accepts(&json!("true")));
        assert!(Object.accepts(&json!({})));
        assert!(short(&json!("x".repeat(500))).len() < 80);
    }
}
