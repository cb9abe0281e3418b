//! The aggregator binary: parse config, init telemetry, bind, run.

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = aggregator::Config::parse();
    odin_service::telemetry::init_tracing(&config.telemetry);
    let settings = config.validate()?;
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("binding AGGREGATOR_ADDR {}", settings.addr))?;
    aggregator::run(config, listener, odin_service::shutdown::signal()).await?;
    Ok(())
}
