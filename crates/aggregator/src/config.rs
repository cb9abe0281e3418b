//! The aggregator's one configuration struct (every flag is also an environment variable)
//! and its validation into [`Settings`].

use std::time::Duration;

use clap::Parser;
use odin_service::config::{parse_compression, parse_listen_addr};
use odin_service::{KafkaArgs, TelemetryArgs};
use rskafka::client::partition::Compression;

use crate::window::WindowSpec;

/// Odin Stream aggregator: trade-info → per-token rolling windows → aggregate-info.
#[derive(Debug, Clone, Parser)]
#[command(name = "aggregator", version, about, args_override_self = true)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Input topics of trades, comma separated (`trade-info` records; Odin trade event
    /// envelopes are accepted too, e.g. from `odin.trades`).
    #[arg(
        long = "kafka-topic",
        env = "KAFKA_TOPIC",
        default_value = odin_events::topics::DEFAULT_TRADE_INFO_TOPIC,
        value_delimiter = ','
    )]
    pub input_topics: Vec<String>,

    /// Output topic of per-token aggregates.
    #[arg(long, env = "AGGREGATE_TOPIC", default_value = odin_events::topics::DEFAULT_AGGREGATE_INFO_TOPIC)]
    pub aggregate_topic: String,

    /// Publish interval (humantime, at least 1s); ticks are aligned to it (30s: at :00 and :30).
    #[arg(long, env = "AGGREGATE_PUBLISH_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub publish_interval: Duration,

    /// Rolling windows, comma separated; each name is published as `time_window`.
    #[arg(
        long,
        env = "AGGREGATE_WINDOWS",
        default_value = "1min,5min,15min,30min,1hour",
        value_delimiter = ','
    )]
    pub windows: Vec<String>,

    /// Listen address of /health, /stats, /metrics and POST /publish (`:PORT` or `HOST:PORT`).
    #[arg(long, env = "AGGREGATOR_ADDR", default_value = ":3004")]
    pub addr: String,

    /// This instance's index: it reads the input partitions p with p mod count = index.
    #[arg(long, env = "INSTANCE_INDEX", default_value_t = 0)]
    pub instance_index: u32,

    /// How many aggregator instances split the input partitions.
    #[arg(long, env = "INSTANCE_COUNT", default_value_t = 1)]
    pub instance_count: u32,

    /// Aggregate records per produce batch and partition.
    #[arg(long, env = "AGGREGATE_BATCH_SIZE", default_value_t = 50)]
    pub batch_size: usize,

    /// How long a partially filled produce batch waits for more records.
    #[arg(long, env = "AGGREGATE_BATCH_LINGER", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub batch_linger: Duration,

    /// Compression of produced batches: none, gzip, snappy, lz4, zstd.
    #[arg(long, env = "AGGREGATE_COMPRESSION", default_value = "snappy", value_parser = parse_compression)]
    pub compression: Compression,

    /// Longest a fetch waits for new trades at the broker (ms); bounds ingest latency and
    /// how long a tick waits for the input to be read up to its end.
    #[arg(long, env = "KAFKA_FETCH_MAX_WAIT_MS", default_value_t = 100)]
    pub fetch_max_wait_ms: i32,

    /// Trades whose event time is further than this ahead of the clock are invalid
    /// (dead-lettered): they would pin state for their whole future.
    #[arg(long, env = "AGGREGATE_MAX_FUTURE", default_value = "5min", value_parser = humantime::parse_duration)]
    pub max_future: Duration,

    /// How far a trade's record timestamp may lie before the trade's own time (producer clock
    /// skew, late appends). A restart seeks the input by time to the first tick's horizon
    /// less this margin, instead of replaying everything retained.
    #[arg(long, env = "AGGREGATOR_ALLOWED_LATENESS", default_value = "60s", value_parser = humantime::parse_duration)]
    pub allowed_lateness: Duration,

    /// Create missing input, output and dead-letter topics at start (never by metadata
    /// auto-creation). Off by default: topics are created by operations (`odin-topics`,
    /// `scripts/setup-redpanda-topics.sh`) with their replication and configs; a service
    /// that creates what it does not find can hide a wrong topic name.
    #[arg(long, env = "AGGREGATOR_CREATE_TOPICS", default_value_t = false, action = clap::ArgAction::Set)]
    pub create_topics: bool,

    /// How long shutdown may take to flush produced records.
    #[arg(long, env = "AGGREGATOR_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// A configuration value that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{0}")]
    Kafka(String),
    #[error("AGGREGATE_WINDOWS entry {name:?}: {reason}")]
    Window { name: String, reason: String },
    #[error("AGGREGATE_WINDOWS {a:?} and {b:?} are the same length")]
    DuplicateWindow { a: String, b: String },
    #[error("AGGREGATE_WINDOWS is empty")]
    NoWindows,
    #[error("AGGREGATE_PUBLISH_INTERVAL {interval:?} is below 1s")]
    IntervalTooShort { interval: Duration },
    #[error("INSTANCE_INDEX {index} must be below INSTANCE_COUNT {count} (count ≥ 1)")]
    Instance { index: u32, count: u32 },
    #[error("KAFKA_TOPIC is empty")]
    NoInput,
    #[error("topic name {name:?} is empty or has spaces")]
    BadTopic { name: String },
    #[error("{field} {value} is out of range ({range})")]
    Range {
        field: &'static str,
        value: String,
        range: &'static str,
    },
    #[error("AGGREGATOR_ADDR: {0}")]
    Addr(String),
}

/// The validated configuration the service runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub input_topics: Vec<String>,
    pub aggregate_topic: String,
    pub interval_ms: i64,
    pub windows: Vec<WindowSpec>,
    /// Bucket width: divides the interval, every window and one second.
    pub granularity_ms: i64,
    pub addr: std::net::SocketAddr,
    pub instance_index: u32,
    pub instance_count: u32,
    pub max_future_ms: i64,
    pub allowed_lateness_ms: i64,
}

impl Settings {
    pub fn largest_window_ms(&self) -> i64 {
        self.windows.iter().map(|w| w.ms).max().unwrap_or(0)
    }
}

/// Parses a window name: `30s`, `1min`, `5m`, `1hour`, `2h`, `1d` (case-insensitive).
pub fn parse_window(name: &str) -> Result<WindowSpec, ConfigError> {
    let err = |reason: &str| ConfigError::Window {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    let n = name.trim();
    let split = n.find(|c: char| !c.is_ascii_digit()).unwrap_or(n.len());
    let (digits, unit) = n.split_at(split);
    let count: i64 = digits
        .parse()
        .map_err(|_| err("expected a number then a unit, e.g. 5min"))?;
    let unit_ms: i64 = match unit.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hr" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return Err(err("unknown unit (s, min, hour, d)")),
    };
    let ms = count
        .checked_mul(unit_ms)
        .filter(|ms| *ms > 0 && *ms <= 30 * 86_400_000)
        .ok_or_else(|| err("must be between 1s and 30d"))?;
    Ok(WindowSpec {
        name: n.to_owned(),
        ms,
    })
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn check_topic(name: &str) -> Result<(), ConfigError> {
    if name.trim().is_empty() || name.contains(char::is_whitespace) {
        return Err(ConfigError::BadTopic {
            name: name.to_owned(),
        });
    }
    Ok(())
}

impl Config {
    /// Checks every value and derives the bucket granularity.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        self.kafka.validate().map_err(ConfigError::Kafka)?;
        let input_topics: Vec<String> = self
            .input_topics
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        if input_topics.is_empty() {
            return Err(ConfigError::NoInput);
        }
        for t in input_topics.iter().chain([&self.aggregate_topic]) {
            check_topic(t)?;
        }
        if self.publish_interval < Duration::from_secs(1) {
            return Err(ConfigError::IntervalTooShort {
                interval: self.publish_interval,
            });
        }
        let interval_ms = i64::try_from(self.publish_interval.as_millis())
            .ok()
            .filter(|ms| *ms <= 86_400_000)
            .ok_or(ConfigError::Range {
                field: "AGGREGATE_PUBLISH_INTERVAL",
                value: format!("{:?}", self.publish_interval),
                range: "1s..=1d",
            })?;
        let mut windows = Vec::new();
        for name in self.windows.iter().filter(|w| !w.trim().is_empty()) {
            let w = parse_window(name)?;
            if let Some(dup) = windows.iter().find(|o: &&WindowSpec| o.ms == w.ms) {
                return Err(ConfigError::DuplicateWindow {
                    a: dup.name.clone(),
                    b: w.name,
                });
            }
            windows.push(w);
        }
        if windows.is_empty() {
            return Err(ConfigError::NoWindows);
        }
        if self.instance_count == 0 || self.instance_index >= self.instance_count {
            return Err(ConfigError::Instance {
                index: self.instance_index,
                count: self.instance_count,
            });
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(ConfigError::Range {
                field: "AGGREGATE_BATCH_SIZE",
                value: self.batch_size.to_string(),
                range: "1..=10000",
            });
        }
        if !(0..=10_000).contains(&self.fetch_max_wait_ms) {
            return Err(ConfigError::Range {
                field: "KAFKA_FETCH_MAX_WAIT_MS",
                value: self.fetch_max_wait_ms.to_string(),
                range: "0..=10000",
            });
        }
        if self.batch_linger > Duration::from_secs(10) {
            return Err(ConfigError::Range {
                field: "AGGREGATE_BATCH_LINGER",
                value: format!("{:?}", self.batch_linger),
                range: "0..=10s",
            });
        }
        let addr = parse_listen_addr(&self.addr).map_err(ConfigError::Addr)?;
        // One second at most, so POST /publish (end = now) is exact to the second.
        let granularity_ms = windows
            .iter()
            .fold(gcd(interval_ms, 1_000), |g, w| gcd(g, w.ms));
        Ok(Settings {
            input_topics,
            aggregate_topic: self.aggregate_topic.trim().to_owned(),
            interval_ms,
            windows,
            granularity_ms,
            addr,
            instance_index: self.instance_index,
            instance_count: self.instance_count,
            max_future_ms: i64::try_from(self.max_future.as_millis()).unwrap_or(i64::MAX / 4),
            allowed_lateness_ms: i64::try_from(self.allowed_lateness.as_millis())
                .unwrap_or(i64::MAX / 4),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["aggregator"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn defaults_run_locally() {
        let s = parse(&[]).validate().unwrap();
        assert_eq!(s.input_topics, ["trade-info"]);
        assert_eq!(s.aggregate_topic, "aggregate-info");
        assert_eq!(s.interval_ms, 30_000);
        let names: Vec<_> = s.windows.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["1min", "5min", "15min", "30min", "1hour"]);
        assert_eq!(s.largest_window_ms(), 3_600_000);
        assert_eq!(s.granularity_ms, 1_000);
        assert_eq!(s.addr.port(), 3004);
    }

    #[test]
    fn window_names() {
        assert_eq!(parse_window("30s").unwrap().ms, 30_000);
        assert_eq!(parse_window("1hour").unwrap().ms, 3_600_000);
        assert_eq!(parse_window("2h").unwrap().ms, 7_200_000);
        assert_eq!(parse_window(" 15MIN ").unwrap().name, "15MIN");
        for bad in ["", "min", "5", "5 fortnights", "0min", "99999999999d"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_what_cannot_run() {
        let bad = |args: &[&str]| parse(args).validate().unwrap_err();
        assert!(matches!(
            bad(&["--publish-interval", "500ms"]),
            ConfigError::IntervalTooShort { .. }
        ));
        assert!(matches!(
            bad(&["--instance-index", "2", "--instance-count", "2"]),
            ConfigError::Instance { .. }
        ));
        assert!(matches!(
            bad(&["--windows", "1min,60s"]),
            ConfigError::DuplicateWindow { .. }
        ));
        assert!(matches!(bad(&["--kafka-topic", ","]), ConfigError::NoInput));
        assert!(matches!(
            bad(&["--batch-size", "0"]),
            ConfigError::Range { .. }
        ));
        assert!(matches!(bad(&["--addr", "nope"]), ConfigError::Addr(_)));
    }

    #[test]
    fn granularity_divides_interval_and_windows() {
        let s = parse(&["--publish-interval", "1500ms", "--windows", "1min,90s"])
            .validate()
            .unwrap();
        assert_eq!(s.granularity_ms, 500);
        let s = parse(&["--kafka-topic", "trade-info,odin.trades"])
            .validate()
            .unwrap();
        assert_eq!(s.input_topics.len(), 2);
    }
}
