//! Rate limits: a token bucket for client messages, and a shared pacer that slows Kafka
//! consumption to `WS_MAX_KAFKA_RATE` records/s instead of dropping records.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// A token bucket: `rate` per second, bursts up to `rate`. Rate 0 = unlimited.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Paces every consumer together: each batch reserves its share of time and waits for it.
#[derive(Debug)]
pub struct Pacer {
    per_record: Duration,
    next_free: Mutex<Instant>,
}

impl Pacer {
    /// `None` when `rate` is 0 (unlimited).
    pub fn new(rate: u64) -> Option<Self> {
        (rate > 0).then(|| Self {
            per_record: Duration::from_secs_f64(1.0 / rate as f64),
            next_free: Mutex::new(Instant::now()),
        })
    }

    /// How long the caller must wait before handling `n` records, reserving their slot.
    fn reserve(&self, n: usize, now: Instant) -> Duration {
        let Ok(mut next) = self.next_free.lock() else {
            return Duration::ZERO;
        };
        // No credit for idle time: the cap holds even right after a pause.
        let start = (*next).max(now);
        let wait = start.saturating_duration_since(now);
        *next = start + self.per_record * n as u32;
        wait
    }

    /// Waits until `n` more records may be handled; false when cancelled first.
    pub async fn acquire(&self, n: usize, cancel: &CancellationToken) -> bool {
        let wait = self.reserve(n, Instant::now());
        if wait.is_zero() {
            return true;
        }
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_refills() {
        let mut b = TokenBucket::new(3);
        let t0 = Instant::now();
        assert!(b.try_take_at(t0));
        assert!(b.try_take_at(t0));
        assert!(b.try_take_at(t0));
        assert!(!b.try_take_at(t0));
        assert!(b.try_take_at(t0 + Duration::from_millis(340)));
        assert!(!b.try_take_at(t0 + Duration::from_millis(340)));
        let mut unlimited = TokenBucket::new(0);
        assert!((0..1000).all(|_| unlimited.try_take_at(t0)));
    }

    #[test]
    fn pacer_spreads_records_over_time() {
        assert!(Pacer::new(0).is_none());
        let p = Pacer::new(100).unwrap();
        let now = Instant::now() + Duration::from_secs(2);
        assert_eq!(p.reserve(50, now), Duration::ZERO);
        // 50 records at 100/s occupy 500 ms: the next batch waits for them.
        let w = p.reserve(10, now);
        assert!(
            w >= Duration::from_millis(499) && w <= Duration::from_millis(501),
            "{w:?}"
        );
    }
}
