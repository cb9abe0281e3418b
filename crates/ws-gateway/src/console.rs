//! The live console: the page's assets, embedded in the binary, on a plain browser GET of
//! `/` (a WebSocket upgrade of `/` still reaches the stream), and `/stats`, the JSON figures
//! the page polls every second.
//!
//! `/stats` reuses what `/health` knows (connections, Kafka status, partitions) and reads the
//! counters from the process's Prometheus recorder, so the fan-out and consumer paths carry
//! nothing extra for it. The recorder is process-wide: with several gateways in one process
//! (tests), the counters are their sum.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use tokio::net::TcpStream;

use crate::http::Listener;
use crate::metrics as m;

/// The JSON figures the page polls.
pub const STATS_PATH: &str = "/stats";

const INDEX_HTML: &str = include_str!("../assets/console/index.html");
const CONSOLE_JS: &str = include_str!("../assets/console/console.js");
const CONSOLE_CSS: &str = include_str!("../assets/console/console.css");
/// `@odin-stream/client`'s browser build (generated from `clients/typescript` by its
/// `scripts/bundle.mjs --write`; `scripts/test-client.sh` fails when it is out of date).
const ODIN_CLIENT_JS: &str = include_str!("../assets/console/odin-client.js");

/// Scripts and styles only from this origin; the socket may point at another gateway.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The asset served at `path`: the page itself at `/`.
pub fn asset(path: &str) -> Option<Asset> {
    let (content_type, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX_HTML),
        "/console.js" => ("text/javascript; charset=utf-8", CONSOLE_JS),
        "/console.css" => ("text/css; charset=utf-8", CONSOLE_CSS),
        "/odin-client.js" => ("text/javascript; charset=utf-8", ODIN_CLIENT_JS),
        _ => return None,
    };
    Some(Asset { content_type, body })
}

/// Whether a plain (non-upgrade) GET of `path` is the console's.
pub fn serves(path: &str) -> bool {
    path == STATS_PATH || asset(path).is_some()
}

/// Answers a plain GET of one of the console's paths and closes the connection.
pub async fn respond(stream: &mut TcpStream, path: &str, shared: &Listener) {
    let (content_type, body, cache): (&str, Cow<'static, str>, &str) = if path == STATS_PATH {
        ("application/json", stats(shared).into(), "no-store")
    } else if let Some(a) = asset(path) {
        // Revalidated on every load: the page changes with the binary.
        (a.content_type, a.body.into(), "no-cache")
    } else {
        return;
    };
    let headers = format!(
        "Cache-Control: {cache}\r\nX-Content-Type-Options: nosniff\r\nContent-Security-Policy: {CSP}\r\n"
    );
    crate::http::write_response(stream, 200, "OK", content_type, &headers, &body).await;
}

/// The figures of `/stats` (field list in the README's console section).
pub fn stats(shared: &Listener) -> String {
    let k = shared.kafka.summary();
    let connected = shared.health.is_connected();
    let reason = if connected {
        None
    } else {
        Some(
            shared
                .health
                .reason()
                .unwrap_or_else(|| "kafka disconnected".into()),
        )
    };
    let text = odin_service::telemetry::prometheus().render();
    let figures = Figures::from_prometheus(&text);
    serde_json::json!({
        "connections": shared.open.load(Ordering::Relaxed),
        "channels": shared.registry.channel_count(),
        "kafka": {
            "connected": connected,
            "reason": reason,
            "partitions": k.partitions,
            "partitionsReady": k.ready,
            "missingTopics": k.missing_topics,
        },
        "lagTotal": k.lag,
        "lag": figures.lag_by_topic,
        "deliveriesTotal": figures.deliveries,
        "recordsTotal": figures.records,
        "recordsInvalidTotal": figures.invalid,
        "drops": figures.drops_by_reason,
        "dropsTotal": figures.drops_by_reason.values().sum::<u64>(),
        "timestamp": now_ms(),
    })
    .to_string()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The counters and gauges `/stats` shows, summed from a Prometheus text exposition.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Figures {
    pub deliveries: u64,
    pub records: u64,
    pub invalid: u64,
    pub drops_by_reason: BTreeMap<String, u64>,
    pub lag_by_topic: BTreeMap<String, i64>,
}

impl Figures {
    pub fn from_prometheus(text: &str) -> Figures {
        let mut f = Figures::default();
        for s in text.lines().filter_map(sample) {
            // Counters and lags are whole numbers; the exposition prints them as floats.
            let v = s.value.max(0.0).round() as u64;
            match s.name {
                m::DELIVERIES => f.deliveries += v,
                m::RECORDS_CONSUMED => f.records += v,
                m::RECORDS_INVALID => f.invalid += v,
                m::DROPPED => {
                    let reason = label(s.labels, "reason").unwrap_or("unknown");
                    *f.drops_by_reason.entry(reason.to_owned()).or_default() += v;
                }
                m::CONSUMER_LAG => {
                    let topic = label(s.labels, "topic").unwrap_or("unknown");
                    *f.lag_by_topic.entry(topic.to_owned()).or_default() += s.value.round() as i64;
                }
                _ => {}
            }
        }
        f
    }
}

#[derive(Debug, PartialEq)]
struct Sample<'a> {
    name: &'a str,
    labels: &'a str,
    value: f64,
}

/// One `name{labels} value` line; comments, blanks and unreadable lines give `None`.
fn sample(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line[open..].rfind('}')? + open;
            (&line[..open], &line[open + 1..close], &line[close + 1..])
        }
        None => {
            let sp = line.find(char::is_whitespace)?;
            (&line[..sp], "", &line[sp..])
        }
    };
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    value.is_finite().then_some(Sample {
        name,
        labels,
        value,
    })
}

/// The value of label `key` in `a="x",b="y"` (our label values hold no quotes).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_and_the_page_links_them() {
        let page = asset("/").unwrap();
        assert!(page.content_type.starts_with("text/html"));
        assert!(page.body.contains("console.js") && page.body.contains("console.css"));
        // The page's connection is the client library's, imported by the page's module.
        assert!(asset("/console.js")
            .unwrap()
            .body
            .contains("from './odin-client.js'"));
        assert!(asset("/odin-client.js")
            .unwrap()
            .body
            .contains("OdinClient = class"));
        assert!(asset("/console.css")
            .unwrap()
            .content_type
            .starts_with("text/css"));
        assert!(serves(STATS_PATH));
        assert!(!serves("/ws") && !serves("/health") && asset("/../Cargo.toml").is_none());
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for path in ["/", "/console.js", "/console.css", "/odin-client.js"] {
            let body = asset(path).unwrap().body;
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{path}"
            );
        }
    }

    #[test]
    fn figures_sum_series_by_topic_and_reason() {
        let text = "\
# HELP ws_deliveries_total Event frames queued to clients
# TYPE ws_deliveries_total counter
ws_deliveries_total 42
ws_kafka_records_consumed_total{topic=\"odin.trades\"} 10
ws_kafka_records_consumed_total{topic=\"odin.liquidity\"} 5
ws_kafka_records_invalid_total{topic=\"odin.trades\"} 1
ws_messages_dropped_total{reason=\"queue_full\"} 3
ws_messages_dropped_total{reason=\"slow_consumer\"} 0
ws_kafka_consumer_lag{topic=\"odin.trades\",partition=\"0\"} 4
ws_kafka_consumer_lag{topic=\"odin.trades\",partition=\"1\"} 2
ws_kafka_consumer_lag{partition=\"0\",topic=\"odin.social\"} 0
ws_fanout_latency_seconds_bucket{le=\"0.001\"} 7
garbage line
ws_connections NaN
";
        let f = Figures::from_prometheus(text);
        assert_eq!(f.deliveries, 42);
        assert_eq!(f.records, 15);
        assert_eq!(f.invalid, 1);
        assert_eq!(f.drops_by_reason["queue_full"], 3);
        assert_eq!(f.drops_by_reason.values().sum::<u64>(), 3);
        assert_eq!(f.lag_by_topic["odin.trades"], 6);
        assert_eq!(f.lag_by_topic["odin.social"], 0);
        assert_eq!(f.lag_by_topic.len(), 2);
    }

    #[test]
    fn sample_lines() {
        assert_eq!(
            sample("a_total{x=\"1\"} 2.5"),
            Some(Sample {
                name: "a_total",
                labels: "x=\"1\"",
                value: 2.5
            })
        );
        assert_eq!(sample("b 3").map(|s| s.value), Some(3.0));
        assert_eq!(sample("# TYPE b counter"), None);
        assert_eq!(sample("c{x=\"1\"}"), None);
        assert_eq!(label("topic=\"t\",partition=\"3\"", "partition"), Some("3"));
        assert_eq!(label("topic=\"t\"", "reason"), None);
    }
}
