//! Per-token rolling windows over sparse time buckets. Pure: no I/O, no clock.
//!
//! A bucket `k` holds the trades with event time `t` in `((k−1)·G, k·G]` (G = the bucket
//! granularity, which divides the publish interval and every window), so the window rule
//! `end − W < t ≤ end` selects whole buckets whenever `end` is a multiple of G. A bucket keeps
//! counts, exact decimal sums and the open/close trade (by event time, ties by input
//! position), never the trades themselves; buckets at or below the horizon are dropped.

use std::collections::{HashMap, VecDeque};

use odin_events::aggregate::{price_change, AGGREGATE_VERSION};
use odin_events::{Side, TokenAggregateData, TokenAggregateItem, TradeRecord};
use rust_decimal::Decimal;

/// A window length with the name it is published under (`time_window`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    pub name: String,
    pub ms: i64,
}

/// Where a trade was read: orders trades with equal event time the same way in every run
/// (a token lives on one partition, so this is its input order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InputPos {
    pub topic: u16,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PricePoint {
    t: i64,
    pos: InputPos,
    price: Decimal,
}

impl PricePoint {
    fn key(&self) -> (i64, InputPos) {
        (self.t, self.pos)
    }
}

/// Aggregates of the trades of one bucket (or of several merged).
#[derive(Debug, Clone, Default, PartialEq)]
struct Bucket {
    buy_count: u64,
    sell_count: u64,
    buy_volume: Decimal,
    sell_volume: Decimal,
    volume_usd: Decimal,
    open: Option<PricePoint>,
    close: Option<PricePoint>,
}

/// Sums saturate instead of panicking: ingest caps single values (see
/// [`crate::ingest::MAX_VALUE`]) so saturation needs ~10⁹ maximal trades in one window.
fn add(a: Decimal, b: Decimal) -> Decimal {
    a.checked_add(b).unwrap_or(Decimal::MAX)
}

impl Bucket {
    fn add_trade(&mut self, t: &TradeRecord, pos: InputPos) {
        match t.side {
            Side::Buy => {
                self.buy_count += 1;
                self.buy_volume = add(self.buy_volume, t.amount);
            }
            Side::Sell => {
                self.sell_count += 1;
                self.sell_volume = add(self.sell_volume, t.amount);
            }
        }
        self.volume_usd = add(self.volume_usd, t.volume_usd.unwrap_or_default());
        let p = PricePoint {
            t: t.timestamp,
            pos,
            price: t.price,
        };
        self.merge_prices(Some(p), Some(p));
    }

    fn merge_prices(&mut self, open: Option<PricePoint>, close: Option<PricePoint>) {
        if let Some(o) = open {
            if self.open.is_none_or(|cur| o.key() < cur.key()) {
                self.open = Some(o);
            }
        }
        if let Some(c) = close {
            if self.close.is_none_or(|cur| c.key() > cur.key()) {
                self.close = Some(c);
            }
        }
    }

    fn merge(&mut self, other: &Bucket) {
        self.buy_count += other.buy_count;
        self.sell_count += other.sell_count;
        self.buy_volume = add(self.buy_volume, other.buy_volume);
        self.sell_volume = add(self.sell_volume, other.sell_volume);
        self.volume_usd = add(self.volume_usd, other.volume_usd);
        self.merge_prices(other.open, other.close);
    }

    fn total(&self) -> u64 {
        self.buy_count + self.sell_count
    }

    fn item(&self, window: &WindowSpec, timestamp: &str) -> TokenAggregateItem {
        let open = self.open.map(|p| p.price).unwrap_or_default();
        let close = self.close.map(|p| p.price).unwrap_or_default();
        TokenAggregateItem {
            time_window: window.name.clone(),
            sell_count: self.sell_count,
            buy_count: self.buy_count,
            total_trades: self.total(),
            sell_volume: self.sell_volume,
            buy_volume: self.buy_volume,
            total_volume: add(self.buy_volume, self.sell_volume),
            volume_usd: self.volume_usd,
            price_change: price_change(open, close),
            open_price: open,
            close_price: close,
            timestamp: timestamp.to_owned(),
        }
    }
}

/// One token's buckets, ascending by index. Trades arrive almost in event-time order, so
/// the bucket a trade belongs to is nearly always the newest one, found at the back in O(1);
/// an older one is found by binary search (creating a missing older bucket shifts the
/// shorter side of the deque, at most once per bucket).
#[derive(Debug, Default)]
struct Series(VecDeque<(i64, Bucket)>);

impl Series {
    fn bucket_mut(&mut self, k: i64) -> &mut Bucket {
        let at = match self.0.back() {
            Some((last, _)) if *last == k => self.0.len() - 1,
            Some((last, _)) if *last > k => match self.0.binary_search_by_key(&k, |(i, _)| *i) {
                Ok(i) => i,
                Err(i) => {
                    self.0.insert(i, (k, Bucket::default()));
                    i
                }
            },
            _ => {
                self.0.push_back((k, Bucket::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }

    /// Drops the buckets below index `keep_from`.
    fn expire(&mut self, keep_from: i64) {
        while self.0.front().is_some_and(|(k, _)| *k < keep_from) {
            self.0.pop_front();
        }
    }

    /// The buckets with index in `lo..=hi`, newest first.
    fn newest_first(&self, lo: i64, hi: i64) -> impl Iterator<Item = (i64, &Bucket)> {
        let from = self.0.partition_point(|(k, _)| *k < lo);
        let to = self.0.partition_point(|(k, _)| *k <= hi);
        self.0.range(from..to.max(from)).rev().map(|(k, b)| (*k, b))
    }
}

/// Hashes token names fast (a trade's lookup is on the ingest hot path) with a per-process
/// random seed, so crafted token names cannot force collisions.
type TokenMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// What happened to an inserted trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Added,
    /// At or below the horizon: no future scheduled tick can count it.
    TooOld,
}

/// The window state of every token this instance owns.
#[derive(Debug)]
pub struct Windows {
    /// Ascending by length.
    windows: Vec<WindowSpec>,
    granularity: i64,
    /// Trades with `t <= horizon` are dropped; buckets entirely at or below it are expired.
    horizon: i64,
    tokens: TokenMap<Series>,
}

/// Formats epoch ms as RFC 3339 UTC (`2024-01-01T00:00:30Z`, milliseconds only when non-zero).
pub fn rfc3339(ms: i64) -> String {
    match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms) {
        Some(t) if ms % 1000 == 0 => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

impl Windows {
    /// `windows` must be non-empty with positive lengths that are multiples of `granularity`
    /// (the config guarantees it).
    pub fn new(mut windows: Vec<WindowSpec>, granularity: i64, horizon: i64) -> Self {
        windows.sort_by_key(|w| w.ms);
        Self {
            windows,
            granularity: granularity.max(1),
            horizon,
            tokens: TokenMap::default(),
        }
    }

    pub fn largest(&self) -> i64 {
        self.windows.last().map_or(0, |w| w.ms)
    }

    pub fn granularity(&self) -> i64 {
        self.granularity
    }

    pub fn horizon(&self) -> i64 {
        self.horizon
    }

    /// Bucket index of event time `t`: the `k` with `(k−1)·G < t ≤ k·G`.
    fn bucket_of(&self, t: i64) -> i64 {
        t.div_euclid(self.granularity) + i64::from(t.rem_euclid(self.granularity) != 0)
    }

    /// Adds one trade, unless it is at or below the horizon.
    pub fn insert(&mut self, trade: &TradeRecord, pos: InputPos) -> Inserted {
        if trade.timestamp <= self.horizon {
            return Inserted::TooOld;
        }
        let k = self.bucket_of(trade.timestamp);
        // Look up before inserting so the common case does not allocate a key.
        if let Some(series) = self.tokens.get_mut(trade.token.as_str()) {
            series.bucket_mut(k).add_trade(trade, pos);
        } else {
            let mut series = Series::default();
            series.bucket_mut(k).add_trade(trade, pos);
            self.tokens.insert(trade.token.clone(), series);
        }
        Inserted::Added
    }

    /// Raises the horizon (never lowers it) and expires what falls below it.
    pub fn set_horizon(&mut self, horizon: i64) {
        if horizon <= self.horizon {
            return;
        }
        self.horizon = horizon;
        let g = self.granularity;
        // Bucket k's latest time is k·G; it expires when that is at or below the horizon.
        let keep_from = horizon.div_euclid(g) + 1;
        self.tokens.retain(|_, series| {
            series.expire(keep_from);
            !series.0.is_empty()
        });
    }

    /// Tokens with at least one bucket.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Buckets held in total (the state size).
    pub fn bucket_count(&self) -> usize {
        self.tokens.values().map(|s| s.0.len()).sum()
    }

    /// Rounds `ms` down to the bucket grid.
    pub fn align_down(&self, ms: i64) -> i64 {
        ms.div_euclid(self.granularity) * self.granularity
    }

    /// The aggregates at `end` (rounded down to the bucket grid) of every active token, or
    /// of `only` those tokens; sorted by token. `generated_at` is passed in (wall clock).
    pub fn snapshot(
        &self,
        end: i64,
        only: Option<&[String]>,
        generated_at: &str,
    ) -> Vec<TokenAggregateData> {
        let end = self.align_down(end);
        let mut names: Vec<&String> = match only {
            Some(list) => list
                .iter()
                .filter_map(|t| self.tokens.get_key_value(t).map(|(k, _)| k))
                .collect(),
            None => self.tokens.keys().collect(),
        };
        names.sort();
        names.dedup();
        let timestamp = rfc3339(end);
        names
            .into_iter()
            .filter_map(|token| {
                let items = self.token_items(self.tokens.get(token)?, end, &timestamp);
                (!items.is_empty()).then(|| TokenAggregateData {
                    token: token.clone(),
                    symbol: None,
                    name: None,
                    aggregate_data: items,
                    generated_at: generated_at.to_owned(),
                    version: AGGREGATE_VERSION.to_owned(),
                })
            })
            .collect()
    }

    fn token_items(&self, series: &Series, end: i64, timestamp: &str) -> Vec<TokenAggregateItem> {
        let g = self.granularity;
        let hi = end.div_euclid(g);
        // Window W covers buckets (end − W)/G + 1 ..= end/G.
        let lows: Vec<i64> = self
            .windows
            .iter()
            .map(|w| (end - w.ms).div_euclid(g) + 1)
            .collect();
        let lowest = lows.last().copied().unwrap_or(hi + 1);
        let mut out = Vec::with_capacity(self.windows.len());
        let mut acc = Bucket::default();
        let mut wi = 0;
        // Newest bucket first: each window's sum is the previous (smaller) one plus older
        // buckets, so one pass serves every window.
        if lowest <= hi {
            for (k, b) in series.newest_first(lowest, hi) {
                while wi < lows.len() && k < lows[wi] {
                    if acc.total() > 0 {
                        out.push(acc.item(&self.windows[wi], timestamp));
                    }
                    wi += 1;
                }
                acc.merge(b);
            }
        }
        while wi < self.windows.len() {
            if acc.total() > 0 {
                out.push(acc.item(&self.windows[wi], timestamp));
            }
            wi += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: i64 = 60_000;

    fn specs() -> Vec<WindowSpec> {
        vec![
            WindowSpec {
                name: "1min".into(),
                ms: MIN,
            },
            WindowSpec {
                name: "5min".into(),
                ms: 5 * MIN,
            },
        ]
    }

    fn trade(token: &str, side: Side, price: &str, amount: &str, t: i64) -> TradeRecord {
        let price: Decimal = price.parse().unwrap();
        let amount: Decimal = amount.parse().unwrap();
        TradeRecord {
            token: token.into(),
            side,
            price,
            amount,
            volume_usd: Some(price * amount),
            timestamp: t,
            tx_hash: String::new(),
        }
    }

    fn pos(offset: i64) -> InputPos {
        InputPos {
            topic: 0,
            partition: 0,
            offset,
        }
    }

    #[test]
    fn window_bounds_exclude_start_and_include_end() {
        let end = 10 * MIN;
        let mut w = Windows::new(specs(), 1000, 0);
        w.insert(&trade("A", Side::Buy, "1", "1", end - MIN), pos(0)); // out of 1min
        w.insert(&trade("A", Side::Sell, "2", "3", end), pos(1)); // in
        w.insert(&trade("A", Side::Buy, "4", "1", end + 1), pos(2)); // after end: out
        w.insert(&trade("A", Side::Buy, "5", "1", end - 5 * MIN), pos(3)); // out of 5min
        let snap = w.snapshot(end, None, "now");
        assert_eq!(snap.len(), 1);
        let items = &snap[0].aggregate_data;
        assert_eq!(items[0].time_window, "1min");
        assert_eq!((items[0].buy_count, items[0].sell_count), (0, 1));
        assert_eq!(items[0].open_price.to_string(), "2");
        assert_eq!(items[1].time_window, "5min");
        assert_eq!((items[1].buy_count, items[1].sell_count), (1, 1));
        assert_eq!(items[1].open_price.to_string(), "1");
        assert_eq!(items[1].close_price.to_string(), "2");
        assert_eq!(items[1].price_change, 100.0);
        assert_eq!(items[1].total_volume.to_string(), "4");
        assert_eq!(items[1].timestamp, "1970-01-01T00:10:00Z");
    }

    #[test]
    fn ties_are_broken_by_input_position() {
        let mut w = Windows::new(specs(), 1000, 0);
        let t = 3 * MIN;
        w.insert(&trade("A", Side::Buy, "7", "1", t), pos(5));
        w.insert(&trade("A", Side::Buy, "3", "1", t), pos(2));
        w.insert(&trade("A", Side::Buy, "9", "1", t), pos(9));
        let snap = w.snapshot(t, None, "now");
        let i = &snap[0].aggregate_data[0];
        assert_eq!(
            (i.open_price.to_string(), i.close_price.to_string()),
            ("3".into(), "9".into())
        );
    }

    #[test]
    fn horizon_drops_and_expires() {
        let mut w = Windows::new(specs(), 1000, MIN);
        assert_eq!(
            w.insert(&trade("A", Side::Buy, "1", "1", MIN), pos(0)),
            Inserted::TooOld
        );
        assert_eq!(
            w.insert(&trade("A", Side::Buy, "1", "1", MIN + 1), pos(1)),
            Inserted::Added
        );
        assert_eq!(
            w.insert(&trade("B", Side::Buy, "1", "1", 3 * MIN), pos(2)),
            Inserted::Added
        );
        assert_eq!(w.bucket_count(), 2);
        w.set_horizon(MIN + 1000);
        assert_eq!(w.token_count(), 1);
        w.set_horizon(0); // never lowered
        assert_eq!(w.horizon(), MIN + 1000);
    }

    #[test]
    fn tiny_amounts_sum_exactly() {
        let mut w = Windows::new(specs(), 1000, 0);
        for i in 0..10_000 {
            w.insert(
                &trade("A", Side::Buy, "0.1", "0.0000001", MIN + 1 + i),
                pos(i),
            );
        }
        let i = &w.snapshot(2 * MIN, None, "now")[0].aggregate_data[0];
        assert_eq!(i.buy_volume.normalize().to_string(), "0.001");
        assert_eq!(i.volume_usd.normalize().to_string(), "0.0001");
    }

    #[test]
    fn only_lists_requested_tokens_and_skips_empty_windows() {
        let mut w = Windows::new(specs(), 1000, 0);
        w.insert(&trade("A", Side::Buy, "1", "1", 2 * MIN), pos(0));
        w.insert(&trade("B", Side::Buy, "1", "1", 8 * MIN), pos(1));
        let snap = w.snapshot(8 * MIN, Some(&["A".into(), "Z".into()]), "now");
        assert_eq!(snap.len(), 0, "A has trades only outside both windows");
        let snap = w.snapshot(8 * MIN, None, "now");
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].token, "B");
        assert_eq!(snap[0].aggregate_data.len(), 2);
        let snap = w.snapshot(6 * MIN, None, "now");
        assert_eq!(snap[0].token, "A");
        assert_eq!(snap[0].aggregate_data.len(), 1, "1min window is empty");
        assert_eq!(snap[0].aggregate_data[0].time_window, "5min");
    }

    type Row = (
        String,
        u64,
        u64,
        Decimal,
        Decimal,
        Decimal,
        Decimal,
        Decimal,
    );

    /// Naive reference: filter the full trade list for each window.
    fn naive(
        trades: &[(TradeRecord, InputPos)],
        windows: &[WindowSpec],
        end: i64,
        horizon: i64,
    ) -> Vec<(String, Vec<Row>)> {
        let mut tokens: Vec<String> = trades.iter().map(|(t, _)| t.token.clone()).collect();
        tokens.sort();
        tokens.dedup();
        let mut out = Vec::new();
        for token in tokens {
            let mut items = Vec::new();
            for w in windows {
                let sel: Vec<_> = trades
                    .iter()
                    .filter(|(t, _)| {
                        t.token == token
                            && t.timestamp > horizon
                            && t.timestamp > end - w.ms
                            && t.timestamp <= end
                    })
                    .collect();
                if sel.is_empty() {
                    continue;
                }
                let buys = sel.iter().filter(|(t, _)| t.side == Side::Buy).count() as u64;
                let bv: Decimal = sel
                    .iter()
                    .filter(|(t, _)| t.side == Side::Buy)
                    .map(|(t, _)| t.amount)
                    .sum();
                let sv: Decimal = sel
                    .iter()
                    .filter(|(t, _)| t.side == Side::Sell)
                    .map(|(t, _)| t.amount)
                    .sum();
                let usd: Decimal = sel.iter().map(|(t, _)| t.volume_usd.unwrap()).sum();
                let open = sel
                    .iter()
                    .min_by_key(|(t, p)| (t.timestamp, *p))
                    .unwrap()
                    .0
                    .price;
                let close = sel
                    .iter()
                    .max_by_key(|(t, p)| (t.timestamp, *p))
                    .unwrap()
                    .0
                    .price;
                items.push((
                    w.name.clone(),
                    buys,
                    sel.len() as u64 - buys,
                    bv,
                    sv,
                    usd,
                    open,
                    close,
                ));
            }
            if !items.is_empty() {
                out.push((token, items));
            }
        }
        out
    }

    proptest! {
        #[test]
        fn matches_a_naive_reference(
            raw in proptest::collection::vec((0u8..3, any::<bool>(), 1u32..1000, 1u32..100_000, 0i64..400_000), 0..120),
            end_s in 0i64..400,
            horizon_s in 0i64..200,
            expire_s in 0i64..300,
        ) {
            let windows = specs();
            let end = end_s * 1000;
            let horizon = horizon_s * 1000;
            let mut w = Windows::new(windows.clone(), 1000, horizon);
            let mut all = Vec::new();
            for (i, (tok, buy, price, amount, t)) in raw.into_iter().enumerate() {
                let tr = TradeRecord {
                    token: format!("T{tok}"),
                    side: if buy { Side::Buy } else { Side::Sell },
                    price: Decimal::new(price.into(), 3),
                    amount: Decimal::new(amount.into(), 6),
                    volume_usd: Some(Decimal::new(amount.into(), 2)),
                    timestamp: t,
                    tx_hash: String::new(),
                };
                // Positions out of order on purpose: ties must follow the position.
                let p = pos((i as i64 * 7919) % 1000);
                w.insert(&tr, p);
                all.push((tr, p));
            }
            w.set_horizon(expire_s * 1000);
            let horizon = horizon.max(expire_s * 1000);
            let got: Vec<_> = w.snapshot(end, None, "g").into_iter().map(|d| {
                (d.token, d.aggregate_data.into_iter().map(|i| (
                    i.time_window, i.buy_count, i.sell_count, i.buy_volume, i.sell_volume,
                    i.volume_usd, i.open_price, i.close_price)).collect::<Vec<_>>())
            }).collect();
            prop_assert_eq!(got, naive(&all, &windows, end, horizon));
        }
    }
}
