//! The channel registry: token + category → subscribers, plus wildcard (`*`) subscribers per
//! category, and the fan-out of one shared frame to all of them.
//!
//! One shard (an `RwLock`) per category: a record takes one read lock, never held across an
//! await; delivering to a subscriber is a non-blocking `try_send` of a reference-counted
//! frame, so there is no per-delivery allocation or lock and a slow client can never slow
//! the consumer or the other clients.
//!
//! No silent loss: a frame that does not fit a client's queue is dropped, and the drop is
//! remembered per channel ([`Gap`]); before that channel's next event the client gets a
//! `gap` frame naming the offsets it missed. With `WS_SLOW_CLIENT=disconnect` the first
//! drop also starts the client's clock: unless its queue drains below half within
//! `WS_SLOW_CLIENT_TIMEOUT`, it is closed (1008 "slow consumer").

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use odin_events::{Category, Channel};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::auth::ConnIdentity;
use crate::config::SlowClientPolicy;
use crate::metrics::FanoutMetrics;
use crate::policy::Audience;
use crate::protocol;
use crate::recovery::Seam;

/// Channels of one connection with unreported drops at most. A client losing frames of
/// more channels than this at once (a slow wildcard subscriber under `WS_SLOW_CLIENT=drop`)
/// is closed as a slow consumer rather than tracked without bound.
pub const MAX_GAP_CHANNELS: usize = 256;

/// Frames of one channel dropped for one client since its last delivered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Offset of the first dropped record.
    pub from: i64,
    /// Offset of the last dropped record.
    pub to: i64,
    pub dropped: u64,
}

/// One connection as the fan-out sees it.
#[derive(Debug)]
pub struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Utf8Bytes>,
    /// When a frame first did not fit the queue (ms since the registry's epoch, +1); 0 = the
    /// clock is not running. See [`Registry::too_slow`] for when it stops.
    full_since: AtomicU64,
    /// When a frame last did not fit (same clock).
    last_drop: AtomicU64,
    /// Unreported drops per channel; at most [`MAX_GAP_CHANNELS`] channels.
    gaps: Mutex<Gaps>,
    /// `gaps` is not empty: the common case (no drops) never takes the mutex.
    has_gaps: AtomicBool,
    kicked: AtomicBool,
    kick: Notify,
    /// Who the connection is: private records go only to their user.
    pub identity: ConnIdentity,
    /// Holds live frames of channels being replayed, so replay and live join seamlessly.
    pub seam: Seam<Utf8Bytes>,
}

impl Subscriber {
    /// A subscriber whose frames go to `tx`.
    pub fn new(id: u64, tx: mpsc::Sender<Utf8Bytes>) -> Self {
        // A replay holds at most a queue's worth of live frames per channel.
        let seam = Seam::new(tx.max_capacity());
        Self {
            id,
            tx,
            full_since: AtomicU64::new(0),
            last_drop: AtomicU64::new(0),
            gaps: Mutex::new(Gaps::default()),
            has_gaps: AtomicBool::new(false),
            kicked: AtomicBool::new(false),
            kick: Notify::new(),
            identity: ConnIdentity::anonymous(),
            seam,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Completes once the fan-out has decided this client is too slow to keep.
    pub async fn kicked(&self) {
        if self.kicked.load(Ordering::Acquire) {
            return;
        }
        self.kick.notified().await;
    }

    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::Acquire)
    }

    /// Tells the session to close with 1008 "slow consumer" (once).
    fn kick(&self) {
        if !self.kicked.swap(true, Ordering::AcqRel) {
            self.kick.notify_one();
        }
    }

    /// Forgets unreported drops of channels the connection no longer receives (after an
    /// unsubscribe): no next event will carry them.
    pub fn retain_gaps(&self, mut keep: impl FnMut(Category, &str) -> bool) {
        if !self.has_gaps.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut gaps) = self.gaps.lock() {
            for c in Category::ALL {
                gaps.by_category[c.index()].retain(|t, _| keep(c, t));
            }
            gaps.count = gaps.by_category.iter().map(HashMap::len).sum();
            self.has_gaps.store(gaps.count > 0, Ordering::Relaxed);
        }
    }

    /// The unreported drops of a channel (tests, tools).
    pub fn gap(&self, category: Category, token: &str) -> Option<Gap> {
        let gaps = self.gaps.lock().ok()?;
        gaps.by_category[category.index()].get(token).copied()
    }
}

/// A connection's unreported drops, per category then token (so a lookup borrows the token).
#[derive(Debug, Default)]
struct Gaps {
    by_category: [HashMap<Box<str>, Gap>; 8],
    count: usize,
}

/// What became of one frame offered to one subscriber.
enum Offered {
    Sent,
    /// Did not fit (counted as a drop of the channel).
    Full,
    Closed,
}

#[derive(Debug, Default)]
struct Shard {
    /// Subscribers of each token, sorted by id (so wildcard delivery can de-duplicate).
    exact: HashMap<Box<str>, Vec<Arc<Subscriber>>>,
    /// Subscribers of `*.<category>`, sorted by id.
    wildcard: Vec<Arc<Subscriber>>,
}

fn insert_sorted(v: &mut Vec<Arc<Subscriber>>, s: &Arc<Subscriber>) -> bool {
    match v.binary_search_by_key(&s.id, |x| x.id) {
        Ok(_) => false,
        Err(i) => {
            v.insert(i, Arc::clone(s));
            true
        }
    }
}

fn remove_sorted(v: &mut Vec<Arc<Subscriber>>, id: u64) -> bool {
    match v.binary_search_by_key(&id, |x| x.id) {
        Ok(i) => {
            v.remove(i);
            true
        }
        Err(_) => false,
    }
}

/// Counts of one record's fan-out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    pub delivered: u64,
    pub dropped: u64,
}

/// Every subscription of the process.
#[derive(Debug)]
pub struct Registry {
    shards: [RwLock<Shard>; 8],
    policy: SlowClientPolicy,
    slow_timeout_ms: u64,
    /// Drops closer together than this belong to one slow spell: half the timeout.
    quiet_ms: u64,
    epoch: Instant,
    metrics: FanoutMetrics,
}

impl Registry {
    pub fn new(policy: SlowClientPolicy, slow_timeout: Duration) -> Self {
        Self {
            shards: Default::default(),
            policy,
            slow_timeout_ms: slow_timeout.as_millis() as u64,
            quiet_ms: (slow_timeout.as_millis() as u64 / 2).max(10),
            epoch: Instant::now(),
            metrics: FanoutMetrics::new(),
        }
    }

    /// Adds `sub` to `channels`; returns how many were new.
    pub fn subscribe(&self, sub: &Arc<Subscriber>, channels: &[Channel]) -> usize {
        let mut added = 0;
        for c in channels {
            let Ok(mut shard) = self.shards[c.category().index()].write() else {
                continue;
            };
            let new = if c.is_wildcard() {
                insert_sorted(&mut shard.wildcard, sub)
            } else {
                match shard.exact.get_mut(c.token()) {
                    Some(v) => insert_sorted(v, sub),
                    None => {
                        shard.exact.insert(c.token().into(), vec![Arc::clone(sub)]);
                        true
                    }
                }
            };
            added += usize::from(new);
        }
        self.metrics.subscriptions.increment(added as f64);
        added
    }

    /// Removes `sub` from `channels`; returns how many it was in.
    pub fn unsubscribe(&self, id: u64, channels: &[Channel]) -> usize {
        let mut removed = 0;
        for c in channels {
            let Ok(mut shard) = self.shards[c.category().index()].write() else {
                continue;
            };
            let gone = if c.is_wildcard() {
                remove_sorted(&mut shard.wildcard, id)
            } else {
                let (gone, empty) = match shard.exact.get_mut(c.token()) {
                    Some(v) => (remove_sorted(v, id), v.is_empty()),
                    None => (false, false),
                };
                if empty {
                    shard.exact.remove(c.token());
                }
                gone
            };
            removed += usize::from(gone);
        }
        self.metrics.subscriptions.decrement(removed as f64);
        removed
    }

    /// A public record (tests, tools): [`Registry::deliver_to`] with no offset and everyone.
    pub fn deliver(
        &self,
        category: Category,
        token: &str,
        frame: impl FnOnce() -> Utf8Bytes,
    ) -> Fanout {
        self.deliver_to(category, token, -1, Audience::Everyone, frame)
    }

    /// Queues the frame of the record at `offset` on `token` in `category` for every
    /// subscriber of the channel and of its wildcard that `audience` admits, each once.
    /// `frame` is built only when someone listens.
    pub fn deliver_to(
        &self,
        category: Category,
        token: &str,
        offset: i64,
        audience: Audience<'_>,
        frame: impl FnOnce() -> Utf8Bytes,
    ) -> Fanout {
        let mut out = Fanout::default();
        let Ok(shard) = self.shards[category.index()].read() else {
            return out;
        };
        let exact = shard.exact.get(token).map(Vec::as_slice).unwrap_or(&[]);
        if exact.is_empty() && shard.wildcard.is_empty() {
            return out;
        }
        let frame = frame();
        let mut slow = 0u64;
        let mut closed = 0u64;
        // Read the clock once per private record, not per subscriber.
        let now_ms = if audience.is_private() {
            crate::auth::epoch_ms()
        } else {
            0
        };
        let mut offer = |s: &Subscriber| {
            if !audience.admits(&s.identity, now_ms) {
                return;
            }
            // Held for a replay in progress: the session sends it after the replay.
            if s.seam.hold(category, token, offset, &frame) {
                return;
            }
            self.offer(
                s,
                category,
                token,
                offset,
                &frame,
                &mut out,
                &mut slow,
                &mut closed,
            );
        };
        for s in exact {
            offer(s);
        }
        for s in &shard.wildcard {
            // A client on both `BTC.trade` and `*.trade` gets the record once.
            if !exact.is_empty() && exact.binary_search_by_key(&s.id, |x| x.id).is_ok() {
                continue;
            }
            offer(s);
        }
        drop(shard);
        self.metrics.deliveries.increment(out.delivered);
        if slow > 0 {
            match self.policy {
                SlowClientPolicy::Drop => self.metrics.dropped_queue_full.increment(slow),
                SlowClientPolicy::Disconnect => self.metrics.dropped_slow.increment(slow),
            }
        }
        if closed > 0 {
            self.metrics.dropped_closed.increment(closed);
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn offer(
        &self,
        s: &Subscriber,
        category: Category,
        token: &str,
        offset: i64,
        frame: &Utf8Bytes,
        out: &mut Fanout,
        slow: &mut u64,
        closed: &mut u64,
    ) {
        if s.kicked.load(Ordering::Relaxed) {
            *closed += 1;
            out.dropped += 1;
            return;
        }
        let offered = if s.has_gaps.load(Ordering::Relaxed) {
            self.offer_after_gap(s, category, token, frame)
        } else {
            match s.tx.try_send(frame.clone()) {
                Ok(()) => Offered::Sent,
                Err(mpsc::error::TrySendError::Full(_)) => Offered::Full,
                Err(mpsc::error::TrySendError::Closed(_)) => Offered::Closed,
            }
        };
        match offered {
            Offered::Sent => {
                // The clock is not stopped here: a client that frees a slot now and then
                // (one reading at half the channel's rate) stays on it. The session stops
                // it once the queue is below half after a write ([`Registry::too_slow`]).
                out.delivered += 1;
            }
            Offered::Full => {
                *slow += 1;
                out.dropped += 1;
                self.record_drop(s, category, token, offset);
                let now = self.now();
                let last = s.last_drop.swap(now, Ordering::Relaxed);
                let since = s.full_since.load(Ordering::Relaxed);
                if since == 0 || now.saturating_sub(last) > self.quiet_ms {
                    // A new slow spell: its first drop starts the clock.
                    s.full_since.store(now, Ordering::Relaxed);
                } else if self.policy == SlowClientPolicy::Disconnect
                    && now.saturating_sub(since) >= self.slow_timeout_ms
                {
                    s.kick();
                }
            }
            Offered::Closed => {
                *closed += 1;
                out.dropped += 1;
            }
        }
    }

    /// A frame for a subscriber with unreported drops: when its channel has one, the `gap`
    /// frame goes first, and only together with the event (two slots), so the client never
    /// sees an event after a hole it was not told about.
    fn offer_after_gap(
        &self,
        s: &Subscriber,
        category: Category,
        token: &str,
        frame: &Utf8Bytes,
    ) -> Offered {
        let Ok(mut gaps) = s.gaps.lock() else {
            return Offered::Closed;
        };
        let Some(gap) = gaps.by_category[category.index()].get(token).copied() else {
            drop(gaps);
            return match s.tx.try_send(frame.clone()) {
                Ok(()) => Offered::Sent,
                Err(mpsc::error::TrySendError::Full(_)) => Offered::Full,
                Err(mpsc::error::TrySendError::Closed(_)) => Offered::Closed,
            };
        };
        let (first, second) = match (s.tx.try_reserve(), s.tx.try_reserve()) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(mpsc::error::TrySendError::Closed(_)), _)
            | (_, Err(mpsc::error::TrySendError::Closed(_))) => return Offered::Closed,
            // A permit taken alone is released when dropped here.
            _ => return Offered::Full,
        };
        first.send(protocol::gap_frame(token, category, gap));
        second.send(frame.clone());
        gaps.by_category[category.index()].remove(token);
        gaps.count -= 1;
        s.has_gaps.store(gaps.count > 0, Ordering::Relaxed);
        drop(gaps);
        self.metrics.gaps.increment(1);
        Offered::Sent
    }

    /// Remembers a dropped frame of `token`'s channel for the next `gap` frame.
    fn record_drop(&self, s: &Subscriber, category: Category, token: &str, offset: i64) {
        let Ok(mut gaps) = s.gaps.lock() else {
            return;
        };
        if let Some(g) = gaps.by_category[category.index()].get_mut(token) {
            g.to = offset;
            g.dropped += 1;
            return;
        }
        if gaps.count >= MAX_GAP_CHANNELS {
            // Tracking more would cost memory per dropped channel; closing is not silent.
            drop(gaps);
            s.kick();
            return;
        }
        gaps.by_category[category.index()].insert(
            token.into(),
            Gap {
                from: offset,
                to: offset,
                dropped: 1,
            },
        );
        gaps.count += 1;
        s.has_gaps.store(true, Ordering::Relaxed);
    }

    /// Milliseconds since the registry's epoch, +1 (0 means "clock not running").
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// The session's half of `WS_SLOW_CLIENT=disconnect`, after each batch it wrote and
    /// flushed, with `queued` frames left. The clock stops when the queue is below half and
    /// nothing was dropped for half the timeout: the session takes a whole batch out of the
    /// queue before the client has read it, so between two bursts of a channel the queue of a
    /// client reading at half rate is found empty too; its drops, though, never pause.
    /// True when the clock has run for `WS_SLOW_CLIENT_TIMEOUT` and the queue is still at or
    /// above half (a channel that went quiet after its drops is checked here; a busy one on
    /// its next drop).
    pub fn too_slow(&self, s: &Subscriber, queued: usize) -> bool {
        let since = s.full_since.load(Ordering::Relaxed);
        if since == 0 {
            return false;
        }
        let now = self.now();
        if queued * 2 < s.tx.max_capacity() {
            if now.saturating_sub(s.last_drop.load(Ordering::Relaxed)) > self.quiet_ms {
                let _ =
                    s.full_since
                        .compare_exchange(since, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
            return false;
        }
        self.policy == SlowClientPolicy::Disconnect
            && now.saturating_sub(since) >= self.slow_timeout_ms
    }

    /// Channels with at least one subscriber (for `/health`).
    pub fn channel_count(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.read().ok())
            .map(|s| s.exact.len() + usize::from(!s.wildcard.is_empty()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(id: u64, cap: usize) -> (Arc<Subscriber>, mpsc::Receiver<Utf8Bytes>) {
        let (tx, rx) = mpsc::channel(cap);
        (Arc::new(Subscriber::new(id, tx)), rx)
    }

    fn ch(s: &str) -> Channel {
        Channel::parse(s).unwrap()
    }

    fn frame() -> Utf8Bytes {
        Utf8Bytes::from_static("{}")
    }

    #[test]
    fn exact_wildcard_and_dedup() {
        let reg = Registry::new(SlowClientPolicy::Drop, Duration::from_secs(5));
        let (a, mut ra) = sub(1, 8);
        let (b, mut rb) = sub(2, 8);
        assert_eq!(reg.subscribe(&a, &[ch("BTC.trade"), ch("*.trade")]), 2);
        assert_eq!(reg.subscribe(&a, &[ch("BTC.trade")]), 0);
        reg.subscribe(&b, &[ch("ETH.trade")]);
        assert_eq!(reg.deliver(Category::Trade, "BTC", frame).delivered, 1);
        assert_eq!(reg.deliver(Category::Trade, "ETH", frame).delivered, 2);
        assert_eq!(reg.deliver(Category::Social, "BTC", frame).delivered, 0);
        assert_eq!(ra.try_recv().ok(), Some(frame()));
        assert_eq!(ra.try_recv().ok(), Some(frame()));
        assert!(ra.try_recv().is_err());
        assert!(rb.try_recv().is_ok());
        assert!(rb.try_recv().is_err());
        assert_eq!(reg.unsubscribe(1, &[ch("*.trade"), ch("SOL.trade")]), 1);
        assert_eq!(reg.deliver(Category::Trade, "ETH", frame).delivered, 1);
        assert!(ra.try_recv().is_err());
    }

    #[test]
    fn frame_built_only_with_subscribers() {
        let reg = Registry::new(SlowClientPolicy::Drop, Duration::from_secs(5));
        let built = std::cell::Cell::new(false);
        reg.deliver(Category::Trade, "BTC", || {
            built.set(true);
            frame()
        });
        assert!(!built.get());
    }

    #[test]
    fn slow_subscriber_is_kicked_after_the_timeout() {
        let reg = Registry::new(SlowClientPolicy::Disconnect, Duration::from_millis(0));
        let (a, _ra) = sub(1, 1);
        reg.subscribe(&a, &[ch("BTC.trade")]);
        assert_eq!(reg.deliver(Category::Trade, "BTC", frame).delivered, 1);
        // Full once: the clock starts; full again after the (zero) timeout: kicked.
        assert_eq!(reg.deliver(Category::Trade, "BTC", frame).dropped, 1);
        assert!(!a.is_kicked());
        reg.deliver(Category::Trade, "BTC", frame);
        assert!(a.is_kicked());
    }

    #[test]
    fn drop_policy_never_kicks() {
        let reg = Registry::new(SlowClientPolicy::Drop, Duration::from_millis(0));
        let (a, _ra) = sub(1, 1);
        reg.subscribe(&a, &[ch("*.creation")]);
        for _ in 0..5 {
            reg.deliver(Category::Creation, "NEW", frame);
        }
        assert!(!a.is_kicked());
    }

    #[test]
    fn drops_are_reported_by_a_gap_frame_before_the_next_event() {
        let reg = Registry::new(SlowClientPolicy::Drop, Duration::from_secs(5));
        let (a, mut ra) = sub(1, 2);
        reg.subscribe(&a, &[ch("BTC.trade"), ch("ETH.trade")]);
        let at = |token: &str, offset: i64| {
            reg.deliver_to(Category::Trade, token, offset, Audience::Everyone, frame)
        };
        for offset in 10..15 {
            at("BTC", offset);
        }
        // 10 and 11 queued, 12 to 14 dropped.
        let gap = |from, to, dropped| Gap { from, to, dropped };
        assert_eq!(a.gap(Category::Trade, "BTC"), Some(gap(12, 14, 3)));
        // One free slot is not enough for the gap frame and the event: 15 is dropped too.
        ra.try_recv().unwrap();
        assert_eq!(at("BTC", 15).dropped, 1);
        assert_eq!(a.gap(Category::Trade, "BTC"), Some(gap(12, 15, 4)));
        // Another channel without drops is delivered as usual.
        ra.try_recv().unwrap();
        assert_eq!(at("ETH", 3).delivered, 1);
        ra.try_recv().unwrap();
        ra.try_recv().unwrap_err();
        assert_eq!(at("BTC", 16).delivered, 1);
        let g = ra.try_recv().unwrap();
        assert_eq!(
            crate::protocol::to_value(&g).unwrap(),
            serde_json::json!({"type":"gap","channel":"BTC.trade","fromOffset":12,"toOffset":15,"dropped":4})
        );
        assert_eq!(ra.try_recv().ok(), Some(frame()));
        assert_eq!(a.gap(Category::Trade, "BTC"), None);
    }

    #[test]
    fn a_client_dropping_without_pause_is_kicked_and_one_that_caught_up_is_not() {
        let reg = Registry::new(SlowClientPolicy::Disconnect, Duration::from_millis(100));
        let (a, mut ra) = sub(1, 4);
        let (b, mut rb) = sub(2, 4);
        reg.subscribe(&a, &[ch("BTC.trade")]);
        reg.subscribe(&b, &[ch("ETH.trade")]);
        for _ in 0..5 {
            reg.deliver(Category::Trade, "BTC", frame);
            reg.deliver(Category::Trade, "ETH", frame);
        }
        // Both full, one drop each. `a` empties its queue (one batch) but keeps dropping
        // every 20 ms: an empty queue between drops does not stop its clock.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(150) && !a.is_kicked() {
            while ra.try_recv().is_ok() {}
            assert!(!reg.too_slow(&a, ra.len()));
            for _ in 0..5 {
                reg.deliver(Category::Trade, "BTC", frame);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(a.is_kicked());
        // `b` drains below half and drops nothing for half the timeout: its clock stops.
        for _ in 0..3 {
            rb.try_recv().unwrap();
        }
        assert!(!reg.too_slow(&b, rb.len()));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!reg.too_slow(&b, rb.len()));
        assert_eq!(b.full_since.load(Ordering::Relaxed), 0);
        std::thread::sleep(Duration::from_millis(60));
        reg.deliver(Category::Trade, "ETH", frame);
        assert!(!b.is_kicked());
    }
}
