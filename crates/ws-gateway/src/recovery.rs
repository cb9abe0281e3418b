//! Lossless reconnect: replays a channel's retained records after the last offset a client
//! saw, read straight from Kafka, and joins the replay to live delivery without a gap or a
//! duplicate ([`Seam`]).
//!
//! A channel lives in exactly one partition (its token's, by Kafka's murmur2 partitioner, of
//! its category's topic or of the single topic), so an offset is a position every gateway
//! instance agrees on. Recoveries use one Kafka connection of their own (never a consumer's,
//! whose long polls would delay them), fetch without waiting, and are bounded in records,
//! time and concurrency.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use odin_events::{partition_for_key, Category, Channel, TopicMode, TopicNames};
use odin_service::kafka::partition_counts;
use odin_service::KafkaConnector;
use rskafka::client::error::{Error as RsError, ProtocolError, ServerErrorResponse};
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use rskafka::client::Client;
use rskafka::record::RecordAndOffset;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{debug, warn};

/// Recovery settings; flattened into the gateway's `Config`.
#[derive(Debug, Clone, Args)]
pub struct RecoveryArgs {
    /// Records one subscribe may replay over all its `recover` channels; beyond it the
    /// channel is reported `"recovered":false` (the client refetches state).
    #[arg(long, env = "WS_RECOVERY_MAX_RECORDS", default_value_t = 1000)]
    pub recovery_max_records: usize,

    /// Time one subscribe may spend replaying; channels not done by then are reported
    /// `"recovered":false`.
    #[arg(long, env = "WS_RECOVERY_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub recovery_timeout: Duration,

    /// Recoveries running at once in this instance (a reconnect storm queues, within its
    /// time limit, instead of flooding the broker).
    #[arg(long, env = "WS_RECOVERY_CONCURRENCY", default_value_t = 8)]
    pub recovery_concurrency: usize,
}

impl Default for RecoveryArgs {
    fn default() -> Self {
        Self {
            recovery_max_records: 1000,
            recovery_timeout: Duration::from_secs(3),
            recovery_concurrency: 8,
        }
    }
}

impl RecoveryArgs {
    /// Refuses settings recovery cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        if self.recovery_timeout.is_zero() {
            return Err("WS_RECOVERY_TIMEOUT must be positive".into());
        }
        if self.recovery_concurrency == 0 {
            return Err("WS_RECOVERY_CONCURRENCY must be at least 1".into());
        }
        Ok(())
    }
}

/// Why a channel's recovery is incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Incomplete {
    /// The position was removed by retention (below the earliest retained offset).
    Retention,
    /// The position lies beyond the partition's log end (not an offset of this log).
    BeyondLogEnd,
    /// More records than `WS_RECOVERY_MAX_RECORDS` were missed.
    TooManyRecords,
    /// The replay did not finish within `WS_RECOVERY_TIMEOUT`.
    Timeout,
    /// Kafka could not be asked (broker down, topic missing).
    Unavailable,
    /// Live events arrived faster than the replay could join them (the join buffer filled).
    Overrun,
    /// The channel is a wildcard or not part of this subscription.
    NotSubscribed,
    /// The channel was already live on this connection: nothing to recover.
    AlreadySubscribed,
}

impl Incomplete {
    pub fn as_str(self) -> &'static str {
        match self {
            Incomplete::Retention => "retention",
            Incomplete::BeyondLogEnd => "beyond_log_end",
            Incomplete::TooManyRecords => "too_many_records",
            Incomplete::Timeout => "timeout",
            Incomplete::Unavailable => "unavailable",
            Incomplete::Overrun => "overrun",
            Incomplete::NotSubscribed => "not_subscribed",
            Incomplete::AlreadySubscribed => "already_subscribed",
        }
    }
}

/// What the `subscribed` reply says about one channel:
/// `{"recovered":true,"replayed":12}` or `{"recovered":false,"replayed":0,"reason":"retention"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub recovered: bool,
    pub replayed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Incomplete>,
}

impl Outcome {
    pub fn complete(replayed: usize) -> Self {
        Self {
            recovered: true,
            replayed,
            reason: None,
        }
    }

    pub fn incomplete(reason: Incomplete) -> Self {
        Self {
            recovered: false,
            replayed: 0,
            reason: Some(reason),
        }
    }
}

/// The result of one channel's replay.
#[derive(Debug)]
pub struct Replay<T> {
    pub outcome: Outcome,
    /// The decoded records, in offset order (empty unless the replay is complete).
    pub items: Vec<T>,
    /// Live records of the channel at or after this offset are new to the client; earlier
    /// ones were replayed or seen before the disconnect (the [`Seam`] cutoff).
    pub live_from: i64,
}

impl<T> Replay<T> {
    fn incomplete(reason: Incomplete, after: i64) -> Self {
        Self {
            outcome: Outcome::incomplete(reason),
            items: Vec::new(),
            live_from: after.saturating_add(1),
        }
    }
}

/// Replays channels from Kafka for every connection of one gateway instance.
#[derive(Debug)]
pub struct Recoverer {
    connector: KafkaConnector,
    names: TopicNames,
    /// The recovery connection, made on first use and again after a failure. A tokio mutex:
    /// held across the connect only.
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    /// Partition counts of the event topics, refreshed when a topic is not in it.
    partitions: Mutex<HashMap<String, i32>>,
    permits: Semaphore,
    max_bytes: i32,
    pub max_records: usize,
    pub timeout: Duration,
}

/// Where a channel's records are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub topic: String,
    pub partition: i32,
}

impl Recoverer {
    pub fn new(connector: KafkaConnector, names: TopicNames, args: &RecoveryArgs) -> Self {
        Self {
            connector,
            names,
            client: tokio::sync::Mutex::new(None),
            partitions: Mutex::new(HashMap::new()),
            permits: Semaphore::new(args.recovery_concurrency.max(1)),
            max_bytes: 1024 * 1024,
            max_records: args.recovery_max_records,
            timeout: args.recovery_timeout,
        }
    }

    async fn client(&self) -> Result<Arc<Client>, RsError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(
            self.connector
                .client()
                .await
                .map_err(|e| RsError::InvalidResponse(format!("recovery connection: {e}")))?,
        );
        *slot = Some(Arc::clone(&c));
        Ok(c)
    }

    async fn forget_client(&self) {
        *self.client.lock().await = None;
    }

    /// Whether every category shares the single topic (then a record's category is its
    /// event type's, not its topic's).
    pub fn is_single(&self) -> bool {
        self.names.mode == TopicMode::Single
    }

    /// The topic of a category in the current mode.
    fn topic_of(&self, category: Category) -> &str {
        match self.names.mode {
            TopicMode::PerCategory => &self.names.categories[category.index()],
            TopicMode::Single => &self.names.single,
        }
    }

    /// The partition holding `channel` (a concrete token).
    pub async fn locate(&self, channel: &Channel) -> Option<Location> {
        let topic = self.topic_of(channel.category()).to_owned();
        let cached = self
            .partitions
            .lock()
            .ok()
            .and_then(|p| p.get(&topic).copied());
        let n = match cached {
            Some(n) => n,
            None => {
                let client = self.client().await.ok()?;
                // An unfiltered listing: a filtered one would create the topic on a broker
                // with `auto.create.topics.enable`.
                let counts = partition_counts(&client).await.ok()?;
                let n = counts.get(&topic).copied();
                if let Ok(mut p) = self.partitions.lock() {
                    p.extend(counts);
                }
                n?
            }
        };
        (n > 0).then(|| Location {
            partition: partition_for_key(channel.token().as_bytes(), n),
            topic,
        })
    }

    /// Replays `channel`'s records after offset `after` until the partition's log end as of
    /// now, passing each record whose key is the channel's token (or that has no key) to
    /// `decode`; `decode` returns `Some` for the records the client gets (right category,
    /// allowed by the delivery policy). At most `max_records` items, finished by `deadline`.
    pub async fn replay<T>(
        &self,
        channel: &Channel,
        after: i64,
        max_records: usize,
        deadline: Instant,
        decode: impl FnMut(&RecordAndOffset) -> Option<T>,
    ) -> Replay<T> {
        if channel.is_wildcard() {
            return Replay::incomplete(Incomplete::NotSubscribed, after);
        }
        let permit = match tokio::time::timeout_at(deadline, self.permits.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Replay::incomplete(Incomplete::Unavailable, after),
            Err(_) => return Replay::incomplete(Incomplete::Timeout, after),
        };
        let attempt = tokio::time::timeout_at(
            deadline,
            self.replay_inner(channel, after, max_records, decode),
        )
        .await;
        drop(permit);
        let r = match attempt {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                warn!(%channel, after, error = %e, "recovery failed");
                self.forget_client().await;
                Replay::incomplete(Incomplete::Unavailable, after)
            }
            Err(_) => Replay::incomplete(Incomplete::Timeout, after),
        };
        let label = match r.outcome.reason {
            None => "recovered",
            Some(reason) => reason.as_str(),
        };
        metrics::counter!("ws_recoveries_total", "result" => label).increment(1);
        metrics::counter!("ws_recovery_records_total").increment(r.items.len() as u64);
        r
    }

    async fn replay_inner<T>(
        &self,
        channel: &Channel,
        after: i64,
        max_records: usize,
        mut decode: impl FnMut(&RecordAndOffset) -> Option<T>,
    ) -> Result<Replay<T>, RsError> {
        let Some(loc) = self.locate(channel).await else {
            return Ok(Replay::incomplete(Incomplete::Unavailable, after));
        };
        let from = after.saturating_add(1);
        let client = self.client().await?;
        let pc = client
            .partition_client(
                loc.topic.clone(),
                loc.partition,
                UnknownTopicHandling::Error,
            )
            .await?;
        let earliest = pc.get_offset(OffsetAt::Earliest).await?;
        if from < earliest {
            return Ok(Replay::incomplete(Incomplete::Retention, after));
        }
        let token = channel.token().as_bytes();
        let mut items = Vec::new();
        let mut next = from;
        // The log end when the replay started: live delivery takes over from there.
        let mut end: Option<i64> = None;
        loop {
            // fetch_from: a client's offset usually lies inside a produced batch.
            let fetched = odin_service::fetch_from(&pc, next, self.max_bytes, 0).await;
            let (records, hwm) = match fetched {
                Ok(r) => r,
                Err(RsError::ServerError {
                    protocol_error: ProtocolError::OffsetOutOfRange,
                    response,
                    ..
                }) => {
                    // Kafka answers OffsetOutOfRange with a high-watermark of -1: ask for it.
                    let hwm = match response {
                        Some(ServerErrorResponse::PartitionFetchState {
                            high_watermark, ..
                        }) if high_watermark >= 0 => high_watermark,
                        _ => pc.get_offset(OffsetAt::Latest).await?,
                    };
                    if next > hwm {
                        debug!(%channel, after, hwm, "recovery position beyond the log end");
                        return Ok(Replay::incomplete(Incomplete::BeyondLogEnd, after));
                    }
                    // Below the log start after all (retention ran meanwhile).
                    return Ok(Replay::incomplete(Incomplete::Retention, after));
                }
                Err(e) => return Err(e),
            };
            let end = *end.get_or_insert(hwm);
            if from > end {
                return Ok(Replay::incomplete(Incomplete::BeyondLogEnd, after));
            }
            for r in &records {
                // A batch may start before the requested offset; records past the end
                // belong to live delivery.
                if r.offset < next || r.offset >= end {
                    continue;
                }
                let keyed_elsewhere =
                    matches!(r.record.key.as_deref(), Some(k) if !k.is_empty() && k != token);
                if keyed_elsewhere {
                    continue;
                }
                if let Some(item) = decode(r) {
                    if items.len() >= max_records {
                        return Ok(Replay::incomplete(Incomplete::TooManyRecords, after));
                    }
                    items.push(item);
                }
            }
            if let Some(last) = records.iter().map(|r| r.offset).max() {
                next = next.max(last + 1);
            }
            if next >= end {
                return Ok(Replay {
                    outcome: Outcome::complete(items.len()),
                    items,
                    live_from: end,
                });
            }
            if records.is_empty() {
                // Nothing yet up to the end seen: the broker has not made it readable; ask
                // again (the caller's deadline bounds this).
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// One channel's live frames held while its replay runs.
#[derive(Debug)]
struct Held<F> {
    category: Category,
    /// Holding while the replay runs; afterwards only filtering (see [`Seam::finish`]).
    holding: bool,
    frames: VecDeque<(i64, F)>,
    overrun: bool,
    /// After the replay: live frames below this offset were already sent.
    floor: i64,
}

/// The join between a replay and live delivery on one connection.
///
/// Before the connection subscribes a channel it wants recovered, [`Seam::begin`] makes the
/// fan-out hold that channel's live frames (with their offsets) instead of queueing them.
/// The replay then reads Kafka up to the log end; [`Seam::finish`] hands back the held frames
/// at or after each channel's cutoff (older ones were replayed or already seen) and stops
/// holding, atomically with respect to the fan-out, so every later frame queues behind them.
/// Whatever the live consumer's position relative to the replay, each record reaches the
/// client once and in offset order.
#[derive(Debug)]
pub struct Seam<F> {
    active: AtomicBool,
    /// token → held channels of that token (a handful of categories at most).
    held: Mutex<HashMap<Box<str>, Vec<Held<F>>>>,
    /// Frames held per channel at most; beyond it the channel's recovery is an overrun.
    cap: usize,
}

impl<F: Clone> Seam<F> {
    pub fn new(cap: usize) -> Self {
        Self {
            active: AtomicBool::new(false),
            held: Mutex::new(HashMap::new()),
            cap: cap.max(1),
        }
    }

    /// Starts holding the live frames of `channels` (concrete tokens only).
    pub fn begin<'a>(&self, channels: impl IntoIterator<Item = &'a Channel>) {
        let Ok(mut held) = self.held.lock() else {
            return;
        };
        for c in channels.into_iter().filter(|c| !c.is_wildcard()) {
            let list = held.entry(c.token().into()).or_default();
            list.retain(|h| h.category != c.category());
            list.push(Held {
                category: c.category(),
                holding: true,
                frames: VecDeque::new(),
                overrun: false,
                floor: i64::MIN,
            });
        }
        self.active.store(!held.is_empty(), Ordering::Release);
    }

    /// Called by the fan-out for every frame offered to this connection: `true` when the
    /// frame was held (the fan-out must not queue it). One atomic load when no replay runs.
    #[inline]
    pub fn hold(&self, category: Category, token: &str, offset: i64, frame: &F) -> bool {
        if !self.active.load(Ordering::Acquire) {
            return false;
        }
        self.hold_slow(category, token, offset, frame)
    }

    fn hold_slow(&self, category: Category, token: &str, offset: i64, frame: &F) -> bool {
        let Ok(mut held) = self.held.lock() else {
            return false;
        };
        let Some(list) = held.get_mut(token) else {
            return false;
        };
        let Some(i) = list.iter().position(|h| h.category == category) else {
            return false;
        };
        let h = &mut list[i];
        if !h.holding {
            if offset < h.floor {
                // The live consumer is behind the replay: the client has this one.
                return true;
            }
            // Caught up: the channel is plain live from here on.
            list.swap_remove(i);
            if list.is_empty() {
                held.remove(token);
            }
            if held.is_empty() {
                self.active.store(false, Ordering::Release);
            }
            return false;
        }
        if h.frames.len() >= self.cap {
            h.overrun = true;
        } else {
            h.frames.push_back((offset, frame.clone()));
        }
        true
    }

    /// Stops holding and returns, in order, the held frames each channel's client still
    /// needs (offset ≥ `cutoff(channel)`), and the channels whose hold overflowed.
    ///
    /// The live consumer may still be behind the replay's end (it lags, or this instance
    /// started after the records were written), so each channel keeps filtering: live frames
    /// below what was sent are dropped until the consumer reaches it, then the channel is
    /// plain live.
    pub fn finish(&self, cutoff: impl Fn(&Channel) -> i64) -> (Vec<F>, Vec<Channel>) {
        let Ok(mut held) = self.held.lock() else {
            return (Vec::new(), Vec::new());
        };
        let mut out = Vec::new();
        let mut overrun = Vec::new();
        for (token, list) in held.iter_mut() {
            for h in list.iter_mut().filter(|h| h.holding) {
                let Ok(token_id) = odin_events::TokenId::new(&**token) else {
                    continue;
                };
                let channel = Channel::new(&token_id, h.category);
                if h.overrun {
                    overrun.push(channel.clone());
                }
                let mut floor = cutoff(&channel);
                for (offset, f) in h.frames.drain(..) {
                    // Held in fan-out order (offset order); a duplicate offset is skipped.
                    if offset >= floor {
                        floor = offset.saturating_add(1);
                        out.push(f);
                    }
                }
                h.holding = false;
                h.floor = floor;
            }
        }
        self.active.store(!held.is_empty(), Ordering::Release);
        (out, overrun)
    }

    /// Forgets `channels` (unsubscribed): a later subscribe starts from a clean slate.
    pub fn forget<'a>(&self, channels: impl IntoIterator<Item = &'a Channel>) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut held) = self.held.lock() else {
            return;
        };
        for c in channels {
            if let Some(list) = held.get_mut(c.token()) {
                list.retain(|h| h.category != c.category());
                if list.is_empty() {
                    held.remove(c.token());
                }
            }
        }
        self.active.store(!held.is_empty(), Ordering::Release);
    }

    /// Whether a replay is joining live delivery right now.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> Channel {
        Channel::parse(s).unwrap()
    }

    #[test]
    fn outcome_serialises_as_the_issue_says() {
        assert_eq!(
            serde_json::to_value(Outcome::complete(12)).unwrap(),
            serde_json::json!({"recovered":true,"replayed":12})
        );
        assert_eq!(
            serde_json::to_value(Outcome::incomplete(Incomplete::Retention)).unwrap(),
            serde_json::json!({"recovered":false,"replayed":0,"reason":"retention"})
        );
    }

    #[test]
    fn seam_passes_frames_through_when_idle() {
        let seam: Seam<i64> = Seam::new(8);
        assert!(!seam.hold(Category::Trade, "BTC", 1, &1));
        seam.begin([&ch("*.trade")]);
        assert!(!seam.is_active(), "wildcards are never recovered");
    }

    #[test]
    fn seam_holds_only_recovering_channels_and_cuts_at_the_replay_end() {
        let seam: Seam<i64> = Seam::new(8);
        seam.begin([&ch("BTC.trade"), &ch("ETH.trade")]);
        assert!(seam.is_active());
        // Other channels pass through.
        assert!(!seam.hold(Category::Social, "BTC", 5, &5));
        assert!(!seam.hold(Category::Trade, "SOL", 5, &5));
        // The live consumer lags: 8 and 9 are also in the replay (which ends at 10).
        for o in [8, 9, 10, 11] {
            assert!(seam.hold(Category::Trade, "BTC", o, &o));
        }
        assert!(seam.hold(Category::Trade, "ETH", 3, &103));
        let (out, overrun) = seam.finish(|c| if c.token() == "BTC" { 10 } else { 0 });
        let mut out = out;
        out.sort_unstable();
        assert_eq!(out, vec![10, 11, 103]);
        assert!(overrun.is_empty());
        // A lagging live consumer's older frames are dropped after the join too; the first
        // new one ends the filtering.
        assert!(seam.hold(Category::Trade, "BTC", 9, &9));
        assert!(seam.hold(Category::Trade, "BTC", 11, &11));
        assert!(!seam.hold(Category::Trade, "BTC", 12, &12));
        assert!(!seam.hold(Category::Trade, "ETH", 104, &104));
        assert!(!seam.is_active());
        assert!(!seam.hold(Category::Trade, "BTC", 5, &5));
    }

    #[test]
    fn seam_forgets_unsubscribed_channels() {
        let seam: Seam<i64> = Seam::new(8);
        seam.begin([&ch("BTC.trade")]);
        assert!(seam.hold(Category::Trade, "BTC", 10, &10));
        let _ = seam.finish(|_| 0);
        assert!(
            seam.is_active(),
            "filtering until the live consumer passes 10"
        );
        seam.forget([&ch("BTC.trade")]);
        assert!(!seam.is_active());
        assert!(!seam.hold(Category::Trade, "BTC", 3, &3));
    }

    #[test]
    fn seam_reports_overrun() {
        let seam: Seam<i64> = Seam::new(2);
        seam.begin([&ch("BTC.trade")]);
        for o in 0..5 {
            assert!(seam.hold(Category::Trade, "BTC", o, &o));
        }
        let (out, overrun) = seam.finish(|_| 0);
        assert_eq!(out, vec![0, 1]);
        assert_eq!(overrun, vec![ch("BTC.trade")]);
    }
}
