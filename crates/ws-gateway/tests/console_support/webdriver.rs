//! A minimal W3C WebDriver client over plain HTTP/JSON: enough to drive Debian's chromium
//! through chromedriver (start, navigate, find, click, type, run a script, read the browser
//! log, take a screenshot). No WebDriver crate: the protocol is a handful of JSON calls.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// The key W3C WebDriver uses for element references.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromium and chromedriver, when both are installed.
#[derive(Debug, Clone)]
pub struct Browser {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

impl Browser {
    /// `CHROMIUM_BIN`/`CHROMEDRIVER_BIN`, else `chromium`/`chromedriver` on `PATH`.
    pub fn find() -> Option<Browser> {
        let chromium = from_env_or_path("CHROMIUM_BIN", &["chromium", "chromium-browser"])?;
        let chromedriver = from_env_or_path("CHROMEDRIVER_BIN", &["chromedriver"])?;
        Some(Browser {
            chromium,
            chromedriver,
        })
    }
}

fn from_env_or_path(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// A chromedriver process on a free loopback port, in its own process group with the
/// browsers it starts; the whole group is killed when this is dropped, so a failing (panicking)
/// test leaves no browser behind.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            kill_group(pid);
        }
    }
}

/// SIGKILL to the process group `pgid` (chromedriver and its chromium processes).
fn kill_group(pgid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A fresh browser profile directory, removed when dropped.
#[derive(Debug)]
pub struct Profile(pub PathBuf);

impl Profile {
    pub fn new(name: &str) -> Profile {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Profile(dir)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Driver {
    /// Starts chromedriver and waits (bounded) until it answers `/status` as ready.
    pub async fn start(chromedriver: &Path, log_path: &Path) -> Result<Driver> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()?;
        // A port picked then released can be taken by someone else before chromedriver binds
        // it; a few attempts make that race harmless.
        let mut last_err = anyhow!("chromedriver did not start");
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let mut child = Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log_path.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own group: chromium inherits it, and Drop kills the group.
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("spawning {}", chromedriver.display()))?;
            let base = format!("http://127.0.0.1:{port}");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = child.try_wait()? {
                    last_err = anyhow!(
                        "chromedriver exited with {status} (log: {})",
                        log_path.display()
                    );
                    break;
                }
                if let Ok(resp) = http.get(format!("{base}/status")).send().await {
                    if let Ok(v) = resp.json::<Value>().await {
                        if v["value"]["ready"] == json!(true) {
                            return Ok(Driver { child, base, http });
                        }
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    last_err = anyhow!("chromedriver on port {port} not ready within 20 s");
                    if let Some(pid) = child.id() {
                        kill_group(pid);
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Err(last_err)
    }

    /// Opens a headless chromium with a fresh profile and the browser log captured.
    pub async fn new_session(
        &self,
        chromium: &Path,
        user_data_dir: &Path,
        window: (u32, u32),
    ) -> Result<Session> {
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            // crashpad handlers start their own sessions and would outlive a killed group.
            "--disable-crash-reporter".to_owned(),
            "--disable-breakpad".to_owned(),
            format!("--window-size={},{}", window.0, window.1),
            format!("--user-data-dir={}", user_data_dir.display()),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "goog:chromeOptions": { "binary": chromium, "args": args }
                }
            }
        });
        let v = call(
            &self.http,
            reqwest::Method::POST,
            &format!("{}/session", self.base),
            Some(caps),
        )
        .await
        .context("creating a WebDriver session")?;
        let id = v["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no sessionId in {v}"))?;
        Ok(Session {
            http: self.http.clone(),
            base: format!("{}/session/{id}", self.base),
        })
    }

    /// Ends chromedriver and every browser it started (also done on drop).
    pub fn stop(self) {
        drop(self);
    }
}

/// One WebDriver call: the `value` of a successful answer, or the WebDriver error as text.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut req = http.request(method.clone(), url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let v: Value = resp
        .json()
        .await
        .with_context(|| format!("{method} {url}: answer is not JSON"))?;
    if !status.is_success() {
        bail!(
            "{method} {url}: HTTP {status}: {} {}",
            v["value"]["error"].as_str().unwrap_or("?"),
            v["value"]["message"].as_str().unwrap_or("")
        );
    }
    Ok(v["value"].clone())
}

/// One browser log entry (`goog:loggingPrefs`).
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub level: String,
    pub source: String,
    pub message: String,
}

/// An open browser window.
#[derive(Debug)]
pub struct Session {
    http: reqwest::Client,
    base: String,
}

impl Session {
    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        call(
            &self.http,
            reqwest::Method::POST,
            &format!("{}{path}", self.base),
            Some(body),
        )
        .await
    }

    async fn get(&self, path: &str) -> Result<Value> {
        call(
            &self.http,
            reqwest::Method::GET,
            &format!("{}{path}", self.base),
            None,
        )
        .await
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.post("/url", json!({ "url": url })).await.map(|_| ())
    }

    /// The first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> Result<String> {
        let v = self
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await
            .with_context(|| format!("finding {css:?}"))?;
        v[ELEMENT_KEY]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no element reference for {css:?} in {v}"))
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        let id = self.find(css).await?;
        self.post(&format!("/element/{id}/click"), json!({}))
            .await
            .with_context(|| format!("clicking {css:?}"))
            .map(|_| ())
    }

    /// Clears an input, then types `text` into it as keystrokes.
    pub async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let id = self.find(css).await?;
        self.post(&format!("/element/{id}/clear"), json!({}))
            .await?;
        if text.is_empty() {
            return Ok(());
        }
        self.post(&format!("/element/{id}/value"), json!({ "text": text }))
            .await
            .with_context(|| format!("typing into {css:?}"))
            .map(|_| ())
    }

    /// Sends keystrokes to whatever has focus (W3C key actions).
    pub async fn press_keys(&self, text: &str) -> Result<()> {
        let mut actions = Vec::new();
        for c in text.chars() {
            actions.push(json!({ "type": "keyDown", "value": c.to_string() }));
            actions.push(json!({ "type": "keyUp", "value": c.to_string() }));
        }
        self.post(
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        )
        .await
        .map(|_| ())
    }

    /// The rendered text of an element.
    pub async fn text(&self, css: &str) -> Result<String> {
        let id = self.find(css).await?;
        let v = self.get(&format!("/element/{id}/text")).await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Runs a synchronous script in the page; its return value.
    pub async fn execute(&self, script: &str, args: Value) -> Result<Value> {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
            .context("running a script")
    }

    /// The browser console and network log entries since the last call.
    pub async fn browser_log(&self) -> Result<Vec<LogEntry>> {
        // chromedriver's extension; W3C has no log command.
        let v = self.post("/se/log", json!({ "type": "browser" })).await?;
        let entries = v
            .as_array()
            .ok_or_else(|| anyhow!("browser log is not an array: {v}"))?;
        Ok(entries
            .iter()
            .map(|e| LogEntry {
                level: e["level"].as_str().unwrap_or_default().to_owned(),
                source: e["source"].as_str().unwrap_or_default().to_owned(),
                message: e["message"].as_str().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        let v = self.get("/screenshot").await?;
        let b64 = v
            .as_str()
            .ok_or_else(|| anyhow!("screenshot is not a string"))?;
        Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
    }

    /// Closes the window and ends the browser.
    pub async fn close(self) -> Result<()> {
        call(&self.http, reqwest::Method::DELETE, &self.base, None)
            .await
            .map(|_| ())
    }
}
