//! One shutdown path: a signal cancels a token; tasks wind down within a grace period.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Completes on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("SIGINT received, shutting down"),
        _ = term => info!("SIGTERM received, shutting down"),
    }
}

/// A cancellation token that fires when `trigger` completes; hand clones to every task.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// A token cancelled when `trigger` (e.g. [`signal`]) completes.
    pub fn on(trigger: impl Future<Output = ()> + Send + 'static) -> Self {
        let s = Self::new();
        let token = s.token.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = trigger => token.cancel(),
                _ = token.cancelled() => {}
            }
        });
        s
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    pub async fn wait(&self) {
        self.token.cancelled().await
    }
}

/// Runs `drain` for at most `grace`, warning when the grace period runs out.
pub async fn drain_within<F: Future>(grace: Duration, what: &str, drain: F) -> Option<F::Output> {
    match tokio::time::timeout(grace, drain).await {
        Ok(v) => Some(v),
        Err(_) => {
            warn!(
                ?grace,
                what, "grace period ran out before draining finished"
            );
            None
        }
    }
}
