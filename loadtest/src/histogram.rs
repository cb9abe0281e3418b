//! A lock-free latency histogram in microseconds: log-linear buckets (64 per power of two,
//! so every reported percentile is within 1.6 % of the true value), shared by every client
//! task through atomic counters, with exact count, sum and max.

use std::sync::atomic::{AtomicU64, Ordering};

/// Values below this are counted exactly, one bucket each.
const LINEAR: u64 = 64;
/// Sub-buckets per power of two above [`LINEAR`].
const SUB_BITS: u32 = 6;
/// Enough buckets for any `u64` value.
const BUCKETS: usize = LINEAR as usize + (64 - SUB_BITS as usize) * LINEAR as usize;

/// The bucket of `v`.
pub fn bucket_of(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // ≥ SUB_BITS
    let mantissa = v >> (exp - SUB_BITS); // in [64, 128)
    LINEAR as usize + (exp - SUB_BITS) as usize * LINEAR as usize + (mantissa - LINEAR) as usize
}

/// The highest value that falls in bucket `b`.
pub fn bucket_high(b: usize) -> u64 {
    if b < LINEAR as usize {
        return b as u64;
    }
    let rel = b - LINEAR as usize;
    let exp = (rel / LINEAR as usize) as u32 + SUB_BITS;
    let mantissa = (rel % LINEAR as usize) as u64 + LINEAR;
    let low = mantissa << (exp - SUB_BITS);
    low.saturating_add((1u64 << (exp - SUB_BITS)) - 1)
}

/// Latency histogram, recorded concurrently from many tasks.
#[derive(Debug)]
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    pub fn record(&self, micros: u64) {
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(micros, Ordering::Relaxed);
        self.max.fetch_max(micros, Ordering::Relaxed);
    }

    /// A copy of the current counts.
    pub fn snapshot(&self) -> Snapshot {
        self.read(|a| a.load(Ordering::Relaxed))
    }

    /// A copy of the current counts, resetting them: the live "last second" view.
    pub fn take(&self) -> Snapshot {
        self.read(|a| a.swap(0, Ordering::Relaxed))
    }

    fn read(&self, f: impl Fn(&AtomicU64) -> u64) -> Snapshot {
        let buckets: Vec<u64> = self.buckets.iter().map(&f).collect();
        Snapshot {
            count: buckets.iter().sum(),
            sum: f(&self.sum),
            max: f(&self.max),
            buckets,
        }
    }
}

/// A point-in-time copy of a [`Histogram`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    buckets: Vec<u64>,
    pub count: u64,
    pub sum: u64,
    pub max: u64,
}

impl Snapshot {
    /// The value at quantile `q` (0..=1), as the top of its bucket (never below the true
    /// value, at most 1.6 % above it) and never above the exact max; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_high(b).min(self.max);
            }
        }
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut prev_high = None;
        for b in 0..BUCKETS - 1 {
            let high = bucket_high(b);
            if let Some(p) = prev_high {
                assert_eq!(bucket_of(p + 1), b, "first value of bucket {b}");
            }
            assert_eq!(bucket_of(high), b, "last value of bucket {b}");
            prev_high = Some(high);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_high(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn relative_error_is_bounded() {
        for v in [
            64u64,
            100,
            999,
            1_000,
            12_345,
            1_000_000,
            60_000_000,
            1 << 40,
        ] {
            let high = bucket_high(bucket_of(v));
            assert!(high >= v);
            assert!((high - v) as f64 / v as f64 <= 1.0 / 64.0, "{v} → {high}");
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.max, 10_000);
        let close = |got: u64, want: u64| {
            assert!(
                got >= want && got as f64 <= want as f64 * 1.016,
                "{got} vs {want}"
            )
        };
        close(s.quantile(0.5), 5_000);
        close(s.quantile(0.9), 9_000);
        close(s.quantile(0.99), 9_900);
        close(s.quantile(0.999), 9_990);
        assert_eq!(s.quantile(1.0), 10_000);
        assert_eq!(s.quantile(0.0), 1);
        assert!((s.mean() - 5_000.5).abs() < 1e-9);
    }

    #[test]
    fn small_values_are_exact() {
        let h = Histogram::new();
        for v in [3, 3, 3, 7] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.quantile(0.5), 3);
        assert_eq!(s.quantile(0.75), 3);
        assert_eq!(s.quantile(0.76), 7);
    }

    #[test]
    fn take_resets_and_empty_reports_zero() {
        let h = Histogram::new();
        h.record(1_500);
        let first = h.take();
        assert_eq!(first.count, 1);
        assert_eq!(first.quantile(0.99), 1_500);
        let second = h.take();
        assert_eq!(second.count, 0);
        assert_eq!(second.quantile(0.99), 0);
        assert_eq!(second.max, 0);
    }

    #[test]
    fn concurrent_recording_counts_everything() {
        let h = std::sync::Arc::new(Histogram::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for v in 0..10_000u64 {
                        h.record(v * (t + 1));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = h.snapshot();
        assert_eq!(s.count, 40_000);
        assert_eq!(s.max, 9_999 * 4);
    }
}
