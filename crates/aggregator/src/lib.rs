//! The Odin Stream aggregator: trades in, per-token rolling-window aggregates out.
//!
//! # Layout
//! - [`config`]: the one clap config (`KAFKA_TOPIC`, `AGGREGATE_WINDOWS`, …) and its validation.
//! - [`window`]: pure per-token bucketed windows with the exact rule `end − W < t ≤ end`.
//! - [`ingest`]: partition assignment, record → trade or dead letter, one task per partition.
//! - [`ticker`]: aligned ticks behind a read barrier; snapshot, expire, publish.
//! - [`publish`]: aggregate records (key, headers) and producer statistics.
//! - [`http`]: `/health`, `/stats`, `/metrics`, `POST /publish`.
//! - [`clock`]: wall clock, or a manual one for tests.
//! - [`state`]: what the tasks share.
//!
//! See `docs/aggregator.md` for the window semantics and the restart rules.

pub mod clock;
pub mod config;
pub mod http;
pub mod ingest;
pub mod publish;
pub mod state;
pub mod ticker;
pub mod window;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use odin_events::topics::{
    dlq_topic, AGGREGATE_INFO_RETENTION_MS, DEFAULT_PARTITIONS, DLQ_PARTITIONS, DLQ_RETENTION_MS,
    TRADE_INFO_RETENTION_MS,
};
use odin_events::TopicSpec;
use odin_service::kafka::partition_counts;
use odin_service::shutdown::drain_within;
use odin_service::{
    FetchSettings, KafkaConnector, KafkaError, KafkaHealth, Producer, ProducerConfig, Shutdown,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, ConfigError, Settings};

use crate::ingest::{assign, Progress};
use crate::publish::Publisher;
use crate::state::Core;
use crate::window::Windows;

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AggregatorError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("topics {topics:?} do not exist (AGGREGATOR_CREATE_TOPICS=false)")]
    MissingTopics { topics: Vec<String> },
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the service on `listener` with the wall clock until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AggregatorError> {
    let s = Shutdown::on(shutdown);
    run_with(config, listener, s.token(), Arc::new(SystemClock)).await
}

/// Runs the service with a given clock until `cancel` fires (tests use a manual clock).
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    cancel: CancellationToken,
    clock: Arc<dyn Clock>,
) -> Result<(), AggregatorError> {
    let settings = config.validate()?;
    // Install the recorder before the first counter moves, not at the first scrape.
    let _ = odin_service::telemetry::prometheus();
    let connector = KafkaConnector::new(&config.kafka);
    let health = KafkaHealth::new("aggregator_kafka_connected");
    let producer = Producer::new(
        connector.clone(),
        ProducerConfig {
            linger: config.batch_linger,
            max_batch_records: config.batch_size,
            compression: config.compression,
            ..ProducerConfig::default()
        },
        health.clone(),
    );
    let fetch = FetchSettings {
        max_wait_ms: config.fetch_max_wait_ms,
        request_timeout: config.kafka.kafka_request_timeout,
        ..FetchSettings::default()
    };
    let start_ms = clock.now_ms();
    let interval = settings.interval_ms;
    let first_end = ticker::align_up(start_ms, interval);
    // Replay keeps the trades the first tick's largest window can use, plus one interval
    // (the rule a running instance applies after its previous tick): see docs/aggregator.md.
    let horizon = first_end - interval - settings.largest_window_ms();
    let windows = Windows::new(settings.windows.clone(), settings.granularity_ms, horizon);
    let publisher = Publisher::new(producer.clone(), settings.aggregate_topic.clone());
    let core = Arc::new(Core::new(
        settings,
        clock,
        connector,
        health,
        fetch,
        producer.clone(),
        publisher,
        windows,
        start_ms,
        first_end,
    ));
    info!(
        addr = ?listener.local_addr().ok(),
        inputs = ?core.settings.input_topics,
        output = %core.settings.aggregate_topic,
        interval_ms = interval,
        instance = core.settings.instance_index,
        of = core.settings.instance_count,
        "aggregator starting"
    );

    let http_cancel = cancel.clone();
    let server = tokio::spawn(odin_service::http::serve(
        listener,
        http::app(Arc::clone(&core)),
        http_cancel,
    ));

    let mut tasks = Vec::new();
    match start_pipeline(&core, config.create_topics, &cancel).await {
        Ok(spawned) => tasks = spawned,
        Err(AggregatorError::Kafka(KafkaError::Shutdown)) => {}
        Err(e) => {
            cancel.cancel();
            let _ = server.await;
            return Err(e);
        }
    }

    cancel.cancelled().await;
    info!("aggregator shutting down");
    for t in tasks {
        let _ = t.await;
    }
    drain_within(
        config.shutdown_grace,
        "aggregate producer flush",
        producer.flush(),
    )
    .await;
    match server.await {
        Ok(r) => r?,
        Err(e) => warn!(error = %e, "http task ended abnormally"),
    }
    Ok(())
}

/// Checks (or creates) the topics, then starts one ingest task per owned partition and the
/// ticker.
async fn start_pipeline(
    core: &Arc<Core>,
    create: bool,
    cancel: &CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>, AggregatorError> {
    let admin = core
        .connector
        .client_with_retry(&core.health, cancel)
        .await?;
    let s = &core.settings;
    let mut specs: Vec<TopicSpec> = Vec::new();
    for t in &s.input_topics {
        specs.push(TopicSpec {
            name: t.clone(),
            partitions: DEFAULT_PARTITIONS,
            retention_ms: TRADE_INFO_RETENTION_MS,
        });
        specs.push(TopicSpec {
            name: dlq_topic(t),
            partitions: DLQ_PARTITIONS,
            retention_ms: DLQ_RETENTION_MS,
        });
    }
    specs.push(TopicSpec {
        name: s.aggregate_topic.clone(),
        partitions: DEFAULT_PARTITIONS,
        retention_ms: AGGREGATE_INFO_RETENTION_MS,
    });
    let counts = loop {
        let attempt = async {
            if create {
                odin_service::topics::ensure_topics(
                    &core.connector,
                    &specs,
                    odin_service::topics::Placement::default(),
                )
                .await?;
            }
            partition_counts(&admin).await
        };
        tokio::select! {
            _ = cancel.cancelled() => return Err(KafkaError::Shutdown.into()),
            r = attempt => match r {
                Ok(c) => break c,
                Err(e) => {
                    warn!(error = %e, "cannot list or create topics; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    };
    let missing: Vec<String> = specs
        .iter()
        .filter(|sp| !counts.contains_key(&sp.name))
        .map(|sp| sp.name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(AggregatorError::MissingTopics { topics: missing });
    }
    let inputs: Vec<(String, i32)> = s
        .input_topics
        .iter()
        .map(|t| (t.clone(), counts.get(t).copied().unwrap_or(0)))
        .collect();
    let assignments = assign(&inputs, s.instance_index, s.instance_count);
    if let Ok(mut p) = core.partitions.lock() {
        *p = assignments
            .iter()
            .map(|a| (a.topic.clone(), a.partition))
            .collect();
    }
    info!(partitions = assignments.len(), "input partitions assigned");

    let mut tasks = Vec::with_capacity(assignments.len() + 1);
    let mut progress = Vec::with_capacity(assignments.len());
    for a in assignments {
        // A watch keeps only the latest progress: the barrier needs nothing older.
        let (tx, rx) = watch::channel(Progress::default());
        progress.push(rx);
        tasks.push(tokio::spawn(ingest::run_partition(
            Arc::clone(core),
            a,
            tx,
            cancel.child_token(),
        )));
    }
    tasks.push(tokio::spawn(ticker::run(
        Arc::clone(core),
        progress,
        cancel.child_token(),
    )));
    Ok(tasks)
}
