//! Argument groups shared by every service; each service flattens them into its one
//! `clap` config struct so every flag is also an environment variable.

use std::time::Duration;

use clap::Args;
use odin_events::{TopicMode, TopicNames};
use rskafka::client::partition::Compression;

/// Where the brokers are and how to talk to them.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka/Redpanda bootstrap brokers, comma separated.
    #[arg(
        long,
        env = "KAFKA_BROKERS",
        default_value = "localhost:19092",
        value_delimiter = ','
    )]
    pub kafka_brokers: Vec<String>,

    /// Client id sent to the brokers.
    #[arg(long, env = "KAFKA_CLIENT_ID", default_value = "odin-stream")]
    pub kafka_client_id: String,

    /// How long one broker request may keep retrying (reconnects included) before it fails.
    #[arg(long, env = "KAFKA_REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub kafka_request_timeout: Duration,
}

impl KafkaArgs {
    /// Refuses an empty or blank broker list.
    pub fn validate(&self) -> Result<(), String> {
        if self.kafka_brokers.iter().all(|b| b.trim().is_empty()) {
            return Err("KAFKA_BROKERS is empty".into());
        }
        for b in &self.kafka_brokers {
            if !b.trim().contains(':') {
                return Err(format!("KAFKA_BROKERS entry {b:?} is not host:port"));
            }
        }
        Ok(())
    }

    pub fn brokers(&self) -> Vec<String> {
        self.kafka_brokers
            .iter()
            .map(|b| b.trim().to_owned())
            .filter(|b| !b.is_empty())
            .collect()
    }
}

/// Topic layout, shared by all three services so they agree.
#[derive(Debug, Clone, Args)]
pub struct TopicArgs {
    /// `per-category` (one topic per category) or `single` (one topic for every event).
    #[arg(long, env = "TOPIC_MODE", default_value = "per-category")]
    pub topic_mode: TopicMode,

    /// The one topic in single mode.
    #[arg(long, env = "SINGLE_TOPIC", default_value = odin_events::topics::DEFAULT_SINGLE_TOPIC)]
    pub single_topic: String,

    /// Prefix put before every category topic name (e.g. `staging.` gives `staging.odin.trades`).
    #[arg(long, env = "TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,

    /// Copies of each partition when a topic is created (3 on a three-broker cluster).
    #[arg(long, env = "TOPIC_REPLICATION_FACTOR", default_value_t = 1, value_parser = clap::value_parser!(i16).range(1..=16))]
    pub topic_replication_factor: i16,

    /// `min.insync.replicas` of each created topic (2 with replication 3); unset keeps the
    /// broker's default.
    #[arg(long, env = "TOPIC_MIN_INSYNC_REPLICAS", value_parser = clap::value_parser!(i16).range(1..=16))]
    pub topic_min_insync_replicas: Option<i16>,
}

impl TopicArgs {
    /// How created topics are replicated.
    pub fn placement(&self) -> crate::topics::Placement {
        crate::topics::Placement {
            replication_factor: self.topic_replication_factor,
            min_insync_replicas: self.topic_min_insync_replicas,
        }
    }

    pub fn names(&self) -> TopicNames {
        let mut names = TopicNames::new(self.topic_mode);
        names.single = format!("{}{}", self.topic_prefix, self.single_topic);
        for t in names.categories.iter_mut() {
            *t = format!("{}{}", self.topic_prefix, t);
        }
        names
    }
}

/// Logging.
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Log filter (`info`, `debug`, `ws_gateway=debug,info`, …).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// `pretty` for people, `json` for log shippers.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
    pub log_format: String,
}

/// Parses a compression name: none, gzip, snappy, lz4, zstd.
pub fn parse_compression(s: &str) -> Result<Compression, String> {
    match s.to_ascii_lowercase().as_str() {
        "none" => Ok(Compression::NoCompression),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(format!(
            "unknown compression {other:?} (none, gzip, snappy, lz4, zstd)"
        )),
    }
}

/// Parses `:3002`, `3002` or `127.0.0.1:3002` into a bindable address; a bare port or
/// `:port` binds every interface, as the seeds' `WS_ADDR=:3002` expects.
pub fn parse_listen_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    let s = s.trim();
    let full = if let Some(port) = s.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if s.chars().all(|c| c.is_ascii_digit()) {
        format!("0.0.0.0:{s}")
    } else {
        s.to_owned()
    };
    full.parse()
        .map_err(|e| format!("{s:?} is not a listen address (:PORT or HOST:PORT): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addrs() {
        assert_eq!(parse_listen_addr(":3002").unwrap().port(), 3002);
        assert_eq!(parse_listen_addr("3004").unwrap().port(), 3004);
        assert!(parse_listen_addr("127.0.0.1:1").unwrap().ip().is_loopback());
        assert!(parse_listen_addr("nope").is_err());
    }

    #[test]
    fn compression_names() {
        assert_eq!(parse_compression("SNAPPY").unwrap(), Compression::Snappy);
        assert!(parse_compression("brotli").is_err());
    }

    #[test]
    fn topic_prefix_applies_to_event_topics() {
        let args = TopicArgs {
            topic_mode: TopicMode::PerCategory,
            single_topic: "odin.events".into(),
            topic_prefix: "t1.".into(),
            topic_replication_factor: 1,
            topic_min_insync_replicas: None,
        };
        assert_eq!(args.names().categories[0], "t1.odin.trades");
    }
}
