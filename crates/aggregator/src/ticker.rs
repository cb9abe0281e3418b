//! Scheduled ticks: at every multiple of the publish interval, wait until every owned
//! partition has been read up to that moment (the barrier), snapshot the windows, raise
//! the horizon and publish.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ingest::Progress;
use crate::publish::Published;
use crate::state::Core;
use crate::window::rfc3339;

/// The first multiple of `interval` strictly after `now`.
pub fn align_up(now: i64, interval: i64) -> i64 {
    (now.div_euclid(interval) + 1) * interval
}

/// The last multiple of `interval` at or before `now`.
pub fn align_down(now: i64, interval: i64) -> i64 {
    now.div_euclid(interval) * interval
}

/// Waits until every partition has applied a fetch issued at or after `end` and was then
/// caught up. A partition whose task is gone no longer holds the barrier.
pub async fn barrier(progress: &mut [watch::Receiver<Progress>], end: i64) {
    for rx in progress.iter_mut() {
        let _ = rx.wait_for(|p| p.covers(end)).await;
    }
}

/// Snapshot at `end`, raise the horizon to `end − largest window` (no later scheduled tick
/// can use older trades) and publish.
pub async fn tick(core: &Core, end: i64) -> Published {
    let generated_at = rfc3339(chrono::Utc::now().timestamp_millis());
    let (data, tokens_held) = core.snapshot(end, None, true, generated_at).await;
    metrics::gauge!("aggregator_active_tokens").set(data.len() as f64);
    metrics::gauge!("aggregator_tokens_held").set(tokens_held as f64);
    let n = data.len();
    let out = core.publisher.publish(data, end).await;
    core.last_tick.store(end, Ordering::Release);
    core.counters.ticks.add(1);
    metrics::counter!("aggregator_ticks_total").increment(1);
    info!(end = %rfc3339(end), tokens = n, failed = out.failed.len(), "tick published");
    out
}

/// Runs scheduled ticks from `core.first_end` until `cancel`.
pub async fn run(
    core: Arc<Core>,
    mut progress: Vec<watch::Receiver<Progress>>,
    cancel: CancellationToken,
) {
    let interval = core.settings.interval_ms;
    // One interval, and at least two broker round trips: a tick waits that long for a
    // lagging partition, then publishes what it has (and says so).
    let barrier_wait = Duration::from_millis(u64::try_from(interval).unwrap_or(1_000)).max(
        2 * (core.fetch.request_timeout
            + Duration::from_millis(u64::try_from(core.fetch.max_wait_ms).unwrap_or(0))),
    );

    // Replay first: the first tick must see everything that was in the log at start.
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = barrier(&mut progress, core.start_ms) => {}
    }
    core.replay_complete.store(true, Ordering::Release);
    metrics::gauge!("aggregator_replay_complete").set(1.0);
    info!(
        trades = core.counters.trades.get(),
        skipped = core.counters.replay_skipped.get(),
        "replay complete"
    );

    let mut next = core.first_end;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = core.clock.sleep_until(next) => {}
        }
        let due = align_down(core.clock.now_ms(), interval);
        if due > next {
            let skipped = u64::try_from((due - next) / interval).unwrap_or(0);
            warn!(from = %rfc3339(next), to = %rfc3339(due), skipped, "fell behind, skipping ticks");
            core.counters.ticks_skipped.add(skipped);
            metrics::counter!("aggregator_ticks_skipped_total").increment(skipped);
            next = due;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(barrier_wait, barrier(&mut progress, next)) => {
                if r.is_err() {
                    warn!(end = %rfc3339(next), ?barrier_wait, "input not read up to the tick in time; publishing what is there");
                    core.counters.barrier_timeouts.add(1);
                    metrics::counter!("aggregator_tick_barrier_timeouts_total").increment(1);
                }
            }
        }
        // Publishing is not cancelled midway: a tick is written whole or reported failed.
        tick(&core, next).await;
        next += interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment() {
        assert_eq!(align_up(0, 30_000), 30_000);
        assert_eq!(align_up(29_999, 30_000), 30_000);
        assert_eq!(align_up(30_000, 30_000), 60_000);
        assert_eq!(align_down(59_999, 30_000), 30_000);
        assert_eq!(align_down(-1, 1_000), -1_000);
    }

    #[tokio::test]
    async fn barrier_waits_for_a_covering_fetch() {
        let (tx, rx) = watch::channel(Progress::default());
        let mut rxs = vec![rx];
        let waiter = tokio::spawn(async move { barrier(&mut rxs, 100).await });
        tx.send_replace(Progress {
            fetch_started_ms: 100,
            caught_up: false,
        });
        tx.send_replace(Progress {
            fetch_started_ms: 99,
            caught_up: true,
        });
        assert!(!waiter.is_finished());
        tx.send_replace(Progress {
            fetch_started_ms: 101,
            caught_up: true,
        });
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
