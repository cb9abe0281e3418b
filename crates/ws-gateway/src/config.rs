//! The gateway's one configuration struct: every flag is also an environment variable, every
//! default runs against a local broker, and [`Config::validate`] refuses nonsense at start.

use std::time::Duration;

use clap::Parser;
use odin_service::{KafkaArgs, StartFrom, TelemetryArgs, TopicArgs};

use crate::auth::AuthArgs;
use crate::origin::OriginPolicy;
use crate::recovery::RecoveryArgs;

/// What happens to a client whose outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SlowClientPolicy {
    /// Drop deliveries that do not fit; the client stays connected.
    Drop,
    /// Drop deliveries that do not fit and close the client (1008 "slow consumer") once its
    /// queue has stayed full for `WS_SLOW_CLIENT_TIMEOUT`.
    Disconnect,
}

/// How partitions are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FetchMode {
    /// One Fetch request per broker carries every partition it leads (one connection per
    /// broker): the broker answers one request per cycle instead of one per partition.
    Multi,
    /// One connection and one request per partition.
    Partition,
}

/// Where consumption starts when the gateway starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartPosition {
    /// Only records produced from now on.
    Latest,
    /// Everything the broker still retains.
    Earliest,
}

impl From<StartPosition> for StartFrom {
    fn from(p: StartPosition) -> Self {
        match p {
            StartPosition::Latest => StartFrom::Latest,
            StartPosition::Earliest => StartFrom::Earliest,
        }
    }
}

/// The WebSocket gateway.
#[derive(Debug, Clone, Parser)]
#[command(name = "ws-gateway", version, about)]
pub struct Config {
    /// Listen address for WebSocket (`/ws`, `/`), `/health` and `/metrics`: `:PORT` or `HOST:PORT`.
    #[arg(long, env = "WS_ADDR", default_value = ":3002")]
    pub ws_addr: String,

    /// Where consumption starts: `latest` (the log end) or `earliest`.
    #[arg(long, env = "WS_START_FROM", value_enum, default_value_t = StartPosition::Latest)]
    pub start_from: StartPosition,

    /// Longest a fetch waits for data. Kafka and Redpanda answer a waiting fetch as soon as
    /// data arrives, so this adds no latency: it sets how often idle partitions are asked
    /// again (the broker's cost while nothing happens).
    #[arg(long, env = "KAFKA_FETCH_MAX_WAIT_MS", default_value_t = 20)]
    pub fetch_max_wait_ms: i32,

    /// `multi`: every partition's fetch rides in one request per broker (one connection per
    /// broker); `partition`: a connection and a request per partition. With 96 partitions
    /// and short waits, `multi` is what keeps the broker from answering a request per partition.
    #[arg(long, env = "KAFKA_FETCH_MODE", value_enum, default_value_t = FetchMode::Multi)]
    pub fetch_mode: FetchMode,

    /// Connections per broker in `multi` fetch mode; partitions are dealt to them
    /// round-robin and the broker serves the connections in parallel.
    #[arg(long, env = "KAFKA_FETCH_CONNECTIONS", default_value_t = 4)]
    pub fetch_connections: usize,

    /// Client-side polling: when > 0, every fetch asks with max-wait 0 and a partition whose
    /// fetch came back empty waits this long before the next one. Only for a broker that
    /// holds a fetch for its whole max-wait even when data is there (tansu 0.6 did); 0 =
    /// long-poll with `KAFKA_FETCH_MAX_WAIT_MS`, right for Kafka and Redpanda.
    #[arg(long, env = "KAFKA_FETCH_POLL_MS", default_value_t = 0)]
    pub fetch_poll_ms: u64,

    /// Upper bound of bytes per fetch (per partition).
    #[arg(long, env = "KAFKA_FETCH_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub fetch_max_bytes: i32,

    /// How often topics are listed to discover new topics and partitions.
    #[arg(long, env = "WS_METADATA_REFRESH", default_value = "30s", value_parser = humantime::parse_duration)]
    pub metadata_refresh: Duration,

    /// Write unreadable records to `<topic>.dlq`. Set it on ONE replica only: every replica
    /// reads every record and would write each dead letter once per replica.
    #[arg(long, env = "WS_DLQ", default_value_t = false)]
    pub dlq: bool,

    /// Largest client frame (and message) accepted, in bytes; larger ones close the connection (1009).
    #[arg(long, env = "WS_MAX_FRAME_BYTES", default_value_t = 65_536)]
    pub max_frame_bytes: usize,

    /// Client messages per second per connection (burst of the same size); 0 = unlimited.
    #[arg(long, env = "WS_MAX_CLIENT_MSGS_PER_SEC", default_value_t = 20)]
    pub max_client_msgs_per_sec: u32,

    /// Runtime worker threads; 0 = one per available core. On a machine shared with the
    /// broker (and a load generator), 1 avoids cross-thread wake-ups per delivery
    /// (docs/benchmarks.md: scenario 2 p99 93 ms with 1, 180 ms with 2 on 2 cores).
    #[arg(long, env = "WS_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,

    /// Open WebSocket connections; beyond it upgrades get HTTP 503 before the handshake.
    #[arg(long, env = "WS_MAX_CONNECTIONS", default_value_t = 12_000)]
    pub max_connections: usize,

    /// Frames queued per client before it counts as slow.
    #[arg(long, env = "WS_CLIENT_QUEUE", default_value_t = 1024)]
    pub client_queue: usize,

    /// What to do with a slow client: `drop` deliveries or `disconnect` it.
    #[arg(long, env = "WS_SLOW_CLIENT", value_enum, default_value_t = SlowClientPolicy::Disconnect)]
    pub slow_client: SlowClientPolicy,

    /// How long a client's queue may stay full before `disconnect` closes it.
    #[arg(long, env = "WS_SLOW_CLIENT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub slow_client_timeout: Duration,

    /// Channels one connection may hold.
    #[arg(long, env = "WS_MAX_CHANNELS_PER_CONN", default_value_t = 1000)]
    pub max_channels_per_conn: usize,

    /// Records per second consumed from Kafka over all partitions; 0 = unlimited. Slows
    /// consumption (lag grows) instead of dropping records.
    #[arg(long, env = "WS_MAX_KAFKA_RATE", default_value_t = 0)]
    pub max_kafka_rate: u64,

    /// How often the server pings each client.
    #[arg(long, env = "WS_PING_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// A client that sent nothing (not even a pong) for this long is closed.
    #[arg(long, env = "WS_IDLE_TIMEOUT", default_value = "75s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Time a new connection has to send its HTTP request head.
    #[arg(long, env = "WS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// Longest shutdown waits for clients to take their close frames and for consumers to stop.
    #[arg(long, env = "WS_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub recovery: RecoveryArgs,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub topics: TopicArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Refuses values the gateway cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        self.kafka.validate().map_err(ConfigError)?;
        self.recovery.validate().map_err(ConfigError)?;
        OriginPolicy::parse(&self.auth.allowed_origins).map_err(|e| ConfigError(e.to_string()))?;
        // Reads the public key file, so a bad key stops the gateway before it binds.
        crate::auth::Verifier::from_args(&self.auth).map_err(|e| ConfigError(e.to_string()))?;
        odin_service::config::parse_listen_addr(&self.ws_addr).map_err(ConfigError)?;
        if !(0..=30_000).contains(&self.fetch_max_wait_ms) {
            return bad(format!(
                "KAFKA_FETCH_MAX_WAIT_MS={} is outside 0..=30000",
                self.fetch_max_wait_ms
            ));
        }
        if !(1..=256).contains(&self.fetch_connections) {
            return Err(ConfigError(format!(
                "KAFKA_FETCH_CONNECTIONS={} is outside 1..=256",
                self.fetch_connections
            )));
        }
        if self.fetch_poll_ms > 10_000 {
            return bad(format!(
                "KAFKA_FETCH_POLL_MS={} is above 10000",
                self.fetch_poll_ms
            ));
        }
        if self.fetch_max_bytes < 1024 {
            return bad(format!(
                "KAFKA_FETCH_MAX_BYTES={} is below 1024",
                self.fetch_max_bytes
            ));
        }
        if self.max_frame_bytes < 256 {
            return bad(format!(
                "WS_MAX_FRAME_BYTES={} is below 256",
                self.max_frame_bytes
            ));
        }
        if self.max_connections == 0 {
            return bad("WS_MAX_CONNECTIONS must be at least 1".into());
        }
        if self.worker_threads > 1024 {
            return bad(format!(
                "WS_WORKER_THREADS={} is above 1024",
                self.worker_threads
            ));
        }
        if self.client_queue == 0 {
            return bad("WS_CLIENT_QUEUE must be at least 1".into());
        }
        if self.max_channels_per_conn == 0 {
            return bad("WS_MAX_CHANNELS_PER_CONN must be at least 1".into());
        }
        for (name, d) in [
            ("WS_METADATA_REFRESH", self.metadata_refresh),
            ("WS_PING_INTERVAL", self.ping_interval),
            ("WS_IDLE_TIMEOUT", self.idle_timeout),
            ("WS_HANDSHAKE_TIMEOUT", self.handshake_timeout),
            ("WS_SLOW_CLIENT_TIMEOUT", self.slow_client_timeout),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be positive"));
            }
        }
        if self.idle_timeout <= self.ping_interval {
            return bad(format!(
                "WS_IDLE_TIMEOUT ({:?}) must be longer than WS_PING_INTERVAL ({:?}), or every client is reaped",
                self.idle_timeout, self.ping_interval
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["ws-gateway"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn defaults_are_valid_and_match_the_issue() {
        let c = parse(&[]);
        c.validate().unwrap();
        assert_eq!(c.ws_addr, ":3002");
        assert_eq!(c.start_from, StartPosition::Latest);
        assert_eq!(c.max_frame_bytes, 65_536);
        assert_eq!(c.max_client_msgs_per_sec, 20);
        assert_eq!(c.max_connections, 12_000);
        assert_eq!(c.client_queue, 1024);
        assert_eq!(c.slow_client, SlowClientPolicy::Disconnect);
        assert_eq!(c.slow_client_timeout, Duration::from_secs(5));
        assert_eq!(c.max_channels_per_conn, 1000);
        assert_eq!(c.max_kafka_rate, 0);
        assert!(!c.dlq);
        assert_eq!(c.fetch_mode, FetchMode::Multi);
        assert_eq!(c.fetch_connections, 4);
        assert_eq!(c.worker_threads, 0);
    }

    #[test]
    fn refuses_nonsense() {
        assert!(parse(&["--client-queue", "0"]).validate().is_err());
        assert!(parse(&["--ws-addr", "nope"]).validate().is_err());
        assert!(parse(&["--ping-interval", "10s", "--idle-timeout", "5s"])
            .validate()
            .is_err());
        assert!(Config::try_parse_from(["ws-gateway", "--slow-client", "maybe"]).is_err());
        assert!(parse(&["--fetch-connections", "0"]).validate().is_err());
        assert!(parse(&["--worker-threads", "5000"]).validate().is_err());
        assert!(Config::try_parse_from(["ws-gateway", "--fetch-mode", "both"]).is_err());
        assert_eq!(
            parse(&["--fetch-mode", "partition"]).fetch_mode,
            FetchMode::Partition
        );
        assert_eq!(
            parse(&["--slow-client", "drop", "--dlq"]).slow_client,
            SlowClientPolicy::Drop
        );
    }
}
