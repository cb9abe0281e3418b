//! The publisher's one configuration struct: every flag is also an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use odin_events::TokenId;
use odin_service::config::parse_compression;
use odin_service::{KafkaArgs, ProducerConfig, TelemetryArgs, TopicArgs};
use rskafka::client::partition::Compression;

/// Odin publisher: the backend's ingestion API (`POST /events`) and an event simulator.
#[derive(Debug, Clone, Parser)]
#[command(name = "publisher", version)]
pub struct Config {
    /// Address the HTTP API binds.
    #[arg(long, env = "API_HOST", default_value = "0.0.0.0")]
    pub api_host: String,

    /// Port of the HTTP API.
    #[arg(long, env = "API_PORT", default_value_t = 3001)]
    pub api_port: u16,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub topics: TopicArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,

    /// Most events in one `POST /events` batch; more is a 400.
    #[arg(long, env = "PUBLISHER_MAX_BATCH", default_value_t = 1_000)]
    pub max_batch: usize,

    /// Largest accepted request body in bytes; more is a 413.
    #[arg(long, env = "PUBLISHER_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest accepted total size of request headers in bytes; more is a 431.
    #[arg(long, env = "PUBLISHER_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Highest simulator rate (events/s) `/start`, `/rate` and `/control` accept.
    #[arg(long, env = "PUBLISHER_MAX_RATE", default_value_t = 100_000.0)]
    pub max_rate: f64,

    /// How long a partition's produce batch waits for more records, in milliseconds.
    #[arg(long, env = "PUBLISHER_LINGER_MS", default_value_t = 5)]
    pub linger_ms: u64,

    /// Records per produce batch (per partition).
    #[arg(long, env = "PUBLISHER_PRODUCE_BATCH", default_value_t = 10_000)]
    pub produce_batch: usize,

    /// Broker connections producing in parallel (each token always uses the same one).
    #[arg(long, env = "PUBLISHER_PRODUCERS", default_value_t = 2)]
    pub producers: usize,

    /// Compression of produced batches: none, gzip, snappy, lz4, zstd.
    #[arg(long, env = "KAFKA_COMPRESSION", default_value = "snappy", value_parser = parse_compression)]
    pub compression: Compression,

    /// Topic trade events are mirrored to in the trade-record format; empty disables it.
    #[arg(long, env = "TRADE_INFO_TOPIC", default_value = odin_events::topics::DEFAULT_TRADE_INFO_TOPIC)]
    pub trade_info_topic: String,

    /// Create missing topics (with the specs of odin-events) at start; off by default so a
    /// typo never creates a topic.
    #[arg(long, env = "CREATE_TOPICS")]
    pub create_topics: bool,

    /// When set, `/events`, `/start`, `/stop`, `/rate` and `/control` require it in
    /// `x-api-key` (or `Authorization: Bearer …`).
    #[arg(long, env = "PUBLISHER_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Start the simulator at this rate (events/s) on boot; 0 leaves it stopped.
    #[arg(long, env = "PUBLISHER_SIM_RATE", default_value_t = 0.0)]
    pub sim_rate: f64,

    /// Tokens the simulator uses when a start names none, comma separated.
    #[arg(
        long,
        env = "PUBLISHER_SIM_TOKENS",
        default_value = "BTC,ETH,SOL",
        value_delimiter = ','
    )]
    pub sim_tokens: Vec<String>,

    /// How long shutdown may take to flush what was accepted.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

impl Config {
    /// Checks what clap cannot; the message names the variable.
    pub fn validate(&self) -> Result<(), String> {
        self.kafka.validate()?;
        self.listen_addr()?;
        if self.max_batch == 0 {
            return Err("PUBLISHER_MAX_BATCH must be at least 1".into());
        }
        if self.max_body_bytes < 1024 {
            return Err("PUBLISHER_MAX_BODY_BYTES must be at least 1024".into());
        }
        if self.max_header_bytes < 1024 {
            return Err("PUBLISHER_MAX_HEADER_BYTES must be at least 1024".into());
        }
        if !(self.max_rate.is_finite() && self.max_rate > 0.0) {
            return Err(format!(
                "PUBLISHER_MAX_RATE must be > 0, got {}",
                self.max_rate
            ));
        }
        if !(1..=16).contains(&self.producers) {
            return Err(format!(
                "PUBLISHER_PRODUCERS must be between 1 and 16, got {}",
                self.producers
            ));
        }
        if self.produce_batch == 0 {
            return Err("PUBLISHER_PRODUCE_BATCH must be at least 1".into());
        }
        if !(self.sim_rate.is_finite() && (0.0..=self.max_rate).contains(&self.sim_rate)) {
            return Err(format!(
                "PUBLISHER_SIM_RATE must be between 0 and PUBLISHER_MAX_RATE ({}), got {}",
                self.max_rate, self.sim_rate
            ));
        }
        let tokens = self.default_tokens();
        if tokens.is_empty() {
            return Err("PUBLISHER_SIM_TOKENS is empty".into());
        }
        for t in &tokens {
            TokenId::validate(t).map_err(|e| format!("PUBLISHER_SIM_TOKENS: {e}"))?;
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err("PUBLISHER_API_KEY is set but blank".into());
        }
        if self.topics.topic_mode == odin_events::TopicMode::Single
            && self.topics.single_topic.trim().is_empty()
        {
            return Err("SINGLE_TOPIC is empty".into());
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        odin_service::config::parse_listen_addr(&format!("{}:{}", self.api_host, self.api_port))
    }

    /// The mirror topic, `None` when disabled.
    pub fn trade_info(&self) -> Option<String> {
        let t = self.trade_info_topic.trim();
        (!t.is_empty()).then(|| t.to_owned())
    }

    pub fn default_tokens(&self) -> Vec<String> {
        self.sim_tokens
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect()
    }

    pub fn producer_config(&self) -> ProducerConfig {
        ProducerConfig {
            linger: Duration::from_millis(self.linger_ms),
            max_batch_records: self.produce_batch,
            compression: self.compression,
            ..ProducerConfig::default()
        }
    }

    /// A config with every default, for tests: `Config::for_tests(["--api-port", "0"])`.
    pub fn from_args<I, S>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        Self::try_parse_from(
            std::iter::once("publisher".into()).chain(args.into_iter().map(Into::into)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_locally() {
        let c = Config::from_args(Vec::<String>::new()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.api_port, 3001);
        assert_eq!(c.max_batch, 1000);
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.compression, Compression::Snappy);
        assert_eq!(c.trade_info().as_deref(), Some("trade-info"));
        assert!(!c.create_topics);
        assert_eq!(c.default_tokens(), vec!["BTC", "ETH", "SOL"]);
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_name() {
        let c = Config::from_args(["--max-rate", "0"]).unwrap();
        assert!(c.validate().unwrap_err().contains("PUBLISHER_MAX_RATE"));
        let c = Config::from_args(["--sim-tokens", "B C"]).unwrap();
        assert!(c.validate().unwrap_err().contains("PUBLISHER_SIM_TOKENS"));
        let c = Config::from_args(["--trade-info-topic", ""]).unwrap();
        assert_eq!(c.trade_info(), None);
        assert!(Config::from_args(["--compression", "brotli"]).is_err());
        let c = Config::from_args(["--create-topics"]).unwrap();
        assert!(c.create_topics);
    }
}
