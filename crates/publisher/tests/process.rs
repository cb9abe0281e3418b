//! The real binary: it starts from environment variables, serves, and on SIGTERM stops the
//! simulator, flushes and exits 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

#[tokio::test]
async fn sigterm_flushes_and_exits_zero() {
    let broker = testkit::shared();
    let prefix = format!("{}.", testkit::unique_topic("proc"));
    let port = testkit::free_port().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_publisher"))
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", port.to_string())
        .env("KAFKA_BROKERS", broker.addr())
        .env("TOPIC_PREFIX", &prefix)
        .env("TRADE_INFO_TOPIC", format!("{prefix}trade-info"))
        .env("CREATE_TOPICS", "true")
        .env("PUBLISHER_SIM_RATE", "200")
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");

    // It created its topics and the boot-time simulator publishes.
    common::eventually(
        Duration::from_secs(30),
        "simulated events published",
        || {
            let http = http.clone();
            let url = format!("{base}/stats");
            async move {
                match http.get(url).send().await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .is_ok_and(|v| v["messagesPublished"].as_u64().unwrap_or(0) >= 50),
                    Err(_) => false,
                }
            }
        },
    )
    .await;
    let v: Value = http
        .get(format!("{base}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["isRunning"], true);
    assert_eq!(v["tokenIds"], json!(["BTC", "ETH", "SOL"]));

    let pid = child.id().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("publisher did not exit within 30 s of SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn invalid_configuration_exits_with_a_clear_message() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_publisher"))
        .env("PUBLISHER_MAX_RATE", "-1")
        .env("API_PORT", "0")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PUBLISHER_MAX_RATE"), "{err}");
}
