//! The loadtest's one configuration struct (flags and environment) and its validation.

use std::time::Duration;

use clap::Parser;
use odin_service::{KafkaArgs, TelemetryArgs, TopicArgs};

use crate::plan::{Mode, PlanSpec};

/// Where a client's JWT goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JwtIn {
    /// `Authorization: Bearer <token>` on the upgrade request.
    Header,
    /// `?token=<token>` on the URL.
    Query,
}

/// Seconds as a bare number (`--duration 300`, as the seeds use it) or a humantime duration
/// (`5m`, `250ms`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err(format!("{s:?} is not a duration"));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration: {e}"))
}

/// Put the WebSocket gateway under realistic load; report loss, latency and cost.
///
/// Clients connect at `--ramp-rate`, subscribe, and wait for the gateway's confirmation;
/// then events are produced to Kafka at `--produce-rate` for `--warmup` (not counted) plus
/// `--duration` (measured), and outstanding deliveries are drained for at most `--drain`.
/// Progress goes to stderr once per second, the report to stdout. Exit status: 0 clean,
/// 1 when anything was lost, duplicated, reordered or a connection failed, 2 on a setup error.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadtest", version)]
pub struct Config {
    /// Gateway WebSocket URL (loopback only).
    #[arg(
        long,
        env = "LOADTEST_SERVER",
        default_value = "ws://localhost:3002/ws"
    )]
    pub server: String,

    /// Connections to open.
    #[arg(long, env = "LOADTEST_TARGET", default_value_t = 100)]
    pub target: usize,

    /// New connections per second while ramping up.
    #[arg(long, env = "LOADTEST_RAMP_RATE", default_value_t = 1000.0)]
    pub ramp_rate: f64,

    /// Longest the ramp may take before the run goes on with whoever is subscribed
    /// (default: target / ramp-rate + 30 s).
    #[arg(long, env = "LOADTEST_RAMP_TIMEOUT", value_parser = parse_duration)]
    pub ramp_timeout: Option<Duration>,

    /// Measured window (seconds, or `5m`).
    #[arg(long, env = "LOADTEST_DURATION", default_value = "30", value_parser = parse_duration)]
    pub duration: Duration,

    /// Producing before the measured window whose events are not counted.
    #[arg(long, env = "LOADTEST_WARMUP", default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Longest wait after producing stops for deliveries still under way.
    #[arg(long, env = "LOADTEST_DRAIN", default_value = "10s", value_parser = parse_duration)]
    pub drain: Duration,

    /// How clients subscribe: `bundle` (bundle + tokens) or `channels` (explicit channels).
    #[arg(long, env = "LOADTEST_SUBSCRIPTION_MODE", value_enum, default_value_t = Mode::Bundle)]
    pub subscription_mode: Mode,

    /// Bundle of bundle mode.
    #[arg(long, env = "LOADTEST_BUNDLE", default_value = "TRADING")]
    pub bundle: String,

    /// Categories of channel mode: each client subscribes to TOKEN.category for each.
    #[arg(
        long,
        env = "LOADTEST_CATEGORIES",
        default_value = "trade",
        value_delimiter = ','
    )]
    pub categories: Vec<String>,

    /// Tokens every client subscribes to (ignored with --token-count).
    #[arg(
        long,
        env = "LOADTEST_TOKENS",
        default_value = "BTC,ETH,SOL",
        value_delimiter = ','
    )]
    pub tokens: Vec<String>,

    /// Spread load: generate this many tokens (T000, T001, …) ...
    #[arg(long, env = "LOADTEST_TOKEN_COUNT")]
    pub token_count: Option<usize>,

    /// ... and give each client this many of them, evenly spread.
    #[arg(long, env = "LOADTEST_TOKENS_PER_CLIENT", default_value_t = 3)]
    pub tokens_per_client: usize,

    /// HS256 secret: mint a JWT per client (`sub` = loadtest-user-N) and authenticate with it.
    #[arg(long, env = "LOADTEST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Where the JWT goes: `header` (Authorization: Bearer) or `query` (?token=).
    #[arg(long, env = "LOADTEST_JWT_IN", value_enum, default_value_t = JwtIn::Header)]
    pub jwt_in: JwtIn,

    /// Events per second produced to Kafka (0 = none: idle connections).
    #[arg(long, env = "LOADTEST_PRODUCE_RATE", default_value_t = 100.0)]
    pub produce_rate: f64,

    /// How long the producer waits to batch records of one partition (0 = send what is
    /// queued at once). It is part of the measured produce → receive latency.
    #[arg(long, env = "LOADTEST_PRODUCE_LINGER", default_value = "1ms", value_parser = parse_duration)]
    pub produce_linger: Duration,

    /// Bytes of filler in each event's data, for realistic frame sizes.
    #[arg(long, env = "LOADTEST_PAYLOAD_BYTES", default_value_t = 120)]
    pub payload_bytes: usize,

    /// Drive the publisher instead of producing: POST its /start and /rate, /stop at the
    /// end (e.g. http://127.0.0.1:3001). Loss cannot be counted exactly then.
    #[arg(long, env = "LOADTEST_PUBLISHER_URL")]
    pub publisher_url: Option<String>,

    /// Gateway process id: report its CPU seconds and peak RSS from /proc.
    #[arg(long, env = "LOADTEST_GATEWAY_PID")]
    pub gateway_pid: Option<u32>,

    /// Print the report as one JSON line on stdout (the text report goes to stderr).
    #[arg(long, env = "LOADTEST_JSON", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub json: bool,

    /// Create every Odin topic on the brokers, then exit.
    #[arg(long)]
    pub create_topics: bool,

    /// Tokio worker threads (few: the gateway and the broker share this machine).
    #[arg(long, env = "LOADTEST_THREADS", default_value_t = 1)]
    pub threads: usize,

    /// Source addresses 127.0.0.1.. to spread client connections over (0 = one per 10,000
    /// connections), since one address has only ~28,000 ephemeral ports.
    #[arg(long, env = "LOADTEST_SOURCE_IPS", default_value_t = 0)]
    pub source_ips: usize,

    /// WebSocket read buffer per client, bytes.
    #[arg(long, env = "LOADTEST_READ_BUFFER", default_value_t = 4096)]
    pub read_buffer: usize,

    /// Longest a client waits for its connection, upgrade and subscription confirmation.
    #[arg(long, env = "LOADTEST_CONNECT_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub topics: TopicArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Open files this process keeps for itself (broker connections, /proc reads, stdio).
pub const RESERVED_FILES: u64 = 64;

impl Config {
    /// Refuses settings that cannot run; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        self.kafka.validate()?;
        if !(self.ramp_rate.is_finite() && self.ramp_rate > 0.0) {
            return Err("--ramp-rate must be a positive number".into());
        }
        if !(self.produce_rate.is_finite() && self.produce_rate >= 0.0) {
            return Err("--produce-rate must be a non-negative number".into());
        }
        if self.produce_rate > 1_000_000.0 {
            return Err("--produce-rate above 1,000,000 events/s is not supported".into());
        }
        if self.threads == 0 || self.threads > 64 {
            return Err("--threads must be between 1 and 64".into());
        }
        if self.read_buffer < 256 {
            return Err("--read-buffer must be at least 256 bytes".into());
        }
        if self.duration > Duration::from_secs(24 * 3600) {
            return Err("--duration is capped at 24 h".into());
        }
        if let Some(url) = &self.publisher_url {
            if !url.starts_with("http://") {
                return Err(format!("--publisher-url {url:?} must start with http://"));
            }
        }
        if self.jwt_secret.as_deref() == Some("") {
            return Err("--jwt-secret is empty".into());
        }
        crate::plan::Plan::new(&self.plan_spec()).map_err(|e| e.to_string())?;
        Ok(())
    }

    pub fn plan_spec(&self) -> PlanSpec {
        PlanSpec {
            clients: self.target,
            mode: self.subscription_mode,
            bundle: self.bundle.clone(),
            categories: self.categories.clone(),
            tokens: self.tokens.clone(),
            spread: self.token_count.map(|k| (k, self.tokens_per_client)),
        }
    }

    /// The ramp's time cap.
    pub fn ramp_cap(&self) -> Duration {
        self.ramp_timeout.unwrap_or_else(|| {
            Duration::from_secs_f64(self.target as f64 / self.ramp_rate) + Duration::from_secs(30)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_seconds_and_humantime() {
        assert_eq!(parse_duration("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn seed_command_line_parses() {
        let c = Config::try_parse_from([
            "loadtest",
            "--target",
            "1000",
            "--duration",
            "300",
            "--ramp-rate",
            "10",
            "--server",
            "ws://localhost:3002",
            "--subscription-mode",
            "bundle",
            "--bundle",
            "TRADING",
            "--tokens",
            "BTC,ETH,SOL",
        ])
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.target, 1000);
        assert_eq!(c.tokens, ["BTC", "ETH", "SOL"]);
        assert_eq!(c.ramp_cap(), Duration::from_secs(130));
    }

    #[test]
    fn json_flag_takes_no_value_and_env_style_booleans() {
        let c = Config::try_parse_from(["loadtest", "--json"]).unwrap();
        assert!(c.json);
        let c = Config::try_parse_from(["loadtest", "--json", "1"]).unwrap();
        assert!(c.json);
        let c = Config::try_parse_from(["loadtest", "--json=no"]).unwrap();
        assert!(!c.json);
        assert!(!Config::try_parse_from(["loadtest"]).unwrap().json);
    }

    #[test]
    fn invalid_settings_are_refused_with_the_flag_named() {
        let parse = |args: &[&str]| {
            let mut v = vec!["loadtest"];
            v.extend_from_slice(args);
            Config::try_parse_from(v).unwrap().validate()
        };
        assert!(parse(&["--ramp-rate", "0"])
            .unwrap_err()
            .contains("--ramp-rate"));
        assert!(parse(&["--token-count", "2", "--tokens-per-client", "3"])
            .unwrap_err()
            .contains("--tokens-per-client"));
        assert!(parse(&["--bundle", "NOPE"]).unwrap_err().contains("NOPE"));
        assert!(parse(&["--publisher-url", "https://x"])
            .unwrap_err()
            .contains("http://"));
        assert!(Config::try_parse_from(["loadtest", "--subscription-mode", "x"]).is_err());
    }
}
