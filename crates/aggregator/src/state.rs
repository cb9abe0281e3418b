//! The state every task of one aggregator instance shares: settings, clock, windows,
//! producer and the counters `/stats` reports.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use odin_events::TokenAggregateData;
use tokio::sync::{Mutex as AsyncMutex, MutexGuard};
use tracing::error;

use odin_service::{FetchSettings, KafkaConnector, KafkaHealth, Producer};

use crate::clock::Clock;
use crate::config::Settings;
use crate::publish::Publisher;
use crate::window::Windows;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

impl Count {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Per-instance counts (the Prometheus counters are process-wide; these are this
/// instance's, which tests running several instances in one process need).
#[derive(Debug, Default)]
pub struct Counters {
    pub trades: Count,
    pub late: Count,
    pub replay_skipped: Count,
    pub invalid: Count,
    pub not_trades: Count,
    pub dlq_errors: Count,
    pub ticks: Count,
    pub ticks_skipped: Count,
    pub barrier_timeouts: Count,
}

/// Shared by the ingest tasks, the ticker and the HTTP handlers.
#[derive(Debug)]
pub struct Core {
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub connector: KafkaConnector,
    pub health: KafkaHealth,
    pub fetch: FetchSettings,
    /// Dead letters and aggregates; never shares a connection with a consumer.
    pub producer: Producer,
    pub publisher: Publisher,
    /// Clock time the service started; replay covers everything appended before it.
    pub start_ms: i64,
    /// The first scheduled tick; the window horizon starts one interval plus the largest
    /// window before it.
    pub first_end: i64,
    /// An async lock: a tick's snapshot can take a while (it runs on a blocking thread
    /// holding the lock) and ingest tasks must wait for it without blocking a runtime thread.
    windows: Arc<AsyncMutex<Windows>>,
    pub counters: Counters,
    pub replay_complete: AtomicBool,
    /// End of the last scheduled tick (0 before the first).
    pub last_tick: AtomicI64,
    pub partitions: Mutex<Vec<(String, i32)>>,
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Settings,
        clock: Arc<dyn Clock>,
        connector: KafkaConnector,
        health: KafkaHealth,
        fetch: FetchSettings,
        producer: Producer,
        publisher: Publisher,
        windows: Windows,
        start_ms: i64,
        first_end: i64,
    ) -> Self {
        Self {
            settings,
            clock,
            connector,
            health,
            fetch,
            producer,
            publisher,
            start_ms,
            first_end,
            windows: Arc::new(AsyncMutex::new(windows)),
            counters: Counters::default(),
            replay_complete: AtomicBool::new(false),
            last_tick: AtomicI64::new(0),
            partitions: Mutex::new(Vec::new()),
        }
    }

    /// The window state, for short in-memory work.
    pub async fn windows(&self) -> MutexGuard<'_, Windows> {
        self.windows.lock().await
    }

    /// The aggregates at `end` (of `only` those tokens), computed on a blocking thread;
    /// with `advance`, the horizon then moves to `end − largest window` (scheduled ticks).
    /// Also returns how many tokens the state holds.
    pub async fn snapshot(
        &self,
        end: i64,
        only: Option<Vec<String>>,
        advance: bool,
        generated_at: String,
    ) -> (Vec<TokenAggregateData>, usize) {
        let mut guard = Arc::clone(&self.windows).lock_owned().await;
        let job = tokio::task::spawn_blocking(move || {
            let data = guard.snapshot(end, only.as_deref(), &generated_at);
            if advance {
                let largest = guard.largest();
                guard.set_horizon(end - largest);
            }
            (data, guard.token_count())
        });
        match job.await {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, end, "snapshot failed");
                (Vec::new(), 0)
            }
        }
    }

    /// Where a starting instance reads its input from (epoch ms, by record timestamp): the
    /// first tick's horizon — nothing older can count in any window — less the allowed
    /// lateness of record timestamps.
    pub fn replay_from_ms(&self) -> i64 {
        self.first_end
            - self.settings.interval_ms
            - self.settings.largest_window_ms()
            - self.settings.allowed_lateness_ms
    }

    pub fn is_replay_complete(&self) -> bool {
        self.replay_complete.load(Ordering::Acquire)
    }

    pub fn assigned(&self) -> Vec<(String, i32)> {
        self.partitions
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }
}
