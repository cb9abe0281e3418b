//! `loadtest` binary: parses the config, initialises logging, runs, prints the report.

use std::process::ExitCode;

use clap::Parser;
use loadtest::config::Config;
use odin_service::shutdown::{self, Shutdown};

fn main() -> ExitCode {
    let cfg = Config::parse();
    odin_service::telemetry::init_tracing(&cfg.telemetry);
    if let Err(e) = cfg.validate() {
        eprintln!("loadtest: invalid configuration: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadtest: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        if cfg.create_topics {
            return match loadtest::create_topics(&cfg).await {
                Ok(created) => {
                    eprintln!("topics ready ({} created)", created.len());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("loadtest: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        let json = cfg.json;
        let stop = Shutdown::on(shutdown::signal());
        match loadtest::run(cfg, stop.token()).await {
            Ok(report) => {
                if json {
                    eprint!("{}", report.render());
                    println!("{}", report.to_json());
                } else {
                    print!("{}", report.render());
                }
                if report.clean {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("loadtest: {e:#}");
                ExitCode::from(2)
            }
        }
    })
}
