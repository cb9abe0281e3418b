//! `loadtest`: puts the WebSocket gateway under realistic load and reports what users care
//! about — connections, deliveries expected vs received, loss, duplicates, reordering,
//! produce → client latency — and what it cost the gateway (CPU, memory from /proc).
//!
//! # Layout
//! - [`config`]: the one clap config (flags and `LOADTEST_*` / `KAFKA_*` environment).
//! - [`plan`]: tokens, each client's channels and subscribe frame, subscriber counts.
//! - [`client`]: one simulated WebSocket client (its own source address, small buffers).
//! - [`produce`]: envelopes to Kafka at a fixed rate, stamped with sequence and send time.
//! - [`publisher`]: driving the publisher's simulator over HTTP instead.
//! - [`sequence`]: per-channel loss / duplicate / reordering detection.
//! - [`histogram`]: lock-free latency histogram and percentiles.
//! - [`procfs`]: CPU seconds and RSS from /proc, the open-file limit.
//! - [`jwt`]: HS256 tokens for authenticated clients.
//! - [`stats`]: shared counters and the progress line.
//! - [`report`]: the final report (text and JSON) and its verdict.
//!
//! A run: ramp (clients connect at `--ramp-rate`, subscribe, wait for the confirmation) →
//! warm-up (producing, not counted) → measured window (`--duration`) → drain (at most
//! `--drain`, until every expected delivery arrived) → report.

pub mod client;
pub mod config;
pub mod histogram;
pub mod jwt;
pub mod plan;
pub mod procfs;
pub mod produce;
pub mod publisher;
pub mod report;
pub mod sequence;
pub mod stats;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use odin_service::KafkaConnector;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientCtx, ClientOutcome};
use crate::config::{Config, RESERVED_FILES};
use crate::plan::{Plan, Subscribers};
use crate::report::{GatewayCost, Latency, Report};
use crate::stats::{Phase, Stats};

pub use crate::config::Config as LoadtestConfig;

/// Connections per source address when `--source-ips` is 0.
const CONNECTIONS_PER_SOURCE_IP: usize = 10_000;

/// The gateway address of a `ws://host:port/path` URL; refuses anything not on loopback.
pub async fn resolve_server(url: &str) -> anyhow::Result<SocketAddr> {
    let uri: tokio_tungstenite::tungstenite::http::Uri = url
        .parse()
        .with_context(|| format!("--server {url:?} is not a URL"))?;
    if uri.scheme_str() != Some("ws") {
        bail!("--server {url:?}: only ws:// is supported");
    }
    let host = uri
        .host()
        .with_context(|| format!("--server {url:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4() && a.ip().is_loopback())
        .or_else(|| addrs.iter().find(|a| a.ip().is_loopback()))
        .copied()
        .with_context(|| {
            format!("--server {url:?} is not a loopback address; this tool only loads this machine")
        })
}

async fn check_loopback_brokers(brokers: &[String]) -> anyhow::Result<()> {
    for b in brokers {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(b.as_str())
            .await
            .with_context(|| format!("cannot resolve broker {b}"))?
            .collect();
        if !addrs.iter().any(|a| a.ip().is_loopback()) {
            bail!("broker {b} is not on loopback; this tool only loads this machine");
        }
    }
    Ok(())
}

/// `--create-topics`: every Odin topic, created where missing.
pub async fn create_topics(cfg: &Config) -> anyhow::Result<Vec<String>> {
    check_loopback_brokers(&cfg.kafka.brokers()).await?;
    let connector = KafkaConnector::new(&cfg.kafka);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match connector.client().await {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => {
                return Err(e).context("brokers did not answer within 30 s")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let specs = cfg.topics.names().all_specs();
    Ok(odin_service::topics::ensure_topics(&connector, &specs, cfg.topics.placement()).await?)
}

/// How many connections this process can open, and a note when that is below the target.
pub fn connection_budget(target: usize, open_files: Option<u64>) -> (usize, Option<String>) {
    match open_files {
        Some(limit) if target as u64 + RESERVED_FILES > limit => {
            let n = limit.saturating_sub(RESERVED_FILES) as usize;
            (
                n,
                Some(format!(
                    "requested {target} connections but this process may open only {limit} files (root cannot raise it here): running {n}"
                )),
            )
        }
        _ => (target, None),
    }
}

fn sample_gateway(pid: Option<u32>) -> Option<procfs::ProcSample> {
    pid.and_then(|p| procfs::sample(Some(p)).ok())
}

/// Runs one load test to the end (or until `cancel`) and reports.
pub async fn run(cfg: Config, cancel: CancellationToken) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut notes = Vec::new();
    let (attempted, note) = connection_budget(cfg.target, procfs::open_files_limit());
    notes.extend(note);
    let mut spec = cfg.plan_spec();
    spec.clients = attempted;
    let plan = Arc::new(Plan::new(&spec)?);
    let addr = resolve_server(&cfg.server).await?;
    let source_ips = if cfg.source_ips == 0 {
        attempted.div_ceil(CONNECTIONS_PER_SOURCE_IP).max(1)
    } else {
        cfg.source_ips
    };

    let stats = Arc::new(Stats::new());
    let subs = Arc::new(Subscribers::new(plan.channels.len()));
    let measuring = Arc::new(AtomicBool::new(false));

    // The producing side is set up (and checked) before any client connects.
    let producing = if cfg.publisher_url.is_some() {
        "publisher"
    } else if cfg.produce_rate > 0.0 {
        "kafka"
    } else {
        "none"
    };
    let publisher = match &cfg.publisher_url {
        Some(url) => Some(publisher::Publisher::new(url).await?),
        None => None,
    };
    let produce_stop = cancel.child_token();
    let mut producer = if producing == "kafka" {
        check_loopback_brokers(&cfg.kafka.brokers()).await?;
        Some(
            produce::ProducerThread::spawn(
                produce::ThreadSetup {
                    kafka: cfg.kafka.clone(),
                    topics: cfg.topics.names(),
                    linger: cfg.produce_linger,
                    plan: plan.clone(),
                    subs: subs.clone(),
                    stats: stats.clone(),
                    rate: cfg.produce_rate,
                    payload_bytes: cfg.payload_bytes,
                },
                produce_stop.clone(),
            )
            .await?,
        )
    } else {
        None
    };

    let progress_stop = CancellationToken::new();
    let progress = tokio::spawn(stats::progress(
        stats.clone(),
        attempted,
        std::time::Instant::now(),
        progress_stop.clone(),
    ));

    // Gateway memory is sampled every second; the max is kept.
    let gw_before = sample_gateway(cfg.gateway_pid);
    let rss_max = Arc::new(AtomicU64::new(gw_before.map_or(0, |s| s.rss_bytes)));
    let sampler = {
        let rss_max = rss_max.clone();
        let pid = cfg.gateway_pid;
        let stop = progress_stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Some(s) = sample_gateway(pid) {
                    rss_max.fetch_max(s.rss_bytes, Ordering::Relaxed);
                }
            }
        })
    };

    // Ramp.
    let ctx = Arc::new(ClientCtx {
        plan: plan.clone(),
        subs: subs.clone(),
        stats: stats.clone(),
        addr,
        url: cfg.server.clone(),
        source_ips,
        read_buffer: cfg.read_buffer,
        jwt: cfg.jwt_secret.clone().map(|s| (s, cfg.jwt_in)),
        connect_timeout: cfg.connect_timeout,
        measuring: measuring.clone(),
        produced: OnceLock::new(),
    });
    let clients_stop = CancellationToken::new();
    let mut handles = Vec::with_capacity(attempted);
    let ramp_start = Instant::now();
    let ramp_deadline = ramp_start + cfg.ramp_cap();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while handles.len() < attempted {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        if Instant::now() > ramp_deadline {
            notes.push(format!(
                "the ramp cap ({:?}) ran out after {} of {attempted} connections",
                cfg.ramp_cap(),
                handles.len()
            ));
            break;
        }
        let due =
            ((ramp_start.elapsed().as_secs_f64() * cfg.ramp_rate).ceil() as usize).min(attempted);
        while handles.len() < due {
            let idx = handles.len();
            handles.push(tokio::spawn(client::run_client(
                idx,
                ctx.clone(),
                clients_stop.clone(),
            )));
        }
    }
    let spawned = handles.len();
    // Every spawned client ends its setup within its connect timeout; wait for that.
    while !cancel.is_cancelled()
        && Instant::now() < ramp_deadline + cfg.connect_timeout
        && (Stats::get(&stats.subscribed) + stats.failed()) < spawned as u64
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_secs = ramp_start.elapsed().as_secs_f64();

    // Warm-up, then the measured window.
    stats.set_phase(Phase::Warmup);
    let gw_after_ramp = sample_gateway(cfg.gateway_pid);
    let measure_from = Instant::now() + cfg.warmup;
    let end = measure_from + cfg.duration;
    if let Some(p) = producer.as_mut() {
        p.start(measure_from, end);
    }
    if let Some(p) = &publisher {
        p.start(cfg.produce_rate, &plan.tokens).await?;
    }
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep_until(measure_from) => {}
    }
    stats.set_phase(Phase::Measure);
    measuring.store(true, Ordering::Relaxed);
    let gw_measure_start = sample_gateway(cfg.gateway_pid);
    let me_start = procfs::sample(None).ok();
    let machine_start = procfs::machine_cpu();
    let window_start = Instant::now();
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep_until(end) => {}
    }
    let measured_secs = window_start.elapsed().as_secs_f64();
    let gw_measure_end = sample_gateway(cfg.gateway_pid);
    let me_end = procfs::sample(None).ok();
    let machine_end = procfs::machine_cpu();
    measuring.store(false, Ordering::Relaxed);
    stats.set_phase(Phase::Drain);
    if let Some(p) = &publisher {
        if let Err(e) = p.stop().await {
            notes.push(format!("stopping the publisher failed: {e}"));
        }
    }
    let produced_seqs = match producer {
        Some(p) => p.finish().await,
        None => vec![0; plan.channels.len()],
    };
    let _ = ctx.produced.set(produced_seqs);

    // Drain: until every expected delivery arrived, at most --drain.
    let drain_deadline = Instant::now() + cfg.drain;
    if producing == "kafka" {
        while !cancel.is_cancelled()
            && Instant::now() < drain_deadline
            && Stats::get(&stats.measured_received) < Stats::get(&stats.expected)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else if producing == "publisher" {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(cfg.drain.min(Duration::from_secs(2))) => {}
        }
    }
    stats.set_phase(Phase::Done);
    let gw_end = sample_gateway(cfg.gateway_pid);

    clients_stop.cancel();
    let mut outcomes: Vec<ClientOutcome> = Vec::with_capacity(spawned);
    let joined = tokio::time::timeout(Duration::from_secs(15), async {
        for h in handles {
            outcomes.push(h.await.unwrap_or_default());
        }
    })
    .await;
    if joined.is_err() {
        notes.push("some clients did not finish closing within 15 s".into());
    }
    progress_stop.cancel();
    let _ = progress.await;
    let _ = sampler.await;

    let snapshot = stats.latency.snapshot();
    let expected = Stats::get(&stats.expected);
    let received = Stats::get(&stats.measured_received);
    let kafka = producing == "kafka";
    let events_measured = Stats::get(&stats.produced_measured);
    let gateway = cfg.gateway_pid.map(|pid| {
        let cpu = |s: Option<procfs::ProcSample>| s.map_or(0.0, |s| s.cpu_secs);
        let subscribed = Stats::get(&stats.subscribed);
        let before = gw_before.map_or(0, |s| s.rss_bytes);
        let after = gw_after_ramp.map_or(0, |s| s.rss_bytes);
        let window = (cpu(gw_measure_end) - cpu(gw_measure_start)).max(0.0);
        GatewayCost {
            pid,
            cpu_secs_window: window,
            cpu_cores_window: if measured_secs > 0.0 {
                window / measured_secs
            } else {
                0.0
            },
            cpu_secs_run: (cpu(gw_end) - cpu(gw_before)).max(0.0),
            rss_before_bytes: before,
            rss_after_ramp_bytes: after,
            rss_max_sampled_bytes: rss_max.load(Ordering::Relaxed).max(after),
            peak_rss_bytes: gw_end.map_or(0, |s| s.peak_rss_bytes),
            rss_per_connection_bytes: (subscribed > 0 && after > 0)
                .then(|| after.saturating_sub(before) / subscribed),
        }
    });
    if cfg.gateway_pid.is_some() && gw_end.is_none() {
        notes.push("the gateway pid could not be read from /proc".into());
    }
    let me = procfs::sample(None).ok();
    let mut report = Report {
        date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        server: cfg.server.clone(),
        plan: plan.describe(),
        source_ips,
        target: cfg.target,
        attempted: spawned,
        subscribed: Stats::get(&stats.subscribed),
        failed: stats.failed(),
        failures: stats
            .failures()
            .into_iter()
            .map(|(f, n)| (f.as_str().to_owned(), n))
            .collect(),
        disconnected: Stats::get(&stats.disconnected),
        subscription_mismatch: Stats::get(&stats.subscription_mismatch),
        ramp_secs,
        producing: producing.into(),
        produce_rate_target: cfg.produce_rate,
        produce_rate_achieved: if measured_secs > 0.0 {
            events_measured as f64 / measured_secs
        } else {
            0.0
        },
        events_produced: Stats::get(&stats.produced),
        events_measured,
        produce_failed: Stats::get(&stats.produce_failed),
        measured_secs,
        deliveries_expected: kafka.then_some(expected),
        deliveries_received: received,
        deliveries_per_sec: if measured_secs > 0.0 {
            received as f64 / measured_secs
        } else {
            0.0
        },
        lost: kafka.then(|| expected.saturating_sub(received)),
        duplicates: Stats::get(&stats.duplicates),
        out_of_order: Stats::get(&stats.out_of_order),
        unexpected: Stats::get(&stats.unexpected),
        bad_frames: Stats::get(&stats.bad_frames),
        error_frames: Stats::get(&stats.error_frames),
        missing_by_sequence: if kafka {
            outcomes.iter().map(|o| o.missing_by_sequence).sum()
        } else {
            0
        },
        latency_us: Latency {
            count: snapshot.count,
            p50: snapshot.quantile(0.5),
            p90: snapshot.quantile(0.9),
            p99: snapshot.quantile(0.99),
            p999: snapshot.quantile(0.999),
            max: snapshot.max,
            mean: snapshot.mean(),
        },
        gateway,
        loadtest_cpu_secs: me.map_or(0.0, |s| s.cpu_secs),
        loadtest_cores_window: match (me_start, me_end) {
            (Some(a), Some(b)) if measured_secs > 0.0 => (b.cpu_secs - a.cpu_secs) / measured_secs,
            _ => 0.0,
        },
        loadtest_peak_rss_bytes: me.map_or(0, |s| s.peak_rss_bytes),
        machine_cores_busy_window: match (machine_start, machine_end) {
            (Some(a), Some(b)) if measured_secs > 0.0 => (b.0 - a.0) / measured_secs,
            _ => 0.0,
        },
        machine_load_avg: procfs::load_average(),
        interrupted: cancel.is_cancelled(),
        notes,
        clean: false,
    };
    if producing == "publisher" {
        report.notes.push(
            "publisher mode: loss cannot be counted exactly; latency from event ms timestamps"
                .into(),
        );
    }
    report.clean = report.verdict();
    tracing::debug!(elapsed = ?started.elapsed(), "run finished");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_caps_at_the_open_file_limit() {
        assert_eq!(connection_budget(19_000, Some(20_000)), (19_000, None));
        let (n, note) = connection_budget(25_000, Some(20_000));
        assert_eq!(n, 20_000 - RESERVED_FILES as usize);
        assert!(note.unwrap().contains("25000"));
        assert_eq!(connection_budget(5, None), (5, None));
    }

    #[tokio::test]
    async fn servers_must_be_loopback_ws_urls() {
        assert!(resolve_server("ws://127.0.0.1:3002/ws")
            .await
            .unwrap()
            .ip()
            .is_loopback());
        assert!(resolve_server("ws://localhost:3002/ws").await.is_ok());
        assert!(resolve_server("http://127.0.0.1:3002").await.is_err());
        assert!(resolve_server("ws://10.1.2.3:3002/ws").await.is_err());
        assert!(check_loopback_brokers(&["127.0.0.1:9092".into()])
            .await
            .is_ok());
        assert!(check_loopback_brokers(&["192.168.1.1:9092".into()])
            .await
            .is_err());
    }
}
