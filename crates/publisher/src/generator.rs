//! The simulator's event generator: a weighted mix of all 23 types with plausible,
//! self-consistent data per token (price random walk, heavy-tailed trade sizes, drifting
//! holder counts). Pure and seedable, so tests can check the mix deterministically.

use odin_events::{Category, EventType};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use crate::publish::NewEvent;

/// Weight of each type in basis points (sum 10,000): trading 50 %, liquidity and analytics
/// 30 %, metadata, social links, community and balances 19 %, creation and Twitter
/// verification 1 %.
pub const WEIGHTS: [(EventType, u32); 23] = [
    (EventType::TradeExecuted, 3000),
    (EventType::BuyCompleted, 1000),
    (EventType::SellCompleted, 1000),
    (EventType::LiquidityAdded, 500),
    (EventType::LiquidityRemoved, 400),
    (EventType::LiquidityRebalanced, 300),
    (EventType::PriceDeltaUpdated, 600),
    (EventType::HolderCountUpdated, 400),
    (EventType::AnalyticsRecalculated, 400),
    (EventType::TrendingUpdated, 400),
    (EventType::MetadataUpdated, 200),
    (EventType::TokenNameChanged, 50),
    (EventType::TokenFlagsChanged, 50),
    (EventType::SocialLinksUpdated, 100),
    (EventType::CommentPosted, 400),
    (EventType::CommentPinned, 50),
    (EventType::CommentUpvoted, 300),
    (EventType::FavoriteToggled, 200),
    (EventType::BalanceUpdated, 350),
    (EventType::TransferCompleted, 200),
    (EventType::TokenCreated, 30),
    (EventType::TokenListed, 30),
    (EventType::TwitterVerified, 40),
];

const TOTAL_WEIGHT: u32 = 10_000;

/// The weight of `t`, in basis points.
pub fn weight(t: EventType) -> u32 {
    WEIGHTS.iter().find(|(x, _)| *x == t).map_or(0, |(_, w)| *w)
}

/// The share (0..1) of a category in the mix.
pub fn category_share(c: Category) -> f64 {
    f64::from(c.event_types().map(weight).sum::<u32>()) / f64::from(TOTAL_WEIGHT)
}

const AUTHORS: [&str; 8] = [
    "satoshi_fan",
    "moonboi",
    "degen42",
    "hodl_queen",
    "whale_watch",
    "ord_punk",
    "btc_maxi",
    "rune_hunter",
];
const COMMENTS: [&str; 8] = [
    "Great project!",
    "Chart looks bullish",
    "Who else is holding?",
    "Dev is based",
    "Liquidity just got deeper",
    "This dip is a gift",
    "To the moon",
    "Listed on the front page!",
];

/// What the simulator knows about one token, kept consistent across its events.
#[derive(Debug, Clone)]
struct TokenState {
    id: String,
    price: f64,
    open_24h: f64,
    holders: u64,
    btc_reserve: f64,
    token_reserve: f64,
    volume_24h: f64,
    comments: u64,
    upvotes: u64,
}

/// Generates events for a set of tokens.
#[derive(Debug)]
pub struct Generator {
    rng: SmallRng,
    tokens: Vec<TokenState>,
    cumulative: [u32; 23],
}

fn token_seed(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

impl Generator {
    /// `tokens` must not be empty (the HTTP layer refuses an empty list).
    pub fn new(tokens: &[String], seed: u64) -> Self {
        let mut cumulative = [0u32; 23];
        let mut acc = 0;
        for (i, (_, w)) in WEIGHTS.iter().enumerate() {
            acc += w;
            cumulative[i] = acc;
        }
        let mut g = Self {
            rng: SmallRng::seed_from_u64(seed),
            tokens: Vec::new(),
            cumulative,
        };
        g.set_tokens(tokens);
        g
    }

    /// A generator seeded from the OS.
    pub fn from_entropy(tokens: &[String]) -> Self {
        Self::new(tokens, rand::random())
    }

    /// Replaces the token set, keeping the state of tokens already known.
    pub fn set_tokens(&mut self, tokens: &[String]) {
        let mut next = Vec::with_capacity(tokens.len());
        for id in tokens {
            if let Some(s) = self.tokens.iter().find(|s| &s.id == id) {
                next.push(s.clone());
                continue;
            }
            // Start each token at its own plausible price, stable per name.
            let mut r = SmallRng::seed_from_u64(token_seed(id));
            let price = 10f64.powf(r.random_range(-6.0..2.0));
            next.push(TokenState {
                id: id.clone(),
                price,
                open_24h: price,
                holders: r.random_range(50..20_000),
                btc_reserve: r.random_range(0.5..50.0),
                token_reserve: r.random_range(0.5..50.0) / price,
                volume_24h: 0.0,
                comments: 0,
                upvotes: 0,
            });
        }
        self.tokens = next;
    }

    pub fn token_ids(&self) -> Vec<String> {
        self.tokens.iter().map(|t| t.id.clone()).collect()
    }

    fn pick_type(&mut self) -> EventType {
        let x = self.rng.random_range(0..TOTAL_WEIGHT);
        let i = self.cumulative.partition_point(|c| *c <= x);
        WEIGHTS[i.min(22)].0
    }

    fn normal(&mut self) -> f64 {
        // Box–Muller; 1 - u keeps the log argument in (0, 1].
        let u1: f64 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Pareto(α = 1.5) trade size: most trades small, a few very large (capped).
    fn trade_amount(&mut self, price: f64) -> f64 {
        let u: f64 = 1.0 - self.rng.random::<f64>();
        let usd = (5.0 / u.powf(1.0 / 1.5)).min(250_000.0);
        usd / price
    }

    fn hex(&mut self, bytes: usize) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(2 + bytes * 2);
        s.push_str("0x");
        let mut bits = 0u64;
        for i in 0..bytes {
            if i % 8 == 0 {
                bits = self.rng.random();
            }
            let b = (bits >> ((i % 8) * 8)) as u8;
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
        s
    }

    fn address(&mut self) -> String {
        self.hex(20)
    }

    fn tx_hash(&mut self) -> String {
        self.hex(32)
    }

    /// The next event.
    pub fn next_event(&mut self) -> NewEvent {
        let t = self.pick_type();
        let i = self.rng.random_range(0..self.tokens.len().max(1));
        let data = self.data_for(t, i);
        let token_id = self
            .tokens
            .get(i)
            .map_or_else(|| "BTC".to_owned(), |s| s.id.clone());
        let user_id = if t.category() == Category::Balances {
            Some(format!("user-{}", self.rng.random_range(1..1000)))
        } else {
            None
        };
        NewEvent {
            event_type: t,
            token_id,
            data,
            user_id,
            correlation_id: None,
            classification: None,
            timestamp: None,
        }
    }

    fn data_for(&mut self, t: EventType, i: usize) -> Map<String, Value> {
        if self.tokens.is_empty() {
            self.set_tokens(&["BTC".to_owned()]);
        }
        let i = i.min(self.tokens.len() - 1);
        let z = self.normal();
        let author = AUTHORS[self.rng.random_range(0..AUTHORS.len())];
        let value = match t {
            EventType::TradeExecuted | EventType::BuyCompleted | EventType::SellCompleted => {
                // Geometric random walk, 0.2 % volatility a trade.
                let s = &mut self.tokens[i];
                s.price = (s.price * (0.002 * z).exp()).max(1e-12);
                let price = s.price;
                let amount = self.trade_amount(price);
                let side = match t {
                    EventType::BuyCompleted => "buy",
                    EventType::SellCompleted => "sell",
                    _ if self.rng.random_bool(0.5) => "buy",
                    _ => "sell",
                };
                let (buyer, seller, tx) = (self.address(), self.address(), self.tx_hash());
                let s = &mut self.tokens[i];
                s.volume_24h += price * amount;
                json!({
                    "price": fmt_dec(price), "amount": fmt_dec(amount), "side": side,
                    "volumeUsd": fmt_dec(price * amount), "buyer": buyer, "seller": seller,
                    "txHash": tx,
                })
            }
            EventType::LiquidityAdded | EventType::LiquidityRemoved => {
                let share = self.rng.random_range(0.001..0.05);
                let s = &mut self.tokens[i];
                let (btc, tok) = (s.btc_reserve * share, s.token_reserve * share);
                if t == EventType::LiquidityAdded {
                    s.btc_reserve += btc;
                    s.token_reserve += tok;
                } else {
                    s.btc_reserve -= btc;
                    s.token_reserve -= tok;
                }
                let (br, tr) = (s.btc_reserve, s.token_reserve);
                let provider = self.address();
                json!({"btcAmount": fmt_dec(btc), "tokenAmount": fmt_dec(tok),
                       "btcReserve": fmt_dec(br), "tokenReserve": fmt_dec(tr), "provider": provider})
            }
            EventType::LiquidityRebalanced => {
                let s = &mut self.tokens[i];
                s.token_reserve = s.btc_reserve / s.price;
                json!({"btcReserve": fmt_dec(s.btc_reserve), "tokenReserve": fmt_dec(s.token_reserve),
                       "price": fmt_dec(s.price)})
            }
            EventType::MetadataUpdated => {
                let s = &self.tokens[i];
                json!({"name": format!("{} Token", s.id), "description": format!("The {} community token", s.id),
                       "website": format!("https://{}.example", s.id.to_ascii_lowercase())})
            }
            EventType::TokenNameChanged => {
                let s = &self.tokens[i];
                json!({"name": format!("{} Coin", s.id), "ticker": s.id.to_ascii_uppercase()})
            }
            EventType::TokenFlagsChanged => {
                let verified = self.rng.random_bool(0.7);
                let featured = self.rng.random_bool(0.1);
                json!({"flags": {"verified": verified, "featured": featured, "sellDisabled": false}})
            }
            EventType::TwitterVerified => {
                json!({"twitterHandle": format!("@{}_official", self.tokens[i].id.to_ascii_lowercase()),
                       "verified": true})
            }
            EventType::SocialLinksUpdated => {
                let id = self.tokens[i].id.to_ascii_lowercase();
                json!({"links": {"twitter": format!("https://x.com/{id}"),
                                 "telegram": format!("https://t.me/{id}"),
                                 "website": format!("https://{id}.example")}})
            }
            EventType::CommentPosted => {
                let text = COMMENTS[self.rng.random_range(0..COMMENTS.len())];
                let s = &mut self.tokens[i];
                s.comments += 1;
                json!({"commentId": format!("{}-c{}", s.id, s.comments), "author": author, "text": text})
            }
            EventType::CommentPinned => {
                let s = &self.tokens[i];
                json!({"commentId": format!("{}-c{}", s.id, s.comments.max(1)), "pinned": true, "pinnedBy": author})
            }
            EventType::CommentUpvoted => {
                let s = &mut self.tokens[i];
                s.upvotes += 1;
                json!({"commentId": format!("{}-c{}", s.id, s.comments.max(1)), "upvotes": s.upvotes, "voter": author})
            }
            EventType::FavoriteToggled => {
                json!({"user": author, "favorited": self.rng.random_bool(0.8)})
            }
            EventType::TokenCreated => {
                let s = &self.tokens[i];
                let (name, ticker, price) = (
                    format!("{} Token", s.id),
                    s.id.to_ascii_uppercase(),
                    s.price,
                );
                let creator = self.address();
                json!({"name": name, "ticker": ticker, "creator": creator, "initialPrice": fmt_dec(price),
                       "totalSupply": "21000000"})
            }
            EventType::TokenListed => {
                json!({"price": fmt_dec(self.tokens[i].price), "market": "odin.fun"})
            }
            EventType::PriceDeltaUpdated => {
                let s = &self.tokens[i];
                let change = (s.price / s.open_24h - 1.0) * 100.0;
                json!({"price": fmt_dec(s.price), "priceChange24h": (change * 100.0).round() / 100.0})
            }
            EventType::HolderCountUpdated => {
                let drift = (z * 3.0).round() as i64;
                let s = &mut self.tokens[i];
                s.holders = s.holders.saturating_add_signed(drift).max(1);
                json!({"holderCount": s.holders, "change": drift})
            }
            EventType::AnalyticsRecalculated => {
                let s = &self.tokens[i];
                let market_cap = s.price * 21_000_000.0;
                json!({"volume24h": fmt_dec(s.volume_24h), "marketCap": fmt_dec(market_cap),
                       "holderCount": s.holders, "price": fmt_dec(s.price)})
            }
            EventType::TrendingUpdated => {
                json!({"rank": self.rng.random_range(1..=100u32), "score": (self.rng.random::<f64>() * 1000.0).round()})
            }
            EventType::BalanceUpdated => {
                let address = self.address();
                let balance = self.trade_amount(self.tokens[i].price);
                json!({"address": address, "balance": fmt_dec(balance)})
            }
            EventType::TransferCompleted => {
                let (from, to, tx) = (self.address(), self.address(), self.tx_hash());
                let amount = self.trade_amount(self.tokens[i].price);
                json!({"from": from, "to": to, "amount": fmt_dec(amount), "txHash": tx})
            }
        };
        match value {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

/// A decimal string with enough significant digits for tiny prices, no exponent.
fn fmt_dec(x: f64) -> String {
    if !(x.is_finite() && x > 0.0) {
        return "0".to_owned();
    }
    let digits = if x >= 1.0 {
        6
    } else {
        // Keep ~8 significant digits below 1.
        8i32.saturating_sub(x.log10().floor() as i32).clamp(6, 20) as usize
    };
    let s = format!("{x:.digits$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn tokens() -> Vec<String> {
        ["BTC", "ETH", "0x0000000000000000000000000000000000000001"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn weights_cover_every_type_and_sum_to_one() {
        assert_eq!(WEIGHTS.iter().map(|(_, w)| w).sum::<u32>(), TOTAL_WEIGHT);
        for t in EventType::ALL {
            assert!(weight(t) > 0, "{t}");
        }
        let share = |cs: &[Category]| cs.iter().map(|c| category_share(*c)).sum::<f64>();
        assert!((share(&[Category::Trade]) - 0.50).abs() < 1e-9);
        assert!((share(&[Category::Liquidity, Category::Analytics]) - 0.30).abs() < 1e-9);
        assert!(
            (share(&[Category::Metadata, Category::Community, Category::Balances])
                + f64::from(weight(EventType::SocialLinksUpdated)) / 10_000.0
                - 0.19)
                .abs()
                < 1e-9
        );
        assert!(
            (share(&[Category::Creation])
                + f64::from(weight(EventType::TwitterVerified)) / 10_000.0
                - 0.01)
                .abs()
                < 1e-9
        );
    }

    #[test]
    fn mix_of_10k_events_matches_the_weights() {
        let mut g = Generator::new(&tokens(), 7);
        let n = 10_000;
        let mut by_type: HashMap<EventType, u32> = HashMap::new();
        for _ in 0..n {
            *by_type.entry(g.next_event().event_type).or_default() += 1;
        }
        assert_eq!(by_type.len(), 23, "every type appears: {by_type:?}");
        for c in Category::ALL {
            let got: u32 = c
                .event_types()
                .map(|t| by_type.get(&t).copied().unwrap_or(0))
                .sum();
            let share = f64::from(got) / f64::from(n);
            // 4 standard deviations of a binomial share at n = 10,000 is at most 2 points.
            let want = category_share(c);
            let tol = 4.0 * (want * (1.0 - want) / f64::from(n)).sqrt() + 0.001;
            assert!(
                (share - want).abs() <= tol,
                "{c}: {share} vs {want} ± {tol}"
            );
        }
        let trading: u32 = Category::Trade.event_types().map(|t| by_type[&t]).sum();
        assert!((4_800..=5_200).contains(&trading), "{trading}");
    }

    #[test]
    fn every_event_is_valid_and_trades_map() {
        let mut g = Generator::new(&tokens(), 11);
        for _ in 0..5_000 {
            let e = g.next_event();
            crate::schema::check(e.event_type, &e.data)
                .unwrap_or_else(|r| panic!("{}: {r}: {:?}", e.event_type, e.data));
            odin_events::TokenId::validate(&e.token_id).unwrap();
            let t = e.event_type;
            let ready = e.into_ready().unwrap();
            assert_eq!(ready.trade.is_some(), t.is_trade());
            if let Some(tr) = ready.trade {
                assert!(tr.price > rust_decimal::Decimal::ZERO, "{tr:?}");
                assert!(tr.tx_hash.starts_with("0x") && tr.tx_hash.len() == 66);
            }
        }
    }

    #[test]
    fn prices_walk_and_stay_positive() {
        let mut g = Generator::new(&["BTC".to_owned()], 3);
        let start = g.tokens[0].price;
        let mut prices = Vec::new();
        for _ in 0..2_000 {
            let e = g.next_event();
            if e.event_type.is_trade() {
                let p: f64 = e.data["price"].as_str().unwrap().parse().unwrap();
                assert!(p > 0.0);
                prices.push(p);
            }
        }
        assert!(prices.windows(2).all(|w| (w[1] / w[0] - 1.0).abs() < 0.05));
        assert!(prices.iter().any(|p| (p / start - 1.0).abs() > 1e-6));
        // Same seed, same stream.
        let a: Vec<_> = {
            let mut g = Generator::new(&tokens(), 5);
            (0..50).map(|_| g.next_event().data).collect()
        };
        let mut g = Generator::new(&tokens(), 5);
        let b: Vec<_> = (0..50).map(|_| g.next_event().data).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn decimals_have_no_exponent() {
        assert_eq!(fmt_dec(1.5), "1.5");
        assert_eq!(fmt_dec(0.000_001_234_567_89), "0.00000123456789");
        assert_eq!(fmt_dec(0.0), "0");
        assert_eq!(fmt_dec(f64::NAN), "0");
        odin_events::decimal::parse(&fmt_dec(1e-11)).unwrap();
    }
}
