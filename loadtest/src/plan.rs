//! The load plan: which tokens exist, which channels each client subscribes to (and the frame
//! it sends), which channels are produced to, and how many subscribers each channel has —
//! everything expected-delivery accounting needs. Pure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use bundles::Bundle;
use odin_events::{Category, Channel, EventType, TokenId};

/// How a client subscribes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `{"type":"subscribe","bundle":…,"tokens":[…]}`.
    Bundle,
    /// `{"type":"subscribe","channels":["TOKEN.category",…]}`.
    Channels,
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error("no tokens to subscribe to")]
    NoTokens,
    #[error("invalid token {token:?}: {reason}")]
    BadToken { token: String, reason: String },
    #[error("--tokens-per-client {per_client} is more than the {tokens} tokens available")]
    TooManyPerClient { per_client: usize, tokens: usize },
    #[error("--tokens-per-client must be at least 1")]
    ZeroPerClient,
    #[error("unknown bundle {name:?}")]
    UnknownBundle { name: String },
    #[error("unknown category {name:?}")]
    UnknownCategory { name: String },
    #[error("no categories for channel mode")]
    NoCategories,
}

/// One channel that is produced to: its name, token, and the event type its events carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    pub name: String,
    pub token: String,
    pub category: Category,
    pub event_type: EventType,
}

/// Inputs of a plan.
#[derive(Debug, Clone)]
pub struct PlanSpec {
    pub clients: usize,
    pub mode: Mode,
    pub bundle: String,
    /// Channel-mode categories.
    pub categories: Vec<String>,
    pub tokens: Vec<String>,
    /// `Some((K, C))`: generate K tokens and give each client C of them, spread evenly.
    pub spread: Option<(usize, usize)>,
}

/// The plan every part of a run shares (read-only, so no lock).
#[derive(Debug)]
pub struct Plan {
    pub tokens: Vec<String>,
    pub channels: Vec<ChannelInfo>,
    pub ids: HashMap<String, u32>,
    categories: Vec<Category>,
    mode: Mode,
    bundle: Option<Bundle>,
    spread: Option<(usize, usize)>,
    clients: usize,
    /// Subscribers per channel if every client subscribes.
    planned: Vec<u32>,
}

/// Token names of spread mode: `T000`, `T001`, … (width grows with K).
pub fn spread_tokens(k: usize) -> Vec<String> {
    let width = k.saturating_sub(1).to_string().len().max(3);
    (0..k).map(|i| format!("T{i:0width$}")).collect()
}

/// Indices of the tokens of client `client`: C consecutive tokens (mod K) starting at
/// `client × C`, so every token gets the same number of subscribers when clients × C is a
/// multiple of K, and never differs by more than one otherwise.
pub fn assign_tokens(client: usize, k: usize, c: usize) -> impl Iterator<Item = usize> {
    let start = client.wrapping_mul(c) % k.max(1);
    (0..c).map(move |j| (start + j) % k.max(1))
}

impl Plan {
    pub fn new(spec: &PlanSpec) -> Result<Self, PlanError> {
        let tokens = match spec.spread {
            Some((k, c)) => {
                if c == 0 {
                    return Err(PlanError::ZeroPerClient);
                }
                if c > k {
                    return Err(PlanError::TooManyPerClient {
                        per_client: c,
                        tokens: k,
                    });
                }
                spread_tokens(k)
            }
            None => spec.tokens.iter().map(|t| t.trim().to_owned()).collect(),
        };
        if tokens.is_empty() {
            return Err(PlanError::NoTokens);
        }
        for t in &tokens {
            // The wildcard is refused too: its expected deliveries would depend on every
            // other token's traffic, which this tool does not model.
            TokenId::validate(t).map_err(|e| PlanError::BadToken {
                token: t.clone(),
                reason: e.to_string(),
            })?;
        }
        let (bundle, categories) = match spec.mode {
            Mode::Bundle => {
                let b: Bundle = spec.bundle.parse().map_err(|_| PlanError::UnknownBundle {
                    name: spec.bundle.clone(),
                })?;
                (Some(b), b.categories().to_vec())
            }
            Mode::Channels => {
                let cats = spec
                    .categories
                    .iter()
                    .map(|c| {
                        c.trim()
                            .parse::<Category>()
                            .map_err(|_| PlanError::UnknownCategory { name: c.clone() })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if cats.is_empty() {
                    return Err(PlanError::NoCategories);
                }
                (None, cats)
            }
        };
        let mut channels = Vec::with_capacity(tokens.len() * categories.len());
        let mut ids = HashMap::with_capacity(tokens.len() * categories.len());
        // Category-major: producing round-robin over channels cycles through every token of a
        // category before the next category, so load spreads over tokens (and partitions).
        for cat in &categories {
            for tok in &tokens {
                let name = format!("{tok}.{cat}");
                if ids.contains_key(&name) {
                    continue;
                }
                ids.insert(name.clone(), channels.len() as u32);
                channels.push(ChannelInfo {
                    name,
                    token: tok.clone(),
                    category: *cat,
                    event_type: cat
                        .event_types()
                        .next()
                        .unwrap_or(EventType::ALL[cat.index()]),
                });
            }
        }
        let mut plan = Plan {
            tokens,
            channels,
            ids,
            categories,
            mode: spec.mode,
            bundle,
            spread: spec.spread,
            clients: spec.clients,
            planned: Vec::new(),
        };
        let mut planned = vec![0u32; plan.channels.len()];
        for client in 0..spec.clients {
            for id in plan.client_channels(client) {
                planned[id as usize] += 1;
            }
        }
        plan.planned = planned;
        Ok(plan)
    }

    /// Token indices of a client.
    pub fn client_tokens(&self, client: usize) -> Vec<usize> {
        match self.spread {
            Some((k, c)) => assign_tokens(client, k, c).collect(),
            None => (0..self.tokens.len()).collect(),
        }
    }

    /// Channel ids a client subscribes to, ascending and de-duplicated.
    pub fn client_channels(&self, client: usize) -> Vec<u32> {
        let mut out = Vec::new();
        for t in self.client_tokens(client) {
            for c in &self.categories {
                let name = format!("{}.{}", self.tokens[t], c);
                if let Some(&id) = self.ids.get(&name) {
                    out.push(id);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The subscribe frame client `client` sends.
    pub fn subscribe_frame(&self, client: usize) -> String {
        let id = format!("lt-{client}");
        match (self.mode, self.bundle) {
            (Mode::Bundle, Some(b)) => {
                let tokens: Vec<&str> = self
                    .client_tokens(client)
                    .into_iter()
                    .map(|t| self.tokens[t].as_str())
                    .collect();
                serde_json::json!({"type":"subscribe","id":id,"bundle":b.as_str(),"tokens":tokens})
                    .to_string()
            }
            _ => {
                let channels: Vec<&str> = self
                    .client_channels(client)
                    .into_iter()
                    .map(|c| self.channels[c as usize].name.as_str())
                    .collect();
                serde_json::json!({"type":"subscribe","id":id,"channels":channels}).to_string()
            }
        }
    }

    /// Subscribers per channel when every planned client is subscribed.
    pub fn planned_subscribers(&self, channel: u32) -> u32 {
        self.planned.get(channel as usize).copied().unwrap_or(0)
    }

    /// Channels with at least one planned subscriber: the ones worth producing to.
    pub fn produced_channels(&self) -> Vec<u32> {
        (0..self.channels.len() as u32)
            .filter(|&c| self.planned_subscribers(c) > 0)
            .collect()
    }

    /// Deliveries one event per produced channel makes, averaged: the fan-out factor.
    pub fn mean_fanout(&self) -> f64 {
        let produced = self.produced_channels();
        if produced.is_empty() {
            return 0.0;
        }
        let total: u64 = produced
            .iter()
            .map(|&c| u64::from(self.planned_subscribers(c)))
            .sum();
        total as f64 / produced.len() as f64
    }

    pub fn clients(&self) -> usize {
        self.clients
    }

    /// A short description for the report.
    pub fn describe(&self) -> String {
        let per_client = self.client_channels(0).len();
        let how = match (self.mode, self.bundle) {
            (Mode::Bundle, Some(b)) => format!("bundle {b}"),
            _ => format!(
                "channels ({})",
                self.categories
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        let tokens = match self.spread {
            Some((k, c)) => format!("{c} of {k} tokens per client"),
            None => format!("tokens {}", self.tokens.join(",")),
        };
        format!(
            "{how}, {tokens}, {per_client} channels per client, {} produced channels, mean fan-out {:.1}",
            self.produced_channels().len(),
            self.mean_fanout()
        )
    }

    /// The channel a client might receive on, from an event frame's `channel` field.
    pub fn channel_id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Checks that a channel name is of the form the gateway sends.
    pub fn is_valid_channel(name: &str) -> bool {
        Channel::parse(name).is_ok()
    }
}

/// Live subscriber counts per channel: a client adds its channels once the gateway confirmed
/// its subscription and removes them when its connection ends. The producer reads the count
/// of an event's channel when it sends the event: that many deliveries are expected of it.
#[derive(Debug)]
pub struct Subscribers(Box<[AtomicU32]>);

impl Subscribers {
    pub fn new(channels: usize) -> Self {
        Self((0..channels).map(|_| AtomicU32::new(0)).collect())
    }

    pub fn add(&self, channels: &[u32]) {
        for &c in channels {
            if let Some(a) = self.0.get(c as usize) {
                a.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    pub fn remove(&self, channels: &[u32]) {
        for &c in channels {
            if let Some(a) = self.0.get(c as usize) {
                // Never below zero, even if a caller removes twice.
                let _ = a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
            }
        }
    }

    pub fn get(&self, channel: u32) -> u32 {
        self.0
            .get(channel as usize)
            .map_or(0, |a| a.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(clients: usize, mode: Mode, spread: Option<(usize, usize)>) -> PlanSpec {
        PlanSpec {
            clients,
            mode,
            bundle: "TRADING".into(),
            categories: vec!["trade".into()],
            tokens: vec!["BTC".into(), "ETH".into(), "SOL".into()],
            spread,
        }
    }

    #[test]
    fn spread_assignment_is_even() {
        // Scenario 1: 12,000 clients, 3 of 100 tokens each: 360 subscribers per token.
        let mut per_token = vec![0u32; 100];
        for client in 0..12_000 {
            let toks: Vec<usize> = assign_tokens(client, 100, 3).collect();
            assert_eq!(toks.len(), 3);
            let mut d = toks.clone();
            d.dedup();
            assert_eq!(d.len(), 3, "distinct tokens for client {client}");
            for t in toks {
                per_token[t] += 1;
            }
        }
        assert!(per_token.iter().all(|&n| n == 360), "{per_token:?}");

        // Uneven totals differ by at most one.
        let mut per_token = vec![0u32; 7];
        for client in 0..10 {
            for t in assign_tokens(client, 7, 3) {
                per_token[t] += 1;
            }
        }
        let (min, max) = (
            per_token.iter().min().unwrap(),
            per_token.iter().max().unwrap(),
        );
        assert!(max - min <= 1, "{per_token:?}");
        assert_eq!(per_token.iter().sum::<u32>(), 30);
    }

    #[test]
    fn fanout_scenario_two_has_a_thousand_subscribers_per_channel() {
        let plan = Plan::new(&spec(10_000, Mode::Channels, Some((100, 10)))).unwrap();
        assert_eq!(plan.channels.len(), 100);
        assert_eq!(plan.produced_channels().len(), 100);
        for c in plan.produced_channels() {
            assert_eq!(plan.planned_subscribers(c), 1_000);
        }
        assert_eq!(plan.client_channels(0).len(), 10);
        assert!((plan.mean_fanout() - 1_000.0).abs() < 1e-9);
    }

    #[test]
    fn bundle_plan_expands_categories() {
        let plan = Plan::new(&spec(12_000, Mode::Bundle, Some((100, 3)))).unwrap();
        assert_eq!(plan.channels.len(), 300);
        assert_eq!(plan.client_channels(5).len(), 9);
        assert_eq!(plan.planned_subscribers(0), 360);
        let frame: serde_json::Value = serde_json::from_str(&plan.subscribe_frame(1)).unwrap();
        assert_eq!(frame["type"], "subscribe");
        assert_eq!(frame["bundle"], "TRADING");
        assert_eq!(frame["tokens"], serde_json::json!(["T003", "T004", "T005"]));
        // The channels the gateway will confirm are exactly the plan's.
        let names: Vec<&str> = plan
            .client_channels(1)
            .into_iter()
            .map(|c| plan.channels[c as usize].name.as_str())
            .collect();
        let expanded = bundles::expand_bundle(
            Bundle::Trading,
            &["T003".to_owned(), "T004".to_owned(), "T005".to_owned()],
        )
        .unwrap();
        let mut want: Vec<String> = expanded.iter().map(|c| c.to_string()).collect();
        want.sort();
        let mut got: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        got.sort();
        assert_eq!(got, want);
        for n in &names {
            assert!(Plan::is_valid_channel(n));
        }
    }

    #[test]
    fn fixed_tokens_give_every_client_every_token() {
        let plan = Plan::new(&spec(4, Mode::Channels, None)).unwrap();
        assert_eq!(plan.client_channels(3).len(), 3);
        let frame: serde_json::Value = serde_json::from_str(&plan.subscribe_frame(0)).unwrap();
        assert_eq!(
            frame["channels"],
            serde_json::json!(["BTC.trade", "ETH.trade", "SOL.trade"])
        );
        assert_eq!(
            plan.planned_subscribers(plan.channel_id("ETH.trade").unwrap()),
            4
        );
        assert_eq!(plan.channels[0].event_type, EventType::TradeExecuted);
    }

    #[test]
    fn bad_inputs_are_refused() {
        let mut s = spec(1, Mode::Channels, Some((3, 4)));
        assert!(matches!(
            Plan::new(&s),
            Err(PlanError::TooManyPerClient { .. })
        ));
        s.spread = None;
        s.tokens = vec!["*".into()];
        assert!(matches!(Plan::new(&s), Err(PlanError::BadToken { .. })));
        s.tokens = vec![];
        assert_eq!(Plan::new(&s).unwrap_err(), PlanError::NoTokens);
        s.tokens = vec!["BTC".into()];
        s.categories = vec!["trades".into()];
        assert!(matches!(
            Plan::new(&s),
            Err(PlanError::UnknownCategory { .. })
        ));
        let mut b = spec(1, Mode::Bundle, None);
        b.bundle = "NOPE".into();
        assert!(matches!(
            Plan::new(&b),
            Err(PlanError::UnknownBundle { .. })
        ));
    }

    #[test]
    fn live_subscriber_counts_drive_expected_deliveries() {
        let plan = Plan::new(&spec(3, Mode::Channels, None)).unwrap();
        let subs = Subscribers::new(plan.channels.len());
        let btc = plan.channel_id("BTC.trade").unwrap();
        // Two clients confirmed; the third never did.
        subs.add(&plan.client_channels(0));
        subs.add(&plan.client_channels(1));
        let mut expected = 0u64;
        for _ in 0..10 {
            expected += u64::from(subs.get(btc));
        }
        assert_eq!(expected, 20);
        // One disconnects: later events expect one delivery each.
        subs.remove(&plan.client_channels(1));
        expected += u64::from(subs.get(btc));
        assert_eq!(expected, 21);
        subs.remove(&plan.client_channels(0));
        subs.remove(&plan.client_channels(0));
        assert_eq!(subs.get(btc), 0, "a removal too many never wraps");
    }

    #[test]
    fn spread_token_names_are_valid_and_sortable() {
        let t = spread_tokens(1000);
        assert_eq!(t[0], "T000");
        assert_eq!(t[999], "T999");
        assert_eq!(spread_tokens(1001)[1000], "T1000");
        for x in &t {
            TokenId::validate(x).unwrap();
        }
    }
}
