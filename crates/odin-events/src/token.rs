//! Token ids and `{TOKEN}.{category}` channel names.

use std::fmt;
use std::str::FromStr;

use crate::event::{Category, UnknownName};

/// The token of a channel that matches every token (`*.creation` is the new-token feed).
pub const WILDCARD_TOKEN: &str = "*";
/// Longest accepted token id.
pub const MAX_TOKEN_LEN: usize = 64;

/// Why a token id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenIdError {
    #[error("token id is empty")]
    Empty,
    #[error("token id {token:?} is longer than {MAX_TOKEN_LEN} characters")]
    TooLong { token: String },
    #[error("token id {token:?} has a character outside [A-Za-z0-9_:-]")]
    BadCharacter { token: String },
}

/// A validated token id: 1–64 characters of `[A-Za-z0-9_:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(String);

impl TokenId {
    /// Checks a token id without allocating.
    pub fn validate(s: &str) -> Result<(), TokenIdError> {
        if s.is_empty() {
            return Err(TokenIdError::Empty);
        }
        if s.len() > MAX_TOKEN_LEN {
            return Err(TokenIdError::TooLong {
                token: s.chars().take(MAX_TOKEN_LEN + 8).collect(),
            });
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-'))
        {
            return Err(TokenIdError::BadCharacter {
                token: s.to_owned(),
            });
        }
        Ok(())
    }

    pub fn new(s: impl Into<String>) -> Result<Self, TokenIdError> {
        let s = s.into();
        Self::validate(&s)?;
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl FromStr for TokenId {
    type Err = TokenIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TokenId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    #[error("channel {channel:?} is not of the form TOKEN.category")]
    Malformed { channel: String },
    #[error("channel {channel:?}: {source}")]
    Token {
        channel: String,
        #[source]
        source: TokenIdError,
    },
    #[error("channel {channel:?}: {source}")]
    Category {
        channel: String,
        #[source]
        source: UnknownName,
    },
}

/// A channel: a token (or the wildcard) and a category.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel {
    /// A valid token id, or [`WILDCARD_TOKEN`].
    token: String,
    category: Category,
}

impl Channel {
    pub fn new(token: &TokenId, category: Category) -> Self {
        Self {
            token: token.as_str().to_owned(),
            category,
        }
    }

    pub fn wildcard(category: Category) -> Self {
        Self {
            token: WILDCARD_TOKEN.to_owned(),
            category,
        }
    }

    /// Parses `TOKEN.category`; the token may be `*`. The category is case-insensitive.
    pub fn parse(s: &str) -> Result<Self, ChannelError> {
        // Split at the last dot: token ids have no dots, categories neither.
        let (token, category) = s.rsplit_once('.').ok_or_else(|| ChannelError::Malformed {
            channel: s.to_owned(),
        })?;
        let category = category.parse().map_err(|source| ChannelError::Category {
            channel: s.to_owned(),
            source,
        })?;
        if token != WILDCARD_TOKEN {
            TokenId::validate(token).map_err(|source| ChannelError::Token {
                channel: s.to_owned(),
                source,
            })?;
        }
        Ok(Self {
            token: token.to_owned(),
            category,
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn category(&self) -> Category {
        self.category
    }

    pub fn is_wildcard(&self) -> bool {
        self.token == WILDCARD_TOKEN
    }
}

impl FromStr for Channel {
    type Err = ChannelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.token, self.category)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids() {
        for ok in [
            "BTC",
            "0x0000000000000000000000000000000000000001",
            "a_b:c-d",
            "x",
        ] {
            TokenId::new(ok).unwrap();
        }
        assert_eq!(TokenId::new(""), Err(TokenIdError::Empty));
        assert!(matches!(
            TokenId::new("a".repeat(65)),
            Err(TokenIdError::TooLong { .. })
        ));
        TokenId::new("a".repeat(64)).unwrap();
        for bad in ["BT C", "BTC.trade", "*", "é", "a/b"] {
            assert!(
                matches!(TokenId::new(bad), Err(TokenIdError::BadCharacter { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn channels() {
        let c = Channel::parse("BTC.trade").unwrap();
        assert_eq!((c.token(), c.category()), ("BTC", Category::Trade));
        assert_eq!(c.to_string(), "BTC.trade");
        let w = Channel::parse("*.creation").unwrap();
        assert!(w.is_wildcard());
        assert_eq!(
            Channel::parse("ETH.TRADE").unwrap().to_string(),
            "ETH.trade"
        );
        assert!(matches!(
            Channel::parse("BTC"),
            Err(ChannelError::Malformed { .. })
        ));
        assert!(matches!(
            Channel::parse("BTC.trades"),
            Err(ChannelError::Category { .. })
        ));
        assert!(matches!(
            Channel::parse(".trade"),
            Err(ChannelError::Token { .. })
        ));
        assert!(matches!(
            Channel::parse("B!C.trade"),
            Err(ChannelError::Token { .. })
        ));
        assert!(matches!(
            Channel::parse("a.b.trade"),
            Err(ChannelError::Token { .. })
        ));
    }
}
