//! `ws-gateway`: parses the configuration, initialises telemetry, binds, runs.

use anyhow::Context;
use clap::Parser;
use ws_gateway::Config;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    if let Err(e) = config.validate() {
        eprintln!("ws-gateway: {e}");
        std::process::exit(2);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if config.worker_threads > 0 {
        runtime.worker_threads(config.worker_threads);
    }
    runtime
        .build()
        .context("starting the tokio runtime")?
        .block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    odin_service::telemetry::init_tracing(&config.telemetry);
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
