//! Measures the gateway's resident memory per idle subscribed connection: reads the
//! gateway's VmRSS, opens N connections that each subscribe to a bundle over a few tokens,
//! reads VmRSS again, and prints the difference per connection. Loopback only; the
//! connections are spread over source addresses 127.0.0.x.
//!
//! `cargo run --release -p ws-gateway --example idle_footprint -- --pid $(pgrep -x ws-gateway) --connections 10000`

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// Gateway host:port.
    #[arg(long, default_value = "127.0.0.1:3002")]
    addr: SocketAddr,
    /// The gateway's process id (its /proc/PID/status is read).
    #[arg(long)]
    pid: u32,
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Distinct tokens; client i subscribes the bundle over tokens i, i+1, i+2 (mod this).
    #[arg(long, default_value_t = 100)]
    token_count: usize,
    #[arg(long, default_value = "TRADING")]
    bundle: String,
    /// Seconds to hold the connections open after measuring.
    #[arg(long, default_value_t = 2)]
    hold: u64,
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let before = rss_kib(args.pid)?;
    let started = Instant::now();
    let mut clients = Vec::with_capacity(args.connections);
    let url = format!("ws://{}/ws", args.addr);
    for i in 0..args.connections {
        // 127.0.0.2 … 127.0.0.201: a source address per 100 connections or so keeps every
        // (source, destination) pair far from the ephemeral port range's size.
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 200) as u8));
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(src, 0))?;
        let stream = socket
            .connect(args.addr)
            .await
            .with_context(|| format!("connection {i}"))?;
        let (mut ws, _) = tokio_tungstenite::client_async(
            url.as_str(),
            tokio_tungstenite::MaybeTlsStream::Plain(stream),
        )
        .await
        .with_context(|| format!("upgrade {i}"))?;
        let tokens: Vec<String> = (0..3)
            .map(|k| format!("T{}", (i + k) % args.token_count))
            .collect();
        ws.send(Message::text(
            json!({"type": "subscribe", "bundle": args.bundle, "tokens": tokens}).to_string(),
        ))
        .await?;
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"subscribed\"") => {}
            other => bail!("connection {i}: no subscription reply: {other:?}"),
        }
        clients.push(ws);
    }
    let elapsed = started.elapsed();
    // Let the allocator settle (freed handshake buffers) before reading.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(args.pid)?;
    let per = (after.saturating_sub(before)) as f64 / args.connections as f64;
    println!(
        "connections={} subscribed in {:.1}s; gateway VmRSS {} KiB -> {} KiB; {:.2} KiB per idle subscribed connection",
        args.connections,
        elapsed.as_secs_f64(),
        before,
        after,
        per
    );
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    for mut ws in clients {
        let _ = ws.close(None).await;
    }
    Ok(())
}
