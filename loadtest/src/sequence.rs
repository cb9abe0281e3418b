//! Per-channel sequence tracking: tells for each received sequence number whether it is new
//! and in order, new but late (it fills a gap: reordering), or already seen (a duplicate),
//! and at the end which numbers never arrived. Memory is one counter plus the open gaps.

/// What one received sequence number was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next expected number, or a later one (the skipped ones become gaps).
    InOrder,
    /// A number skipped earlier that has now arrived: new, but out of order.
    Late,
    /// A number already received.
    Duplicate,
}

/// Sequence numbers of one channel as one client receives them; numbering starts at 0.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// Every number below this was either received or is in `gaps`.
    next: u64,
    /// Missing numbers below `next`, as disjoint half-open ranges in ascending order.
    gaps: Vec<(u64, u64)>,
}

impl SeqTracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn observe(&mut self, seq: u64) -> Seen {
        if seq == self.next {
            self.next += 1;
            return Seen::InOrder;
        }
        if seq > self.next {
            self.gaps.push((self.next, seq));
            self.next = seq + 1;
            return Seen::InOrder;
        }
        // Below `next`: late if it is in a gap, else a duplicate. Gaps are few (they exist only
        // while something is lost or reordered), so a binary search over them is cheap.
        let i = self.gaps.partition_point(|&(_, end)| end <= seq);
        match self.gaps.get(i).copied() {
            Some((start, end)) if start <= seq => {
                match (seq == start, seq + 1 == end) {
                    (true, true) => {
                        self.gaps.remove(i);
                    }
                    (true, false) => self.gaps[i].0 = seq + 1,
                    (false, true) => self.gaps[i].1 = seq,
                    (false, false) => {
                        self.gaps[i].1 = seq;
                        self.gaps.insert(i + 1, (seq + 1, end));
                    }
                }
                Seen::Late
            }
            _ => Seen::Duplicate,
        }
    }

    /// Numbers below `produced` never received: the open gaps plus the missing tail.
    pub fn missing(&self, produced: u64) -> u64 {
        let in_gaps: u64 = self
            .gaps
            .iter()
            .map(|&(s, e)| e.min(produced).saturating_sub(s))
            .sum();
        in_gaps + produced.saturating_sub(self.next)
    }

    /// Numbers received so far.
    pub fn received(&self) -> u64 {
        self.next - self.gaps.iter().map(|&(s, e)| e - s).sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_is_clean() {
        let mut t = SeqTracker::new();
        for s in 0..100 {
            assert_eq!(t.observe(s), Seen::InOrder);
        }
        assert_eq!(t.missing(100), 0);
        assert_eq!(t.received(), 100);
        assert_eq!(t.missing(103), 3, "the unreceived tail is missing");
    }

    #[test]
    fn duplicates_are_detected() {
        let mut t = SeqTracker::new();
        t.observe(0);
        t.observe(1);
        assert_eq!(t.observe(1), Seen::Duplicate);
        assert_eq!(t.observe(0), Seen::Duplicate);
        assert_eq!(t.received(), 2);
    }

    #[test]
    fn gaps_are_losses_until_filled() {
        let mut t = SeqTracker::new();
        for s in [0, 1, 5, 6, 9] {
            assert_eq!(t.observe(s), Seen::InOrder);
        }
        // Missing 2,3,4 and 7,8.
        assert_eq!(t.missing(10), 5);
        assert_eq!(t.observe(3), Seen::Late);
        assert_eq!(t.observe(3), Seen::Duplicate);
        assert_eq!(t.missing(10), 4);
        assert_eq!(t.observe(2), Seen::Late);
        assert_eq!(t.observe(4), Seen::Late);
        assert_eq!(t.observe(8), Seen::Late);
        assert_eq!(t.observe(7), Seen::Late);
        assert_eq!(t.missing(10), 0);
        assert_eq!(t.received(), 10);
        assert!(t.gaps.is_empty());
    }

    #[test]
    fn a_stream_that_starts_late_misses_its_head() {
        let mut t = SeqTracker::new();
        t.observe(5);
        assert_eq!(t.missing(6), 5);
    }

    #[test]
    fn missing_only_counts_below_produced() {
        let mut t = SeqTracker::new();
        t.observe(0);
        t.observe(10);
        // Gap 1..10; if only 5 were produced at that point only 1..5 count.
        assert_eq!(t.missing(5), 4);
    }

    #[test]
    fn random_permutations_with_duplicates_are_exact() {
        // A deterministic shuffle (LCG) of 0..n with some numbers dropped and some repeated.
        let n = 500u64;
        let mut order: Vec<u64> = (0..n).collect();
        let mut x = 12345u64;
        for i in (1..order.len()).rev() {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            order.swap(i, (x >> 33) as usize % (i + 1));
        }
        let dropped: Vec<u64> = order.iter().copied().filter(|s| s % 17 == 3).collect();
        let mut t = SeqTracker::new();
        let (mut dups, mut new) = (0, 0);
        for &s in &order {
            if s % 17 == 3 {
                continue;
            }
            match t.observe(s) {
                Seen::Duplicate => dups += 1,
                _ => new += 1,
            }
            if s % 29 == 0 {
                assert_eq!(t.observe(s), Seen::Duplicate);
            }
        }
        assert_eq!(dups, 0);
        assert_eq!(new, n - dropped.len() as u64);
        assert_eq!(t.missing(n), dropped.len() as u64);
        assert_eq!(t.received(), n - dropped.len() as u64);
    }
}
