//! The simulator's runner: start/stop/rate control and a pacer that emits small batches on
//! a short tick so the produced rate follows the requested one from 1 to tens of
//! thousands of events a second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::generator::Generator;
use crate::publish::{Pending, Sink};
use crate::stats::{Source, Stats};

/// How often the pacer wakes; each wake emits what the elapsed time earned.
pub const TICK: Duration = Duration::from_millis(5);
/// The most a stalled pacer catches up on; beyond that the events are not made up for,
/// so a long stall does not become a burst.
const MAX_BACKLOG: Duration = Duration::from_millis(500);
/// Queued-but-unacknowledged simulated events. Full ⇒ the pacer waits, so a slow broker
/// lowers the real rate (visible in `/stats`) instead of growing memory.
const IN_FLIGHT: usize = 65_536;

/// A token bucket: how many events are due at each tick.
#[derive(Debug, Clone)]
pub struct Pacer {
    credit: f64,
    last: Instant,
}

impl Pacer {
    pub fn new(now: Instant) -> Self {
        // Start with one event due, so a start is visible at once even at 1 event/s.
        Self {
            credit: 1.0,
            last: now,
        }
    }

    /// Events due at `now` at `rate` per second.
    pub fn due(&mut self, now: Instant, rate: f64) -> u64 {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let cap = (rate * MAX_BACKLOG.as_secs_f64()).max(1.0);
        self.credit = (self.credit + rate * dt).min(cap);
        let n = self.credit.floor();
        self.credit -= n;
        n as u64
    }
}

/// What the simulator is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub rate: f64,
    pub tokens: Vec<String>,
}

/// The body of `GET /status` (simulator part).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimStatus {
    pub is_running: bool,
    pub current_rate: f64,
    pub token_ids: Vec<String>,
}

#[derive(Debug)]
struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Inner {
    sink: Sink,
    stats: Stats,
    params: watch::Sender<Params>,
    running: Mutex<Option<Running>>,
    /// Mirrors `running` so `/status` never waits behind a `/stop` that is draining.
    is_running: AtomicBool,
    shutdown: CancellationToken,
}

/// The simulator; cheap to clone.
#[derive(Debug, Clone)]
pub struct Simulator(Arc<Inner>);

impl Simulator {
    pub fn new(sink: Sink, stats: Stats, initial: Params, shutdown: CancellationToken) -> Self {
        let (params, _) = watch::channel(initial);
        Self(Arc::new(Inner {
            sink,
            stats,
            params,
            running: Mutex::new(None),
            is_running: AtomicBool::new(false),
            shutdown,
        }))
    }

    /// Starts the simulator, or retargets it when it runs.
    pub async fn start(&self, params: Params) {
        let mut running = self.0.running.lock().await;
        self.0.params.send_replace(params.clone());
        metrics::gauge!("publisher_simulator_rate").set(params.rate);
        if running.as_ref().is_some_and(|r| !r.task.is_finished()) {
            info!(rate = params.rate, tokens = ?params.tokens, "simulator retargeted");
            return;
        }
        let cancel = self.0.shutdown.child_token();
        let task = tokio::spawn(run(
            self.0.sink.clone(),
            self.0.stats.clone(),
            self.0.params.subscribe(),
            cancel.clone(),
        ));
        *running = Some(Running { cancel, task });
        self.0.is_running.store(true, Ordering::Release);
        metrics::gauge!("publisher_simulator_running").set(1.0);
        info!(rate = params.rate, tokens = ?params.tokens, "simulator started");
    }

    /// Changes the rate, running or not.
    pub fn set_rate(&self, rate: f64) {
        self.0.params.send_modify(|p| p.rate = rate);
        metrics::gauge!("publisher_simulator_rate").set(rate);
    }

    /// Stops the simulator and waits until what it queued is settled; returns whether it
    /// was running.
    pub async fn stop(&self) -> bool {
        let mut running = self.0.running.lock().await;
        let Some(r) = running.take() else {
            return false;
        };
        r.cancel.cancel();
        self.0.is_running.store(false, Ordering::Release);
        let _ = r.task.await;
        metrics::gauge!("publisher_simulator_running").set(0.0);
        info!("simulator stopped");
        true
    }

    pub async fn status(&self) -> SimStatus {
        let p = self.0.params.borrow().clone();
        SimStatus {
            is_running: self.0.is_running.load(Ordering::Acquire),
            current_rate: p.rate,
            token_ids: p.tokens,
        }
    }
}

async fn run(
    sink: Sink,
    stats: Stats,
    mut params: watch::Receiver<Params>,
    cancel: CancellationToken,
) {
    let (tx, mut rx) = mpsc::channel::<Pending>(IN_FLIGHT);
    let settle_stats = stats.clone();
    let settler = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            let _ = p.settle(&settle_stats, Source::Simulator).await;
        }
    });

    let mut gen = Generator::from_entropy(&params.borrow_and_update().tokens);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pacer = Pacer::new(Instant::now());
    let mut failures: u64 = 0;
    'outer: loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if params.has_changed().unwrap_or(false) {
            gen.set_tokens(&params.borrow_and_update().tokens);
        }
        let rate = params.borrow().rate;
        let due = pacer.due(Instant::now(), rate);
        for _ in 0..due {
            if cancel.is_cancelled() {
                break 'outer;
            }
            let ready = match gen.next_event().into_ready() {
                Ok(r) => r,
                Err(reason) => {
                    // The generator only makes mappable trades; count it if that ever breaks.
                    stats.failed(Source::Simulator);
                    warn!(%reason, "simulated event refused");
                    continue;
                }
            };
            stats.simulated();
            let pending = tokio::select! {
                _ = cancel.cancelled() => break 'outer,
                p = sink.enqueue(ready) => p,
            };
            match pending {
                Ok(p) => {
                    // Full ⇒ wait (see IN_FLIGHT).
                    if tx.send(p).await.is_err() {
                        break 'outer;
                    }
                }
                Err(e) => {
                    stats.failed(Source::Simulator);
                    if failures % 10_000 == 0 {
                        warn!(error = %e, failures, "simulated event not queued");
                    }
                    failures += 1;
                }
            }
        }
    }
    drop(tx);
    // Everything queued is settled by the producer (acknowledged or failed) within its
    // bounded retries; wait for that so `/stop` answers with final counters.
    if odin_service::shutdown::drain_within(Duration::from_secs(30), "simulator acks", settler)
        .await
        .is_none()
    {
        warn!("simulator stopped before all acknowledgements arrived");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_emits_the_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        let mut total = p.due(t0, 1000.0);
        assert_eq!(total, 1);
        // 10 s of 5 ms ticks at 1,000/s.
        for i in 1..=2_000u64 {
            total += p.due(t0 + TICK * i as u32, 1000.0);
        }
        assert!((10_000..=10_001).contains(&total), "{total}");
    }

    #[test]
    fn pacer_handles_slow_rates_and_stalls() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        let mut total = 0;
        for i in 0..=2_000u32 {
            total += p.due(t0 + TICK * i, 1.0);
        }
        assert!((10..=11).contains(&total), "{total}");
        // A 5 s stall at 100/s catches up at most MAX_BACKLOG worth.
        let t1 = t0 + TICK * 2_000;
        let mut p = Pacer::new(t1);
        p.due(t1, 100.0);
        let n = p.due(t1 + Duration::from_secs(5), 100.0);
        assert_eq!(n, 50);
        // A late tick is made up for.
        let mut p = Pacer::new(t1);
        p.due(t1, 50_000.0);
        assert_eq!(p.due(t1 + Duration::from_millis(20), 50_000.0), 1_000);
    }
}
