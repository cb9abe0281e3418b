//! Whole loadtest runs against the real gateway (in-process, on 127.0.0.1:0) and a real
//! broker (testkit): a clean run counts every delivery exactly; a connection cap and a
//! gateway that goes away are reported, never hidden.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use odin_events::TopicSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

struct Gateway {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<Result<(), ws_gateway::GatewayError>>,
}

impl Gateway {
    /// A gateway on fresh one-partition topics under a unique prefix.
    async fn start(prefix: &str, extra: &[&str]) -> Self {
        let broker = testkit::shared();
        let names = odin_service::TopicArgs {
            topic_mode: odin_events::TopicMode::PerCategory,
            single_topic: "odin.events".into(),
            topic_prefix: prefix.into(),
            topic_replication_factor: 1,
            topic_min_insync_replicas: None,
        }
        .names();
        // One partition per topic keeps the gateway's fetch load small in tests.
        let specs: Vec<TopicSpec> = names
            .all_specs()
            .into_iter()
            .map(|s| TopicSpec { partitions: 1, ..s })
            .collect();
        broker.create_topics(&specs).await.unwrap();
        let brokers = broker.addr().to_owned();
        let mut args = vec![
            "ws-gateway",
            "--kafka-brokers",
            &brokers,
            "--topic-prefix",
            prefix,
            "--ws-addr",
            "127.0.0.1:0",
            "--fetch-max-wait-ms",
            "10",
            "--shutdown-grace",
            "2s",
        ];
        args.extend_from_slice(extra);
        let config = ws_gateway::Config::try_parse_from(args).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(ws_gateway::run(
            config,
            listener,
            stop.clone().cancelled_owned(),
        ));
        let gw = Self { addr, stop, task };
        let deadline = Instant::now() + Duration::from_secs(20);
        while gw.get("/health").await.0 != 200 {
            assert!(Instant::now() < deadline, "gateway never became healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gw
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(self.addr).await else {
            return (0, String::new());
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        if s.write_all(req.as_bytes()).await.is_err() {
            return (0, String::new());
        }
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw)).await;
        loadtest::publisher::parse_response(&raw).unwrap_or((0, String::new()))
    }

    async fn connections(&self) -> u64 {
        let body = self.get("/health").await.1;
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["connections"].as_u64())
            .unwrap_or(0)
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

fn loadtest_config(gw: &Gateway, prefix: &str, extra: &[&str]) -> loadtest::config::Config {
    let server = format!("ws://{}/ws", gw.addr);
    let brokers = testkit::shared().addr().to_owned();
    let mut args = vec![
        "loadtest",
        "--server",
        &server,
        "--kafka-brokers",
        &brokers,
        "--topic-prefix",
        prefix,
        "--ramp-rate",
        "500",
        "--warmup",
        "300ms",
        "--drain",
        "10s",
        "--connect-timeout",
        "10s",
    ];
    args.extend_from_slice(extra);
    let cfg = loadtest::config::Config::try_parse_from(args).unwrap();
    cfg.validate().unwrap();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_counts_every_delivery_exactly() {
    let prefix = format!("{}.", testkit::unique_topic("lt"));
    let gw = Gateway::start(&prefix, &[]).await;
    // 20 clients, each on 3 of 10 tokens in the TRADING bundle: 6 subscribers per channel.
    let cfg = loadtest_config(
        &gw,
        &prefix,
        &[
            "--target",
            "20",
            "--subscription-mode",
            "bundle",
            "--bundle",
            "TRADING",
            "--token-count",
            "10",
            "--tokens-per-client",
            "3",
            "--produce-rate",
            "150",
            "--duration",
            "2",
            "--gateway-pid",
            &std::process::id().to_string(),
        ],
    );
    let report = loadtest::run(cfg, CancellationToken::new()).await.unwrap();
    gw.stop().await;

    assert!(report.clean, "{}", report.render());
    assert_eq!(report.subscribed, 20);
    assert_eq!(report.failed, 0);
    assert!(report.events_measured > 100, "{}", report.render());
    // Every produced channel has exactly 6 subscribers, so expectations are exact.
    assert_eq!(report.deliveries_expected, Some(report.events_measured * 6));
    assert_eq!(report.deliveries_received, report.events_measured * 6);
    assert_eq!(report.lost, Some(0));
    assert_eq!(report.missing_by_sequence, 0);
    assert_eq!(report.latency_us.count, report.deliveries_received);
    assert!(report.latency_us.p50 > 0 && report.latency_us.p50 <= report.latency_us.max);
    let g = report.gateway.as_ref().unwrap();
    assert!(g.peak_rss_bytes > 0 && g.cpu_secs_run > 0.0);
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["lost"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_gateway_cap_are_reported_as_rejected() {
    let prefix = format!("{}.", testkit::unique_topic("lt"));
    let gw = Gateway::start(&prefix, &["--max-connections", "5"]).await;
    let cfg = loadtest_config(
        &gw,
        &prefix,
        &[
            "--target",
            "8",
            "--subscription-mode",
            "channels",
            "--tokens",
            "BTC",
            "--produce-rate",
            "0",
            "--duration",
            "0.5",
        ],
    );
    let report = loadtest::run(cfg, CancellationToken::new()).await.unwrap();
    gw.stop().await;
    assert!(!report.clean);
    assert_eq!(report.subscribed, 5, "{}", report.render());
    assert_eq!(report.failures.get("rejected_503"), Some(&3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_goes_away_is_never_a_clean_run() {
    let prefix = format!("{}.", testkit::unique_topic("lt"));
    let gw = Gateway::start(&prefix, &[]).await;
    let cfg = loadtest_config(
        &gw,
        &prefix,
        &[
            "--target",
            "10",
            "--subscription-mode",
            "channels",
            "--tokens",
            "BTC,ETH",
            "--produce-rate",
            "100",
            "--duration",
            "3",
        ],
    );
    let run = tokio::spawn(loadtest::run(cfg, CancellationToken::new()));
    // Once every client is connected, the gateway goes away mid-run.
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.connections().await < 10 {
        assert!(Instant::now() < deadline, "clients never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.stop().await;
    let report = run.await.unwrap().unwrap();
    assert!(!report.clean, "{}", report.render());
    assert_eq!(report.disconnected, 10, "{}", report.render());
}
