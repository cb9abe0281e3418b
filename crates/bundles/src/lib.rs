//! Subscription bundles (TRADING, FULL_MARKET, …) and the expansion of a subscription
//! request — bundle × tokens and explicit channels — into a de-duplicated channel list.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use odin_events::{Category, Channel, ChannelError, TokenId, TokenIdError, WILDCARD_TOKEN};

/// Default cap on the channels one request (or connection) may hold.
pub const DEFAULT_MAX_CHANNELS: usize = 1_000;

/// A named set of categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bundle {
    Trading,
    FullMarket,
    Community,
    Portfolio,
    PriceOnly,
    All,
}

impl Bundle {
    pub const ALL: [Bundle; 6] = [
        Bundle::Trading,
        Bundle::FullMarket,
        Bundle::Community,
        Bundle::Portfolio,
        Bundle::PriceOnly,
        Bundle::All,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Bundle::Trading => "TRADING",
            Bundle::FullMarket => "FULL_MARKET",
            Bundle::Community => "COMMUNITY",
            Bundle::Portfolio => "PORTFOLIO",
            Bundle::PriceOnly => "PRICE_ONLY",
            Bundle::All => "ALL",
        }
    }

    /// The categories of the bundle, in the order the contract lists them.
    pub const fn categories(self) -> &'static [Category] {
        use Category::*;
        match self {
            Bundle::Trading => &[Trade, Liquidity, Analytics],
            Bundle::FullMarket => &[Trade, Liquidity, Analytics, Metadata],
            Bundle::Community => &[Community, Social, Metadata],
            Bundle::Portfolio => &[Trade, Analytics, Balances],
            Bundle::PriceOnly => &[Trade, Analytics],
            Bundle::All => &Category::ALL,
        }
    }
}

impl fmt::Display for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Bundle {
    type Err = BundleError;

    /// Case-insensitive; `-` is accepted for `_` (`full-market`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().replace('-', "_");
        Bundle::ALL
            .into_iter()
            .find(|b| b.as_str().eq_ignore_ascii_case(&norm))
            .ok_or_else(|| BundleError::UnknownBundle { name: s.to_owned() })
    }
}

/// Why a subscription request could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("unknown bundle {name:?} (known: TRADING, FULL_MARKET, COMMUNITY, PORTFOLIO, PRICE_ONLY, ALL)")]
    UnknownBundle { name: String },
    #[error("invalid token {token:?}: {source}")]
    InvalidToken {
        token: String,
        #[source]
        source: TokenIdError,
    },
    #[error(transparent)]
    InvalidChannel(#[from] ChannelError),
    #[error("a bundle needs at least one token")]
    NoTokens,
    #[error("tokens given without a bundle")]
    TokensWithoutBundle,
    #[error("nothing to subscribe to: give a bundle with tokens, or channels")]
    Empty,
    #[error("{requested} channels requested, the limit is {limit}")]
    TooManyChannels { requested: usize, limit: usize },
}

/// A subscription request as clients send it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request<'a> {
    pub bundle: Option<&'a str>,
    pub tokens: &'a [String],
    pub channels: &'a [String],
}

/// Expands a bundle over tokens: the cross product, tokens outer, categories inner,
/// de-duplicated. `*` is accepted as a token (every token).
pub fn expand_bundle(bundle: Bundle, tokens: &[String]) -> Result<Vec<Channel>, BundleError> {
    let mut out = Vec::with_capacity(tokens.len() * bundle.categories().len());
    let mut seen = HashSet::new();
    for token in tokens {
        let token = token.trim();
        for &category in bundle.categories() {
            let channel = if token == WILDCARD_TOKEN {
                Channel::wildcard(category)
            } else {
                let id = TokenId::new(token).map_err(|source| BundleError::InvalidToken {
                    token: token.to_owned(),
                    source,
                })?;
                Channel::new(&id, category)
            };
            if seen.insert(channel.clone()) {
                out.push(channel);
            }
        }
    }
    Ok(out)
}

/// Expands a whole request — a bundle with tokens, explicit channels, or both — into a
/// de-duplicated list in stable order (bundle channels first), refusing more than `limit`.
pub fn expand(req: &Request<'_>, limit: usize) -> Result<Vec<Channel>, BundleError> {
    let mut out = match req.bundle {
        Some(name) => {
            let bundle: Bundle = name.parse()?;
            if req.tokens.is_empty() {
                return Err(BundleError::NoTokens);
            }
            expand_bundle(bundle, req.tokens)?
        }
        None if !req.tokens.is_empty() => return Err(BundleError::TokensWithoutBundle),
        None => Vec::new(),
    };
    if out.is_empty() && req.channels.is_empty() {
        return Err(BundleError::Empty);
    }
    // Cheap early refusal before parsing a flood of channels.
    if out.len() > limit || req.channels.len() > limit.saturating_mul(8).max(limit + 64) {
        return Err(BundleError::TooManyChannels {
            requested: out.len() + req.channels.len(),
            limit,
        });
    }
    let mut seen: HashSet<Channel> = out.iter().cloned().collect();
    for c in req.channels {
        let channel = Channel::parse(c.trim())?;
        if seen.insert(channel.clone()) {
            out.push(channel);
        }
    }
    if out.len() > limit {
        return Err(BundleError::TooManyChannels {
            requested: out.len(),
            limit,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn names(v: &[Channel]) -> Vec<String> {
        v.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn bundles_have_exactly_their_categories() {
        use Category::*;
        let cats = |b: &str| b.parse::<Bundle>().unwrap().categories().to_vec();
        assert_eq!(cats("TRADING"), [Trade, Liquidity, Analytics]);
        assert_eq!(cats("full_market"), [Trade, Liquidity, Analytics, Metadata]);
        assert_eq!(cats("Community"), [Community, Social, Metadata]);
        assert_eq!(cats("PORTFOLIO"), [Trade, Analytics, Balances]);
        assert_eq!(cats("price_only"), [Trade, Analytics]);
        assert_eq!(cats("ALL"), Category::ALL);
        assert!(matches!(
            "NOPE".parse::<Bundle>(),
            Err(BundleError::UnknownBundle { .. })
        ));
    }

    #[test]
    fn expands_bundle_and_channels_together() {
        let tokens = s(&["BTC", "ETH", "BTC"]);
        let channels = s(&["BTC.trade", "*.creation", "SOL.balances"]);
        let req = Request {
            bundle: Some("PRICE_ONLY"),
            tokens: &tokens,
            channels: &channels,
        };
        assert_eq!(
            names(&expand(&req, 100).unwrap()),
            [
                "BTC.trade",
                "BTC.analytics",
                "ETH.trade",
                "ETH.analytics",
                "*.creation",
                "SOL.balances"
            ]
        );
    }

    #[test]
    fn typed_errors() {
        let t = s(&["BTC"]);
        let bad_tok = s(&["B C"]);
        let bad_ch = s(&["BTC.nope"]);
        let none: Vec<String> = vec![];
        let e = |bundle, tokens, channels, limit| {
            expand(
                &Request {
                    bundle,
                    tokens,
                    channels,
                },
                limit,
            )
            .unwrap_err()
        };
        assert!(matches!(
            e(Some("X"), &t, &none, 10),
            BundleError::UnknownBundle { .. }
        ));
        assert!(matches!(
            e(Some("ALL"), &bad_tok, &none, 10),
            BundleError::InvalidToken { .. }
        ));
        assert!(matches!(
            e(None, &none, &bad_ch, 10),
            BundleError::InvalidChannel(_)
        ));
        assert!(matches!(
            e(Some("ALL"), &none, &none, 10),
            BundleError::NoTokens
        ));
        assert!(matches!(
            e(None, &t, &none, 10),
            BundleError::TokensWithoutBundle
        ));
        assert!(matches!(e(None, &none, &none, 10), BundleError::Empty));
        assert_eq!(
            e(Some("ALL"), &t, &none, 5),
            BundleError::TooManyChannels {
                requested: 8,
                limit: 5
            }
        );
    }

    proptest! {
        #[test]
        fn expansion_is_the_deduplicated_cross_product(
            tokens in proptest::collection::vec("[A-Za-z0-9_:-]{1,8}", 1..12),
            b in 0usize..6,
        ) {
            let bundle = Bundle::ALL[b];
            let out = expand_bundle(bundle, &tokens).unwrap();
            let unique: HashSet<&String> = tokens.iter().collect();
            prop_assert_eq!(out.len(), unique.len() * bundle.categories().len());
            let set: HashSet<_> = out.iter().collect();
            prop_assert_eq!(set.len(), out.len());
            for c in &out {
                prop_assert!(bundle.categories().contains(&c.category()));
                prop_assert!(tokens.iter().any(|t| t == c.token()));
            }
            // Stable: the same request expands the same way.
            prop_assert_eq!(&out, &expand_bundle(bundle, &tokens).unwrap());
        }

        #[test]
        fn limit_is_enforced(n in 1usize..40, limit in 1usize..60) {
            let channels: Vec<String> = (0..n).map(|i| format!("T{i}.trade")).collect();
            let r = expand(&Request { bundle: None, tokens: &[], channels: &channels }, limit);
            if n <= limit { prop_assert_eq!(r.unwrap().len(), n); }
            else { let too_many = matches!(r, Err(BundleError::TooManyChannels { .. })); prop_assert!(too_many); }
        }

        #[test]
        fn arbitrary_channel_strings_never_panic(c in "\\PC{0,80}") {
            let channels = vec![c];
            let _ = expand(&Request { bundle: None, tokens: &[], channels: &channels }, 10);
        }
    }
}
