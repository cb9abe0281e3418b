//! The channel registry: token + category → subscribers, plus wildcard (`*`) subscribers per
//! category, and the fan-out of one shared frame to all of them.
//!
//! One shard (an `RwLock`) per category: a record takes one read lock, never held across an
//! await; delivering to a subscriber is a non-blocking `try_send` of a reference-counted
//! frame, so there is no per-delivery allocation or lock and a slow client can never slow
//! the consumer or the other clients.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use odin_events::{Category, Channel};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::auth::ConnIdentity;
use crate::config::SlowClientPolicy;
use crate::metrics::FanoutMetrics;
use crate::policy::Audience;
use crate::recovery::Seam;

/// One connection as the fan-out sees it.
#[derive(Debug)]
pub struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Utf8Bytes>,
    /// When the queue was first found full (ms since the registry's epoch, +1); 0 = not full.
    full_since: AtomicU64,
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
    epoch: Instant,
    metrics: FanoutMetrics,
}

impl Registry {
    pub fn new(policy: SlowClientPolicy, slow_timeout: Duration) -> Self {
        Self {
            shards: Default::default(),
            policy,
            slow_timeout_ms: slow_timeout.as_millis() as u64,
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
            self.offer(s, &frame, &mut out, &mut slow, &mut closed);
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

    fn offer(
        &self,
        s: &Subscriber,
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
        match s.tx.try_send(frame.clone()) {
            Ok(()) => {
                out.delivered += 1;
                // Read before writing so the common case does not dirty a shared cache line.
                if s.full_since.load(Ordering::Relaxed) != 0 {
                    s.full_since.store(0, Ordering::Relaxed);
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                *slow += 1;
                out.dropped += 1;
                if self.policy == SlowClientPolicy::Disconnect {
                    let now = self.epoch.elapsed().as_millis() as u64 + 1;
                    let since = s.full_since.load(Ordering::Relaxed);
                    if since == 0 {
                        s.full_since.store(now, Ordering::Relaxed);
                    } else if now.saturating_sub(since) >= self.slow_timeout_ms
                        && !s.kicked.swap(true, Ordering::AcqRel)
                    {
                        s.kick.notify_one();
                    }
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                *closed += 1;
                out.dropped += 1;
            }
        }
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
}
