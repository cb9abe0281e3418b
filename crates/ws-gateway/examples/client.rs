//! A minimal gateway client: subscribes, then prints every frame it receives, one per line.
//!
//! `cargo run -p ws-gateway --example client -- --bundle TRADING --tokens BTC,ETH`
//! `cargo run -p ws-gateway --example client -- --channels 'BTC.trade,*.creation' --count 10`

use anyhow::{bail, Context};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Subscribe to the gateway and print what arrives.
#[derive(Debug, Parser)]
struct Args {
    /// Gateway WebSocket URL.
    #[arg(long, env = "WS_URL", default_value = "ws://localhost:3002/ws")]
    url: String,
    /// Bundle (TRADING, FULL_MARKET, COMMUNITY, PORTFOLIO, PRICE_ONLY, ALL); needs --tokens.
    #[arg(long)]
    bundle: Option<String>,
    /// Tokens for the bundle, comma separated (`*` = every token).
    #[arg(long, value_delimiter = ',')]
    tokens: Vec<String>,
    /// Explicit channels, comma separated (`BTC.trade`, `*.creation`).
    #[arg(long, value_delimiter = ',')]
    channels: Vec<String>,
    /// Exit after this many events (0 = never).
    #[arg(long, default_value_t = 0)]
    count: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.bundle.is_none() && args.channels.is_empty() {
        bail!("give --bundle with --tokens, or --channels");
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(&args.url)
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    let mut sub = json!({"type": "subscribe", "id": "cli"});
    if let Some(b) = &args.bundle {
        sub["bundle"] = json!(b);
        sub["tokens"] = json!(args.tokens);
    }
    if !args.channels.is_empty() {
        sub["channels"] = json!(args.channels);
    }
    ws.send(Message::text(sub.to_string())).await?;
    let mut events = 0u64;
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) => {
                println!("{t}");
                if t.starts_with("{\"type\":\"event\"") {
                    events += 1;
                    if args.count > 0 && events >= args.count {
                        break;
                    }
                }
            }
            Message::Close(c) => {
                eprintln!("closed by the gateway: {c:?}");
                break;
            }
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}
