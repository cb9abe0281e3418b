//! Test-only: a private, real Kafka-API broker for each test suite.
//!
//! [`Broker::start`] launches `tansu` (memory storage) on a free loopback port, waits until
//! it answers metadata requests, and kills it when dropped. A watchdog shell kills the broker
//! too if the test process dies without running destructors, so no broker outlives its
//! suite. `ODIN_TEST_BROKERS=host:port` runs the same tests against an external broker
//! (Redpanda/Kafka) instead. [`shared`] gives every test of one binary the same broker.
//!
//! The tansu binary is found at `TANSU_BIN`, else in the cache `scripts/install-broker.sh`
//! installs into, else on `PATH`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use odin_events::{TopicNames, TopicSpec};
use odin_service::kafka::{partition_counts, KafkaConnector};
use rskafka::client::Client;
use tokio::process::{Child, Command};

/// The tansu version `scripts/install-broker.sh` installs.
pub const TANSU_VERSION: &str = "0.6.0";

/// Where the tansu binary is.
pub fn tansu_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return Ok(PathBuf::from(p));
    }
    let cache = std::env::var_os("ODIN_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("odin-stream"))
        })
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/odin-stream")));
    if let Some(c) = cache {
        // The script's default build first, then a memory-only build.
        for dir in [
            format!("tansu-{TANSU_VERSION}-dynostore_libsql"),
            format!("tansu-{TANSU_VERSION}"),
        ] {
            let p = c.join(dir).join("bin/tansu");
            if p.exists() {
                return Ok(p);
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("tansu");
            if p.exists() {
                return Ok(p);
            }
        }
    }
    bail!("tansu not found: run scripts/install-broker.sh (or set TANSU_BIN)")
}

/// A free loopback port (bound then released; tansu binds it right after).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// A broker for tests: a private tansu, or the external one in `ODIN_TEST_BROKERS`.
#[derive(Debug)]
pub struct Broker {
    addr: String,
    child: Option<Child>,
    port: u16,
    /// `None`: memory storage. `Some(dir)`: sqlite storage in `dir`, surviving restarts.
    data_dir: Option<PathBuf>,
}

impl Broker {
    /// Starts a private broker (or attaches to `ODIN_TEST_BROKERS`) and waits until it answers.
    pub async fn start() -> Result<Self> {
        if let Ok(ext) = std::env::var("ODIN_TEST_BROKERS") {
            if !ext.trim().is_empty() {
                let b = Self {
                    addr: ext.trim().to_owned(),
                    child: None,
                    port: 0,
                    data_dir: None,
                };
                b.wait_ready(Duration::from_secs(30)).await?;
                return Ok(b);
            }
        }
        let port = free_port()?;
        let mut b = Self {
            addr: format!("127.0.0.1:{port}"),
            child: None,
            port,
            data_dir: None,
        };
        b.spawn().await?;
        Ok(b)
    }

    /// Starts a private broker whose log lives in a sqlite file in `dir`, so it survives
    /// [`Self::stop`] and [`Self::restart`] (needs the `libsql` build of tansu that
    /// `scripts/install-broker.sh` installs).
    pub async fn start_persistent(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let mut b = Self {
            addr: format!("127.0.0.1:{port}"),
            child: None,
            port,
            data_dir: Some(dir.to_path_buf()),
        };
        b.spawn().await?;
        Ok(b)
    }

    async fn spawn(&mut self) -> Result<()> {
        let bin = tansu_bin()?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::env::temp_dir().join(format!("odin-testkit-tansu-{}.log", self.port));
        let log_file = std::fs::File::create(&log).with_context(|| format!("creating {log:?}"))?;
        // The watchdog shell kills tansu when this test process goes away, even if it
        // was killed before destructors ran.
        let script = r#"
            "$TANSU" broker --listener-url "$URL" --advertised-listener-url "$URL" \
                --storage-engine "$STORAGE" --cluster-id odin-test &
            child=$!
            trap 'kill $child 2>/dev/null; exit 0' TERM INT
            while kill -0 "$WATCH" 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.3; done
            kill $child 2>/dev/null
            wait $child
        "#;
        // sqlite paths are relative to the broker's working directory.
        let (storage, cwd) = match &self.data_dir {
            Some(dir) => ("sqlite://tansu.db", dir.clone()),
            None => ("memory://tansu/", std::env::temp_dir()),
        };
        let child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(cwd)
            .env("STORAGE", storage)
            .env("TANSU", &bin)
            .env("URL", &url)
            .env("WATCH", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            // Never SIGKILL the shell on drop: that would orphan tansu. Drop sends SIGTERM.
            .kill_on_drop(false)
            .spawn()
            .with_context(|| format!("starting {bin:?}"))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30))
            .await
            .with_context(|| format!("tansu did not come up; its log is {log:?}"))
    }

    /// Waits until the broker answers an unfiltered metadata request.
    async fn wait_ready(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let attempt = async {
                let c = self.connector().client().await?;
                partition_counts(&c).await?;
                anyhow::Ok(())
            };
            match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) if Instant::now() > deadline => return Err(e),
                Err(_) if Instant::now() > deadline => bail!("broker at {} not ready", self.addr),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// `host:port` of the broker.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn brokers(&self) -> Vec<String> {
        vec![self.addr.clone()]
    }

    /// A connector with a short request timeout, so failures surface quickly in tests.
    pub fn connector(&self) -> KafkaConnector {
        KafkaConnector::from_brokers(self.brokers()).with_request_timeout(Duration::from_secs(3))
    }

    pub async fn client(&self) -> Result<Client> {
        Ok(self.connector().client().await?)
    }

    /// Creates topics (skipping existing ones).
    pub async fn create_topics(&self, specs: &[TopicSpec]) -> Result<()> {
        let c = self.client().await?;
        odin_service::topics::ensure_topics(&c, specs).await?;
        Ok(())
    }

    /// Creates one topic.
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        self.create_topics(&[TopicSpec {
            name: name.to_owned(),
            partitions,
            retention_ms: 60_000,
        }])
        .await
    }

    /// Creates every topic of `names` (event topics, trade-info, aggregate-info, DLQs).
    pub async fn create_all(&self, names: &TopicNames) -> Result<()> {
        self.create_topics(&names.all_specs()).await
    }

    /// Every topic of `names`, like [`Broker::create_all`], with `partitions` partitions
    /// instead of the production count (dead-letter topics keep theirs): each partition is
    /// a fetch loop in every consumer, so tests keep them few.
    pub async fn create_all_with_partitions(
        &self,
        names: &TopicNames,
        partitions: i32,
    ) -> Result<()> {
        let specs: Vec<TopicSpec> = names
            .all_specs()
            .into_iter()
            .map(|mut s| {
                if s.partitions != odin_events::topics::DLQ_PARTITIONS {
                    s.partitions = partitions;
                }
                s
            })
            .collect();
        self.create_topics(&specs).await
    }

    /// Whether this is a private broker the kit can stop and restart.
    pub fn is_private(&self) -> bool {
        self.port != 0
    }

    /// Kills the broker (private brokers only); the port stays reserved for [`Self::restart`].
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            // SIGTERM reaches the watchdog shell, whose trap stops tansu; SIGKILL would
            // orphan it.
            terminate(&c);
            if tokio::time::timeout(Duration::from_secs(10), c.wait())
                .await
                .is_err()
            {
                c.kill().await.ok();
            }
            // bash's `kill` reached only the shell; make sure tansu is gone before a restart.
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(&self.addr).is_ok() {
                if Instant::now() > deadline {
                    bail!("broker at {} still answers after stop", self.addr);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Starts the broker again on the same port (memory storage comes back empty; a
    /// persistent broker comes back with its log).
    pub async fn restart(&mut self) -> Result<()> {
        if !self.is_private() {
            bail!("cannot restart an external broker");
        }
        self.stop().await?;
        self.spawn().await
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_ref() {
            terminate(c);
        }
    }
}

/// Sends SIGTERM to the watchdog shell (its trap kills tansu).
fn terminate(c: &Child) {
    if let Some(pid) = c.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One broker for every test of a test binary, started on first use with every default
/// topic created. The watchdog stops it when the binary exits.
///
/// Panics when the broker cannot start: it is only called from tests, where a panic is how
/// a test reports that its setup failed.
#[allow(clippy::expect_used)]
pub fn shared() -> &'static Broker {
    static SHARED: OnceLock<Broker> = OnceLock::new();
    SHARED.get_or_init(|| {
        // Each #[tokio::test] has its own runtime; start the broker on a private one so it
        // does not depend on the first test's runtime staying alive.
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("test runtime");
            rt.block_on(async {
                let b = match std::env::var("ODIN_TEST_BROKERS") {
                    Ok(ext) if !ext.trim().is_empty() => Broker::start().await,
                    _ => {
                        let port = free_port().expect("free port");
                        let mut b = Broker {
                            addr: format!("127.0.0.1:{port}"),
                            child: None,
                            port,
                            data_dir: None,
                        };
                        // The watchdog stops this broker when the test binary exits.
                        b.spawn().await.map(|()| b)
                    }
                }
                .expect("starting test broker");
                b.create_all(&TopicNames::default())
                    .await
                    .expect("creating topics");
                b
            })
        })
        .join()
        .expect("broker thread")
    })
}
