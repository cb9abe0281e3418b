//! Event types, categories and the mapping between them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A name that is not one of the known event types or categories.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?}")]
pub struct UnknownName {
    /// What was being parsed ("event type", "category").
    pub kind: &'static str,
    /// The name that failed.
    pub name: String,
}

/// The eight categories; each is a channel suffix and owns one topic in per-category mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Trade,
    Liquidity,
    Metadata,
    Social,
    Community,
    Creation,
    Analytics,
    Balances,
}

impl Category {
    /// Every category, in the canonical order.
    pub const ALL: [Category; 8] = [
        Category::Trade,
        Category::Liquidity,
        Category::Metadata,
        Category::Social,
        Category::Community,
        Category::Creation,
        Category::Analytics,
        Category::Balances,
    ];

    /// The channel suffix, e.g. `trade` in `BTC.trade`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Trade => "trade",
            Category::Liquidity => "liquidity",
            Category::Metadata => "metadata",
            Category::Social => "social",
            Category::Community => "community",
            Category::Creation => "creation",
            Category::Analytics => "analytics",
            Category::Balances => "balances",
        }
    }

    /// The default topic of this category in per-category mode.
    pub const fn default_topic(self) -> &'static str {
        match self {
            Category::Trade => "odin.trades",
            Category::Liquidity => "odin.liquidity",
            Category::Metadata => "odin.metadata",
            Category::Social => "odin.social",
            Category::Community => "odin.community",
            Category::Creation => "odin.creation",
            Category::Analytics => "odin.analytics",
            Category::Balances => "odin.balances",
        }
    }

    /// Retention of the category's topic, in milliseconds.
    pub const fn retention_ms(self) -> i64 {
        const SEC: i64 = 1_000;
        const MIN: i64 = 60 * SEC;
        const HOUR: i64 = 60 * MIN;
        match self {
            Category::Trade => 30 * SEC,
            Category::Liquidity => MIN,
            Category::Metadata => HOUR,
            Category::Social => HOUR,
            Category::Community => 5 * MIN,
            Category::Creation => HOUR,
            Category::Analytics => 5 * MIN,
            Category::Balances => 30 * SEC,
        }
    }

    /// The event types of this category.
    pub fn event_types(self) -> impl Iterator<Item = EventType> {
        EventType::ALL
            .into_iter()
            .filter(move |t| t.category() == self)
    }

    /// Position in [`Category::ALL`]; handy for per-category arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = UnknownName;

    /// Case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownName {
                kind: "category",
                name: s.to_owned(),
            })
    }
}

macro_rules! event_types {
    ($($variant:ident => $name:literal, $cat:ident;)*) => {
        /// The 23 event types of the Odin platform.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType { $($variant,)* }

        impl EventType {
            /// Every event type, grouped by category in canonical order.
            pub const ALL: [EventType; 23] = [$(EventType::$variant,)*];

            /// The wire name, e.g. `TRADE_EXECUTED`.
            pub const fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name,)* }
            }

            /// The category (and so the topic and channel suffix) of this type.
            pub const fn category(self) -> Category {
                match self { $(EventType::$variant => Category::$cat,)* }
            }
        }

        impl FromStr for EventType {
            type Err = UnknownName;

            /// Exact (upper-case) wire names only: producers are machines.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(EventType::$variant),)*
                    _ => Err(UnknownName { kind: "event type", name: s.to_owned() }),
                }
            }
        }
    };
}

event_types! {
    TradeExecuted => "TRADE_EXECUTED", Trade;
    BuyCompleted => "BUY_COMPLETED", Trade;
    SellCompleted => "SELL_COMPLETED", Trade;
    LiquidityAdded => "LIQUIDITY_ADDED", Liquidity;
    LiquidityRemoved => "LIQUIDITY_REMOVED", Liquidity;
    LiquidityRebalanced => "LIQUIDITY_REBALANCED", Liquidity;
    MetadataUpdated => "METADATA_UPDATED", Metadata;
    TokenNameChanged => "TOKEN_NAME_CHANGED", Metadata;
    TokenFlagsChanged => "TOKEN_FLAGS_CHANGED", Metadata;
    TwitterVerified => "TWITTER_VERIFIED", Social;
    SocialLinksUpdated => "SOCIAL_LINKS_UPDATED", Social;
    CommentPosted => "COMMENT_POSTED", Community;
    CommentPinned => "COMMENT_PINNED", Community;
    CommentUpvoted => "COMMENT_UPVOTED", Community;
    FavoriteToggled => "FAVORITE_TOGGLED", Community;
    TokenCreated => "TOKEN_CREATED", Creation;
    TokenListed => "TOKEN_LISTED", Creation;
    PriceDeltaUpdated => "PRICE_DELTA_UPDATED", Analytics;
    HolderCountUpdated => "HOLDER_COUNT_UPDATED", Analytics;
    AnalyticsRecalculated => "ANALYTICS_RECALCULATED", Analytics;
    TrendingUpdated => "TRENDING_UPDATED", Analytics;
    BalanceUpdated => "BALANCE_UPDATED", Balances;
    TransferCompleted => "TRANSFER_COMPLETED", Balances;
}

impl EventType {
    /// Whether this is one of the three trade events mirrored to `trade-info`.
    pub const fn is_trade(self) -> bool {
        matches!(self.category(), Category::Trade)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_and_has_a_category() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
            assert!(Category::ALL.contains(&t.category()));
        }
        let mut names: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 23);
    }

    #[test]
    fn categories_have_the_specified_types() {
        let count = |c: Category| c.event_types().count();
        assert_eq!(count(Category::Trade), 3);
        assert_eq!(count(Category::Liquidity), 3);
        assert_eq!(count(Category::Metadata), 3);
        assert_eq!(count(Category::Social), 2);
        assert_eq!(count(Category::Community), 4);
        assert_eq!(count(Category::Creation), 2);
        assert_eq!(count(Category::Analytics), 4);
        assert_eq!(count(Category::Balances), 2);
        assert_eq!(
            EventType::TransferCompleted.category().default_topic(),
            "odin.balances"
        );
        assert_eq!(EventType::TwitterVerified.category(), Category::Social);
    }

    #[test]
    fn categories_round_trip_case_insensitively() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>().unwrap(), c);
            assert_eq!(c.as_str().to_uppercase().parse::<Category>().unwrap(), c);
            assert_eq!(Category::ALL[c.index()], c);
        }
    }

    #[test]
    fn unknown_names_are_typed_errors() {
        let e = "TRADE_EXECUTE".parse::<EventType>().unwrap_err();
        assert_eq!(e.name, "TRADE_EXECUTE");
        assert!(e.to_string().contains("unknown event type"));
        assert!("trades".parse::<Category>().is_err());
        assert!("".parse::<EventType>().is_err());
        assert!(serde_json::from_str::<EventType>("\"NOPE\"").is_err());
    }
}
