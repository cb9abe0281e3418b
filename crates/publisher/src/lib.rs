//! The Odin publisher: the backend's ingestion API and a realistic event simulator, both
//! producing enveloped events to Kafka/Redpanda (and trades mirrored to `trade-info`).
//!
//! # Layout
//! - [`config`]: the one clap config struct (`API_PORT`, `KAFKA_BROKERS`, `PUBLISHER_*`, …).
//! - [`http`]: the router (`app(state)`), handlers, API-key check, size limits.
//! - [`ingest`]: validation of `POST /events` bodies into ready events.
//! - [`openapi`]: schemas of the `/openapi.json` document.
//! - [`schema`]: the required `data` fields of each event type.
//! - [`publish`]: envelopes, the `trade-info` mirror, queueing and acknowledgement.
//! - [`generator`]: the simulator's weighted, self-consistent event generator (pure).
//! - [`simulator`]: start/stop/rate control and the pacer.
//! - [`stats`]: counters behind `/stats`, `/status` and `/metrics`.

pub mod config;
pub mod generator;
pub mod http;
pub mod ingest;
pub mod openapi;
pub mod publish;
pub mod schema;
pub mod simulator;
pub mod stats;

use std::future::Future;
use std::sync::Arc;

use odin_events::{TopicNames, TopicSpec};
use odin_service::topics::Placement;
use odin_service::{KafkaConnector, KafkaHealth, Producer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::Config;
pub use http::{app, AppState};

/// Why the publisher could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// The topic names of `config`, with the mirror topic applied.
pub fn topic_names(config: &Config) -> TopicNames {
    let mut names = config.topics.names();
    if let Some(ti) = config.trade_info() {
        names.trade_info = ti;
    }
    names
}

/// The topics the publisher writes to, with the specs they are created with.
fn topic_specs(names: &TopicNames, mirror: bool) -> Vec<TopicSpec> {
    let mut specs = names.event_topic_specs();
    if mirror {
        specs.extend(
            names
                .all_specs()
                .into_iter()
                .filter(|s| s.name == names.trade_info),
        );
    }
    specs
}

/// Connects in the background (the service starts without a broker) and creates or checks
/// the topics.
async fn prepare_topics(
    connector: KafkaConnector,
    health: KafkaHealth,
    specs: Vec<TopicSpec>,
    create: Option<Placement>,
    cancel: CancellationToken,
) {
    let Ok(client) = connector.client_with_retry(&health, &cancel).await else {
        return;
    };
    if let Some(placement) = create {
        match odin_service::topics::ensure_topics(&connector, &specs, placement).await {
            Ok(created) => info!(?created, "topics ready"),
            Err(e) => warn!(error = %e, "cannot create topics"),
        }
    } else {
        let wanted: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        match odin_service::topics::missing_topics(&client, &wanted).await {
            Ok(missing) if missing.is_empty() => info!("all topics exist"),
            Ok(missing) => warn!(
                ?missing,
                "topics missing: events for them get 503 (start with --create-topics to create them)"
            ),
            Err(e) => warn!(error = %e, "cannot list topics"),
        }
    }
}

/// Runs the publisher on `listener` until `shutdown` completes, then stops the simulator
/// and flushes what was accepted.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    config.validate().map_err(RunError::Config)?;
    // Install the recorder before any metric handle is created.
    let _ = odin_service::telemetry::prometheus();

    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown => trigger.cancel(),
            _ = trigger.cancelled() => {}
        }
    });

    let names = topic_names(&config);
    let trade_info = config.trade_info();
    let health = KafkaHealth::new("publisher_kafka_connected");
    let connector = KafkaConnector::new(&config.kafka);
    let producers: Vec<Producer> = (0..config.producers)
        .map(|_| Producer::new(connector.clone(), config.producer_config(), health.clone()))
        .collect();
    let sink = publish::Sink::new(producers.clone(), names.clone(), trade_info.clone());
    let stats = stats::Stats::new(sink.topics());

    tokio::spawn(prepare_topics(
        connector.clone(),
        health.clone(),
        topic_specs(&names, trade_info.is_some()),
        config.create_topics.then(|| config.topics.placement()),
        cancel.clone(),
    ));
    tokio::spawn(stats.clone().run_sampler(cancel.clone()));

    let default_tokens = config.default_tokens();
    let sim = simulator::Simulator::new(
        sink.clone(),
        stats.clone(),
        simulator::Params {
            rate: if config.sim_rate > 0.0 {
                config.sim_rate
            } else {
                10.0
            },
            tokens: default_tokens.clone(),
        },
        cancel.clone(),
    );
    if config.sim_rate > 0.0 {
        sim.start(simulator::Params {
            rate: config.sim_rate,
            tokens: default_tokens.clone(),
        })
        .await;
    }

    let state = AppState {
        sink,
        stats,
        sim: sim.clone(),
        max_batch: config.max_batch,
        max_body_bytes: config.max_body_bytes,
        max_header_bytes: config.max_header_bytes,
        max_rate: config.max_rate,
        default_tokens,
        api_key: config.api_key.as_deref().map(Arc::from),
        brokers: connector.brokers().to_vec(),
        health_timeout: config.kafka.kafka_request_timeout,
    };
    let addr = listener.local_addr()?;
    info!(
        %addr,
        brokers = ?connector.brokers(),
        topic_mode = %names.mode,
        trade_info = ?trade_info,
        api_key = config.api_key.is_some(),
        "publisher listening: POST /events, POST /start, POST /stop, POST /rate, POST /control, \
         GET /status, GET /stats, GET /health, GET /metrics"
    );
    let served = odin_service::http::serve(listener, app(state), cancel.clone()).await;
    cancel.cancel();
    info!("shutting down: stopping the simulator and flushing");
    let grace = config.shutdown_grace;
    odin_service::shutdown::drain_within(grace, "simulator", sim.stop()).await;
    let flush = futures::future::join_all(producers.iter().map(Producer::flush));
    odin_service::shutdown::drain_within(grace, "producer flush", flush).await;
    info!("publisher stopped");
    served.map_err(RunError::from)
}
