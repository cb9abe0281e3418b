//! Counters every task of a run updates without locks, and the once-per-second progress line.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::histogram::Histogram;

/// Why a client never got subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// TCP connect failed (refused, no ports left, too many open files).
    Connect,
    /// The upgrade was answered with 503 (the gateway's connection cap).
    Rejected503,
    /// The upgrade was answered with 401/403 (authentication, origin).
    Unauthorized,
    /// Any other upgrade failure.
    Handshake,
    /// No subscription confirmation within the connect timeout.
    Timeout,
    /// The subscribe was answered with an error frame.
    ErrorFrame,
    /// The connection closed before the subscription was confirmed.
    Closed,
    /// The run ended (or was interrupted) before the client got going.
    Cancelled,
}

impl Failure {
    pub const ALL: [Failure; 8] = [
        Failure::Connect,
        Failure::Rejected503,
        Failure::Unauthorized,
        Failure::Handshake,
        Failure::Timeout,
        Failure::ErrorFrame,
        Failure::Closed,
        Failure::Cancelled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Rejected503 => "rejected_503",
            Failure::Unauthorized => "unauthorized",
            Failure::Handshake => "handshake",
            Failure::Timeout => "timeout",
            Failure::ErrorFrame => "error_frame",
            Failure::Closed => "closed",
            Failure::Cancelled => "cancelled",
        }
    }
}

/// Phases of a run, for the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Ramp = 0,
    Warmup = 1,
    Measure = 2,
    Drain = 3,
    Done = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Phase::Ramp,
            1 => Phase::Warmup,
            2 => Phase::Measure,
            3 => Phase::Drain,
            _ => Phase::Done,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Ramp => "ramp",
            Phase::Warmup => "warmup",
            Phase::Measure => "measure",
            Phase::Drain => "drain",
            Phase::Done => "done",
        }
    }
}

/// Shared counters of one run.
#[derive(Debug, Default)]
pub struct Stats {
    phase: AtomicU8,
    /// Connections that completed the WebSocket upgrade.
    pub upgraded: AtomicU64,
    /// Clients whose subscription the gateway confirmed.
    pub subscribed: AtomicU64,
    /// Confirmed clients whose connection ended before the run did.
    pub disconnected: AtomicU64,
    failures: [AtomicU64; Failure::ALL.len()],
    /// Confirmations whose channel list differs from the plan's.
    pub subscription_mismatch: AtomicU64,

    /// Event frames received, any phase.
    pub events: AtomicU64,
    /// Event frames of measured events, first receipt per client and channel.
    pub measured_received: AtomicU64,
    pub duplicates: AtomicU64,
    /// Received after a later sequence number of the same channel.
    pub out_of_order: AtomicU64,
    /// Events on a channel the client did not subscribe to.
    pub unexpected: AtomicU64,
    /// Frames that are not JSON of the protocol.
    pub bad_frames: AtomicU64,
    /// Error frames after subscribing.
    pub error_frames: AtomicU64,

    /// Events the broker acknowledged.
    pub produced: AtomicU64,
    /// Acknowledged events of the measured window.
    pub produced_measured: AtomicU64,
    /// Events the broker did not acknowledge (not expected anywhere).
    pub produce_failed: AtomicU64,
    /// Sum over acknowledged measured events of their channel's subscribers at send time.
    pub expected: AtomicU64,

    /// Produce → receive latency of measured events, µs.
    pub latency: Histogram,
    /// Latency of every event received since the last progress line.
    pub live: Histogram,
}

impl Stats {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fail(&self, why: Failure) {
        self.failures[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn failures(&self) -> Vec<(Failure, u64)> {
        Failure::ALL
            .into_iter()
            .map(|f| (f, self.failures[f as usize].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub fn failed(&self) -> u64 {
        self.failures
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    pub fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// Prints one progress line to stderr every second until `cancel` fires.
pub async fn progress(
    stats: std::sync::Arc<Stats>,
    target: usize,
    started: Instant,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let (mut last_events, mut last_produced) = (0u64, 0u64);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let dt = last.elapsed().as_secs_f64().max(1e-3);
        last = Instant::now();
        let events = Stats::get(&stats.events);
        let produced = Stats::get(&stats.produced) + Stats::get(&stats.produce_failed);
        let live = stats.live.take();
        let subscribed = Stats::get(&stats.subscribed);
        let disconnected = Stats::get(&stats.disconnected);
        eprintln!(
            "[{:>5.0}s {:<7}] conns {}/{} up, {} failed, {} dropped | produced {:.0}/s | deliveries {:.0}/s | p50 {} p99 {} (last 1s) | outstanding {}",
            started.elapsed().as_secs_f64(),
            stats.phase().as_str(),
            subscribed - disconnected.min(subscribed),
            target,
            stats.failed(),
            disconnected,
            (produced - last_produced) as f64 / dt,
            (events - last_events) as f64 / dt,
            fmt_us(live.quantile(0.5)),
            fmt_us(live.quantile(0.99)),
            Stats::get(&stats.expected).saturating_sub(Stats::get(&stats.measured_received)),
        );
        last_events = events;
        last_produced = produced;
    }
}

/// Microseconds for people: `850µs`, `3.2ms`, `1.25s`.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_reason() {
        let s = Stats::new();
        s.fail(Failure::Rejected503);
        s.fail(Failure::Rejected503);
        s.fail(Failure::Timeout);
        assert_eq!(s.failed(), 3);
        assert_eq!(
            s.failures(),
            vec![(Failure::Rejected503, 2), (Failure::Timeout, 1)]
        );
    }

    #[test]
    fn phases_round_trip() {
        let s = Stats::new();
        assert_eq!(s.phase(), Phase::Ramp);
        for p in [Phase::Warmup, Phase::Measure, Phase::Drain, Phase::Done] {
            s.set_phase(p);
            assert_eq!(s.phase(), p);
        }
    }

    #[test]
    fn microsecond_formatting() {
        assert_eq!(fmt_us(850), "850µs");
        assert_eq!(fmt_us(3_200), "3.2ms");
        assert_eq!(fmt_us(1_250_000), "1.25s");
    }
}
