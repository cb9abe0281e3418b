//! Odin WebSocket gateway: consumes every partition of every event topic and fans each
//! record out, serialised once, to the WebSocket clients subscribed to its channel.
//!
//! # Layout
//! - [`config`]: the one clap configuration (`WS_*`, `KAFKA_*`, `TOPIC_*`, `LOG_*`).
//! - [`consumer`]: one partition consumer per partition, each on its own Kafka connection;
//!   metadata refresh; record → event frame; dead letters.
//! - [`fanout`]: the channel registry and the lock-per-record, allocation-free fan-out.
//! - [`protocol`]: client and server frames, error codes, the shared event frame.
//! - [`session`]: one connection: reading, rate limiting, batched writing, keepalive, closing.
//! - [`console`]: the live console page (embedded assets on a browser `GET /`) and `/stats`.
//! - [`http`]: accept loop, `/health`, `/metrics`, connection cap, hand-rolled upgrade.
//! - [`limit`]: token bucket (client messages) and pacer (`WS_MAX_KAFKA_RATE`).
//! - [`metrics`]: metric names and pre-resolved handles.
//! - [`auth`]: JWT validation (HS256/RS256/ES256), token extraction, per-connection identity
//!   and its expiry clock.
//! - [`origin`]: the `Origin` allow-list checked before the upgrade.
//! - [`policy`]: who may receive a record (public / private to a user / internal).
//! - [`recovery`]: replay of a channel from Kafka offsets and its seamless join to live delivery.

pub mod auth;
pub mod config;
pub mod console;
pub mod consumer;
pub mod fanout;
pub mod http;
pub mod limit;
pub mod metrics;
pub mod origin;
pub mod policy;
pub mod protocol;
pub mod recovery;
pub mod session;

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;

use odin_service::shutdown::drain_within;
use odin_service::{FetchSettings, KafkaConnector, KafkaHealth, Producer, ProducerConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use config::{Config, ConfigError, SlowClientPolicy, StartPosition};

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Auth(#[from] auth::AuthConfigError),
}

/// Runs the gateway on `listener` until `shutdown` completes, then closes every client with
/// 1001, stops consuming and drains within `WS_SHUTDOWN_GRACE`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    config.validate()?;
    // The recorder must exist before any metric handle is resolved.
    let _ = odin_service::telemetry::prometheus();
    metrics::describe();
    warn_about_file_limit(config.max_connections);

    let verifier = auth::Verifier::from_args(&config.auth)?;
    let origins = origin::OriginPolicy::parse(&config.auth.allowed_origins)
        .map_err(|e| ConfigError(e.to_string()))?;
    if !verifier.is_configured() {
        warn!("no WS_JWT_SECRET or WS_JWT_PUBLIC_KEY_FILE: every client is anonymous and no private (confidential/restricted) event is delivered");
    }
    let connector = KafkaConnector::new(&config.kafka);
    let recoverer = Arc::new(recovery::Recoverer::new(
        connector.clone(),
        config.topics.names(),
        &config.recovery,
    ));
    let health = KafkaHealth::new(metrics::KAFKA_CONNECTED);
    let registry = Arc::new(fanout::Registry::new(
        config.slow_client,
        config.slow_client_timeout,
    ));
    let state = Arc::new(consumer::KafkaState::default());
    let dead_letters = config.dlq.then(|| {
        Producer::new(
            connector.clone(),
            ProducerConfig::default(),
            KafkaHealth::new(metrics::DLQ_KAFKA_CONNECTED),
        )
    });
    let stop_consumers = CancellationToken::new();
    let fetch = FetchSettings {
        // Polling asks for an immediate answer and paces itself.
        max_wait_ms: if config.fetch_poll_ms > 0 {
            0
        } else {
            config.fetch_max_wait_ms
        },
        max_bytes: config.fetch_max_bytes,
        request_timeout: connector.request_timeout(),
    };
    let mux = (config.fetch_mode == config::FetchMode::Multi).then(|| {
        odin_service::FetchMux::spawn(
            connector.brokers().to_vec(),
            fetch,
            config.fetch_connections,
            stop_consumers.clone(),
        )
    });
    let consumption = Arc::new(consumer::Consumption {
        connector: connector.clone(),
        names: config.topics.names(),
        start: config.start_from.into(),
        fetch,
        mux,
        shared_client: tokio::sync::OnceCell::new(),
        poll_interval: (config.fetch_poll_ms > 0)
            .then(|| std::time::Duration::from_millis(config.fetch_poll_ms)),
        metadata_refresh: config.metadata_refresh,
        registry: Arc::clone(&registry),
        health: health.clone(),
        state: Arc::clone(&state),
        pacer: limit::Pacer::new(config.max_kafka_rate),
        dead_letters: dead_letters.clone(),
        dead_letter_slots: consumer::Consumption::dead_letter_slots(),
        auth_enabled: verifier.is_configured(),
    });

    let stop_sessions = CancellationToken::new();
    let consumers = TaskTracker::new();
    consumers.spawn(consumer::supervise(
        consumption,
        consumers.clone(),
        stop_consumers.clone(),
    ));

    let shared = Arc::new(http::Listener {
        session: session::SessionConfig {
            client_queue: config.client_queue,
            max_channels: config.max_channels_per_conn,
            msgs_per_sec: config.max_client_msgs_per_sec,
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
            slow_client: config.slow_client,
            slow_client_timeout: config.slow_client_timeout,
            verifier,
            recoverer,
        },
        origins,
        ws_config: http::ws_config(config.max_frame_bytes),
        max_connections: config.max_connections,
        handshake_timeout: config.handshake_timeout,
        registry,
        health,
        kafka: state,
        open: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        shutdown: stop_sessions.clone(),
    });
    info!(addr = ?listener.local_addr().ok(), topics = ?config.topics.names().event_topics(), "gateway started");

    let sessions = TaskTracker::new();
    let trigger = stop_sessions.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown => trigger.cancel(),
            _ = trigger.cancelled() => {}
        }
    });
    // Returns once shutdown fires; the listener is dropped here: no new connections.
    http::accept_loop(listener, shared, sessions.clone()).await;
    info!("shutting down: closing clients with 1001");
    sessions.close();
    stop_consumers.cancel();
    consumers.close();
    let grace = config.shutdown_grace;
    drain_within(grace, "closing client connections", sessions.wait()).await;
    drain_within(grace, "stopping consumers", consumers.wait()).await;
    if let Some(p) = dead_letters {
        drain_within(grace, "writing dead letters", p.flush()).await;
    }
    info!("gateway stopped");
    Ok(())
}

/// Each connection holds a file descriptor; warn when the cap cannot be reached.
fn warn_about_file_limit(max_connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    // Kafka connections (one per partition), the listener, logs: keep some headroom.
    if let Some(soft) = soft {
        if max_connections + 256 > soft {
            warn!(
                max_connections,
                open_files_limit = soft,
                "WS_MAX_CONNECTIONS is close to the open-files limit; accepts will fail (EMFILE) before the cap"
            );
        }
    }
}
