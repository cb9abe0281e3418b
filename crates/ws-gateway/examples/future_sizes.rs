//! Prints the size of one connection's session future (its task allocation), which every
//! idle connection pays for the whole time it is open.
//!
//! `cargo run --release -p ws-gateway --example future_sizes`

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ws_gateway::config::SlowClientPolicy;
use ws_gateway::fanout::Registry;
use ws_gateway::session::{self, SessionConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let config = ws_gateway::Config::try_parse_from(["ws-gateway"])?;
    let (a, _b) = tokio::io::duplex(64);
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        a,
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        None,
    )
    .await;
    let cfg = SessionConfig {
        client_queue: 1024,
        max_channels: 1000,
        msgs_per_sec: 20,
        ping_interval: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(75),
        slow_client: SlowClientPolicy::Disconnect,
        slow_client_timeout: Duration::from_secs(5),
        verifier: ws_gateway::auth::Verifier::disabled(),
        recoverer: Arc::new(ws_gateway::recovery::Recoverer::new(
            odin_service::KafkaConnector::new(&config.kafka),
            config.topics.names(),
            &config.recovery,
        )),
    };
    let registry = Registry::new(SlowClientPolicy::Disconnect, Duration::from_secs(5));
    let fut = session::run(
        ws,
        1,
        None,
        &cfg,
        &registry,
        tokio_util::sync::CancellationToken::new(),
    );
    println!("session future: {} bytes", std::mem::size_of_val(&fut));
    Ok(())
}
