//! The service's notion of "now": the wall clock in production, a manual clock in tests so
//! ticks happen exactly when a test says.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

/// A source of epoch milliseconds that can be waited on.
pub trait Clock: Send + Sync + Debug + 'static {
    fn now_ms(&self) -> i64;
    /// Completes once `now_ms() >= at_ms`.
    fn sleep_until(&self, at_ms: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    fn sleep_until(&self, at_ms: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // Re-check after waking: timers may fire early relative to the wall clock.
            loop {
                let now = self.now_ms();
                if now >= at_ms {
                    return;
                }
                let wait = u64::try_from(at_ms - now).unwrap_or(0).min(60_000);
                tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
            }
        })
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<i64>,
}

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        Self {
            now: watch::Sender::new(start_ms),
        }
    }

    pub fn set(&self, ms: i64) {
        self.now.send_replace(ms);
    }

    pub fn advance(&self, ms: i64) {
        self.now.send_modify(|t| *t += ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, at_ms: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, so this only ends when the time comes.
            let _ = rx.wait_for(|t| *t >= at_ms).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers() {
        let c = std::sync::Arc::new(ManualClock::new(10));
        let c2 = std::sync::Arc::clone(&c);
        let waiter = tokio::spawn(async move { c2.sleep_until(20).await });
        c.advance(5);
        assert!(!waiter.is_finished());
        c.set(20);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.now_ms(), 20);
    }
}
