//! The publisher binary: parse config, init telemetry, bind, run.

use anyhow::Context;
use clap::Parser;
use publisher::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    odin_service::telemetry::init_tracing(&config.telemetry);
    if let Err(e) = config.validate() {
        eprintln!("publisher: invalid configuration: {e}");
        std::process::exit(2);
    }
    let addr = config.listen_addr().map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    publisher::run(config, listener, odin_service::shutdown::signal()).await?;
    Ok(())
}
