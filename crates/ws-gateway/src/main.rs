//! `ws-gateway`: parses the configuration, initialises telemetry, binds, runs.

use anyhow::Context;
use clap::Parser;
use ws_gateway::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    odin_service::telemetry::init_tracing(&config.telemetry);
    if let Err(e) = config.validate() {
        eprintln!("ws-gateway: {e}");
        std::process::exit(2);
    }
    let addr = odin_service::config::parse_listen_addr(&config.ws_addr)
        .map_err(anyhow::Error::msg)
        .context("WS_ADDR")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "listening for WebSocket clients");
    ws_gateway::run(config, listener, odin_service::shutdown::signal()).await?;
    Ok(())
}
