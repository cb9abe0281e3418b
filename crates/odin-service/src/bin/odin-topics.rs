//! `odin-topics`: creates every Odin topic (event topics, trade-info, aggregate-info and their
//! dead-letter topics) on a Kafka-API broker, waiting for the broker to come up. Idempotent.
//! Used by `scripts/dev.sh` and `task topics`; deployments use `scripts/setup-redpanda-topics.sh`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use odin_service::{KafkaArgs, KafkaConnector, TelemetryArgs, TopicArgs};

/// Create every Odin topic on the brokers.
#[derive(Debug, Parser)]
#[command(name = "odin-topics", version)]
struct Config {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    topics: TopicArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    /// How long to wait for the brokers to answer.
    #[arg(long, env = "TOPICS_WAIT", default_value = "60s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// Only list what is missing; create nothing.
    #[arg(long)]
    check: bool,
    /// Print the topic plan (`name partitions retention_ms` per line) and exit without
    /// contacting the brokers; `scripts/check-deploy.sh` compares it with the deployment's
    /// topic script.
    #[arg(long)]
    print: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cfg = Config::parse();
    if cfg.print {
        for spec in cfg.topics.names().all_specs() {
            println!("{} {} {}", spec.name, spec.partitions, spec.retention_ms);
        }
        // The full configs go to stderr so that the plan's three columns stay as they are.
        for spec in cfg.topics.names().all_specs() {
            let configs: Vec<String> = spec
                .configs()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            eprintln!("{} {}", spec.name, configs.join(" "));
        }
        return Ok(());
    }
    odin_service::telemetry::init_tracing(&cfg.telemetry);
    if let Err(e) = cfg.kafka.validate() {
        bail!("invalid configuration: {e}");
    }
    let connector = KafkaConnector::new(&cfg.kafka);
    let deadline = Instant::now() + cfg.wait;
    let client = loop {
        match connector.client().await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => {
                return Err(e).context("brokers did not answer in time")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let specs = cfg.topics.names().all_specs();
    if cfg.check {
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let missing = odin_service::topics::missing_topics(&client, &names).await?;
        if missing.is_empty() {
            eprintln!("all {} topics exist", specs.len());
            return Ok(());
        }
        bail!("missing topics: {}", missing.join(", "));
    }
    let created = odin_service::topics::ensure_topics(&connector, &specs, cfg.topics.placement())
        .await
        .context("creating topics")?;
    eprintln!(
        "{} topics ready on {} ({} created)",
        specs.len(),
        cfg.kafka.brokers().join(","),
        created.len()
    );
    Ok(())
}
