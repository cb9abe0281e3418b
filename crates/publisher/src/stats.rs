//! Counters behind `/stats`, `/status` and `/metrics`: lock-free, updated on every
//! acknowledgement, with a once-a-second sampler for the recent rate.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::Counter;
use odin_events::EventType;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Where an event came from; a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Api,
    Simulator,
}

impl Source {
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Simulator => "simulator",
        }
    }
}

/// How far back `messagesPerSecond` looks.
const RATE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Inner {
    started: Instant,
    published: AtomicU64,
    failed: AtomicU64,
    simulated: AtomicU64,
    by_type: [AtomicU64; 23],
    /// Fixed at start (the publisher's topics), so updates need no lock.
    by_topic: HashMap<String, AtomicU64>,
    published_metric: [[Counter; 23]; 2],
    failed_metric: [Counter; 2],
    /// (when, published so far), one sample a second, oldest first.
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

/// Shared counters; cheap to clone.
#[derive(Debug, Clone)]
pub struct Stats(Arc<Inner>);

/// The body of `GET /stats`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    pub messages_published: u64,
    pub messages_failed: u64,
    pub messages_simulated: u64,
    pub by_topic: BTreeMap<String, u64>,
    pub by_event_type: BTreeMap<&'static str, u64>,
    /// Events acknowledged per second over the last ten seconds.
    pub messages_per_second: f64,
    /// Seconds since start.
    pub uptime: f64,
}

fn type_index(t: EventType) -> usize {
    EventType::ALL.iter().position(|x| *x == t).unwrap_or(0)
}

impl Stats {
    /// `topics`: every topic the publisher writes to.
    pub fn new<'a>(topics: impl IntoIterator<Item = &'a str>) -> Self {
        let by_topic = topics
            .into_iter()
            .map(|t| (t.to_owned(), AtomicU64::new(0)))
            .collect();
        let published_metric = [Source::Api, Source::Simulator].map(|s| {
            EventType::ALL.map(|t| {
                metrics::counter!("publisher_events_published_total",
                    "source" => s.as_str(), "event_type" => t.as_str())
            })
        });
        let failed_metric = [Source::Api, Source::Simulator]
            .map(|s| metrics::counter!("publisher_events_failed_total", "source" => s.as_str()));
        Self(Arc::new(Inner {
            started: Instant::now(),
            published: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            simulated: AtomicU64::new(0),
            by_type: std::array::from_fn(|_| AtomicU64::new(0)),
            by_topic,
            published_metric,
            failed_metric,
            samples: Mutex::new(VecDeque::new()),
        }))
    }

    /// An event (and its mirror, when it has one) was acknowledged.
    pub fn published(&self, source: Source, t: EventType, topic: &str, mirror: Option<&str>) {
        let i = type_index(t);
        self.0.published.fetch_add(1, Ordering::Relaxed);
        self.0.by_type[i].fetch_add(1, Ordering::Relaxed);
        for topic in std::iter::once(topic).chain(mirror) {
            if let Some(c) = self.0.by_topic.get(topic) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.0.published_metric[source as usize][i].increment(1);
    }

    /// An event was not acknowledged.
    pub fn failed(&self, source: Source) {
        self.0.failed.fetch_add(1, Ordering::Relaxed);
        self.0.failed_metric[source as usize].increment(1);
    }

    /// The simulator generated and queued an event.
    pub fn simulated(&self) {
        self.0.simulated.fetch_add(1, Ordering::Relaxed);
    }

    pub fn published_total(&self) -> u64 {
        self.0.published.load(Ordering::Relaxed)
    }

    pub fn failed_total(&self) -> u64 {
        self.0.failed.load(Ordering::Relaxed)
    }

    pub fn simulated_total(&self) -> u64 {
        self.0.simulated.load(Ordering::Relaxed)
    }

    pub fn uptime(&self) -> Duration {
        self.0.started.elapsed()
    }

    fn sample(&self) {
        let now = Instant::now();
        let total = self.published_total();
        if let Ok(mut s) = self.0.samples.lock() {
            s.push_back((now, total));
            while s
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
            {
                s.pop_front();
            }
        }
    }

    /// Acknowledged events per second over the last [`RATE_WINDOW`].
    pub fn rate(&self) -> f64 {
        let now = Instant::now();
        let total = self.published_total();
        let oldest = self.0.samples.lock().ok().and_then(|s| s.front().copied());
        let (since, base) = oldest.unwrap_or((self.0.started, 0));
        let secs = now.duration_since(since).as_secs_f64();
        if secs < 0.001 {
            return 0.0;
        }
        (total.saturating_sub(base)) as f64 / secs
    }

    /// Samples the published counter once a second until `cancel` fires.
    pub async fn run_sampler(self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => self.sample(),
            }
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            messages_published: self.published_total(),
            messages_failed: self.failed_total(),
            messages_simulated: self.simulated_total(),
            by_topic: self
                .0
                .by_topic
                .iter()
                .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
                .collect(),
            by_event_type: EventType::ALL
                .iter()
                .zip(&self.0.by_type)
                .map(|(t, c)| (t.as_str(), c.load(Ordering::Relaxed)))
                .collect(),
            messages_per_second: self.rate(),
            uptime: self.uptime().as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_type_and_topic() {
        let s = Stats::new(["odin.trades", "trade-info"]);
        s.published(
            Source::Api,
            EventType::TradeExecuted,
            "odin.trades",
            Some("trade-info"),
        );
        s.published(
            Source::Simulator,
            EventType::BuyCompleted,
            "odin.trades",
            None,
        );
        s.failed(Source::Api);
        let snap = s.snapshot();
        assert_eq!(snap.messages_published, 2);
        assert_eq!(snap.messages_failed, 1);
        assert_eq!(snap.by_topic["odin.trades"], 2);
        assert_eq!(snap.by_topic["trade-info"], 1);
        assert_eq!(snap.by_event_type["TRADE_EXECUTED"], 1);
        assert_eq!(snap.by_event_type["SELL_COMPLETED"], 0);
    }
}
