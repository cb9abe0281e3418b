//! Test-only: real Apache Kafka brokers for test suites.
//!
//! [`Broker::start`] formats a KRaft node in a fresh temporary folder and runs it on a free
//! loopback port through `scripts/kafka.sh` (which installs Kafka from Maven Central the first
//! time), waits until it answers, and stops it when dropped; [`Broker::cluster`] does the same
//! for several nodes, each of which a test can kill, stop and start on its own. A watchdog
//! shell stops every node if the test process dies without running destructors, so no
//! broker outlives its suite. `ODIN_TEST_BROKERS=host:port[,…]` runs the same tests against an
//! external cluster (a Redpanda, say) instead. [`shared`] gives every test of one binary the
//! same broker.
//!
//! One broker per test binary, not one per `scripts/test.sh` run: a JVM starts in 5–8 s here,
//! and a binary-private broker keeps `cargo test -p <crate>` self-contained.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use odin_events::{TopicNames, TopicSpec};
use odin_service::kafka::{partition_counts, KafkaConnector};
use odin_service::topics::Placement;
use rskafka::client::Client;
use tokio::process::{Child, Command};

/// How long a node may take to start (JVM start, log recovery, controller election).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The repository's `scripts/kafka.sh`.
pub fn kafka_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka.sh")
}

/// The repository's `scripts/kafka/bin` (the Apache command-line tools' wrappers).
pub fn kafka_bin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka/bin")
}

/// A free loopback port (bound then released; the broker binds it right after).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

fn external_brokers() -> Option<String> {
    std::env::var("ODIN_TEST_BROKERS")
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// One node of a private cluster.
#[derive(Debug)]
struct Node {
    id: usize,
    dir: PathBuf,
    addr: String,
    child: Option<Child>,
}

/// What a private cluster is started with.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// Nodes (each broker and controller); 1 unless set.
    pub nodes: usize,
    /// Extra broker settings (`key=value`), e.g. a short `log.retention.check.interval.ms`.
    pub configs: Vec<String>,
    /// Where the data lives; a fresh temporary folder (removed afterwards) when `None`.
    pub dir: Option<PathBuf>,
}

/// A broker for tests: a private Kafka, or the external one in `ODIN_TEST_BROKERS`.
#[derive(Debug)]
pub struct Broker {
    bootstrap: String,
    nodes: Vec<Node>,
    /// The data folder, and whether it is ours to remove.
    dir: Option<(PathBuf, bool)>,
}

impl Broker {
    /// Starts a private one-node Kafka (or attaches to `ODIN_TEST_BROKERS`) and waits until it
    /// answers.
    pub async fn start() -> Result<Self> {
        Self::start_with(BrokerOptions::default()).await
    }

    /// Starts a private Kafka whose data lives in `dir`, so that a later start on the same
    /// folder finds its log. (Every private broker keeps its log across [`Self::restart`].)
    pub async fn start_persistent(dir: &Path) -> Result<Self> {
        Self::start_with(BrokerOptions {
            dir: Some(dir.to_path_buf()),
            ..BrokerOptions::default()
        })
        .await
    }

    /// Starts a private cluster of `nodes` brokers (each also a controller).
    pub async fn cluster(nodes: usize) -> Result<Self> {
        Self::start_with(BrokerOptions {
            nodes,
            ..BrokerOptions::default()
        })
        .await
    }

    /// Starts a private cluster as `opts` says (or attaches to `ODIN_TEST_BROKERS`).
    pub async fn start_with(opts: BrokerOptions) -> Result<Self> {
        if let Some(ext) = external_brokers() {
            let b = Self {
                bootstrap: ext,
                nodes: Vec::new(),
                dir: None,
            };
            b.wait_ready(Duration::from_secs(30)).await?;
            return Ok(b);
        }
        let nodes = opts.nodes.max(1);
        let (dir, owned) = match opts.dir {
            Some(d) => (d, false),
            None => (
                std::env::temp_dir()
                    .join(unique_topic(&format!("odin-kafka-{}", std::process::id()))),
                true,
            ),
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir:?}"))?;
        let mut args = vec![
            "start".to_owned(),
            "--prepare-only".to_owned(),
            "--dir".to_owned(),
            dir.display().to_string(),
            "--nodes".to_owned(),
            nodes.to_string(),
            "--heap".to_owned(),
            std::env::var("ODIN_TEST_KAFKA_HEAP").unwrap_or_else(|_| "384m".to_owned()),
        ];
        // Tests drive services with manual clocks at fixed instants ahead of the wall clock
        // (2027), which Kafka 4 refuses by default (over an hour ahead).
        args.push("--config".to_owned());
        args.push("log.message.timestamp.after.max.ms=9223372036854775807".to_owned());
        for c in &opts.configs {
            args.push("--config".to_owned());
            args.push(c.clone());
        }
        let out = Command::new(kafka_sh())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .await
            .context("running scripts/kafka.sh")?;
        if !out.status.success() {
            bail!(
                "scripts/kafka.sh start --prepare-only failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let bootstrap = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let addrs: Vec<String> = bootstrap.split(',').map(str::to_owned).collect();
        if addrs.len() != nodes {
            bail!("scripts/kafka.sh printed {bootstrap:?} for {nodes} nodes");
        }
        let mut b = Self {
            bootstrap,
            nodes: addrs
                .into_iter()
                .enumerate()
                .map(|(i, addr)| Node {
                    id: i + 1,
                    dir: dir.join(format!("node-{}", i + 1)),
                    addr,
                    child: None,
                })
                .collect(),
            dir: Some((dir, owned)),
        };
        for id in 1..=nodes {
            b.spawn_node(id)?;
        }
        for id in 1..=nodes {
            b.wait_started(id).await?;
        }
        b.wait_ready(START_TIMEOUT).await?;
        Ok(b)
    }

    fn node_mut(&mut self, id: usize) -> Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id} in this cluster"))
    }

    fn spawn_node(&mut self, id: usize) -> Result<()> {
        let node = self.node_mut(id)?;
        let log = node.dir.join("server.log");
        let log_file = std::fs::File::create(&log).with_context(|| format!("creating {log:?}"))?;
        // The watchdog shell stops the node when this test process goes away, even if it was
        // killed before destructors ran. SIGTERM to the shell: a clean shutdown of the node;
        // SIGUSR1: SIGKILL it (a crash); SIGHUP: a clean shutdown, then the data folder (if
        // it is the kit's) is removed.
        let script = r#"
            "$KAFKA_SH" node "$NODE_DIR" &
            child=$!
            clean=
            trap 'kill -TERM $child 2>/dev/null' TERM INT
            trap 'kill -KILL $child 2>/dev/null' USR1
            trap 'clean=1; kill -TERM $child 2>/dev/null' HUP
            while kill -0 "$WATCH" 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.3; done
            kill -TERM $child 2>/dev/null
            for _ in $(seq 100); do kill -0 $child 2>/dev/null || break; sleep 0.1; done
            kill -KILL $child 2>/dev/null
            wait $child 2>/dev/null
            if [ -n "$CLEANUP" ] && { [ -n "$clean" ] || ! kill -0 "$WATCH" 2>/dev/null; }; then
                rm -rf "$CLEANUP"
            fi
        "#;
        let cleanup = match (&self.dir, id) {
            (Some((d, true)), 1) => d.display().to_string(),
            _ => String::new(),
        };
        let node = self.node_mut(id)?;
        let child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("KAFKA_SH", kafka_sh())
            .env("NODE_DIR", &node.dir)
            .env("WATCH", std::process::id().to_string())
            .env("CLEANUP", cleanup)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            // Never SIGKILL the shell on drop: that would orphan the JVM. Drop sends SIGTERM.
            .kill_on_drop(false)
            .spawn()
            .context("starting scripts/kafka.sh node")?;
        node.child = Some(child);
        Ok(())
    }

    /// Waits until node `id` logs that it started.
    async fn wait_started(&mut self, id: usize) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let node = self.node_mut(id)?;
        let log = node.dir.join("server.log");
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Kafka Server started") {
                return Ok(());
            }
            let exited = match node.child.as_mut() {
                Some(c) => c.try_wait()?.is_some(),
                None => true,
            };
            if exited || Instant::now() > deadline {
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                bail!(
                    "Kafka node {id} did not start (log {log:?}):\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the cluster answers an unfiltered metadata request.
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
                Err(_) if Instant::now() > deadline => {
                    bail!("broker at {} not ready", self.bootstrap)
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// `host:port[,host:port…]` of the brokers.
    pub fn addr(&self) -> &str {
        &self.bootstrap
    }

    pub fn brokers(&self) -> Vec<String> {
        self.bootstrap.split(',').map(str::to_owned).collect()
    }

    /// The client address of node `id` (1-based) of a private cluster.
    pub fn node_addr(&self, id: usize) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.addr.as_str())
    }

    /// Nodes of a private cluster (0 for an external one).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// A connector with a short request timeout, so failures surface quickly in tests.
    pub fn connector(&self) -> KafkaConnector {
        KafkaConnector::from_brokers(self.brokers()).with_request_timeout(Duration::from_secs(3))
    }

    pub async fn client(&self) -> Result<Client> {
        Ok(self.connector().client().await?)
    }

    /// Creates topics (skipping existing ones) with their configs, replicated on up to three
    /// nodes.
    pub async fn create_topics(&self, specs: &[TopicSpec]) -> Result<()> {
        let placement = Placement {
            replication_factor: self.nodes.len().clamp(1, 3) as i16,
            min_insync_replicas: None,
        };
        self.create_topics_placed(specs, placement).await
    }

    /// Creates topics (skipping existing ones) with `placement`.
    pub async fn create_topics_placed(
        &self,
        specs: &[TopicSpec],
        placement: Placement,
    ) -> Result<()> {
        odin_service::topics::ensure_topics(&self.connector(), specs, placement).await?;
        Ok(())
    }

    /// Creates one topic.
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        self.create_topics(&[TopicSpec {
            name: name.to_owned(),
            partitions,
            retention_ms: 3_600_000,
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

    /// Runs one of the Apache command-line tools (`kafka-configs.sh`, …) from
    /// `scripts/kafka/bin` and returns what it printed on stdout.
    pub async fn tool(&self, name: &str, args: &[&str]) -> Result<String> {
        let out = Command::new(kafka_bin_dir().join(name))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {name}"))?;
        if !out.status.success() {
            bail!(
                "{name} {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A topic's configs set on the topic itself, read back with `kafka-configs.sh --describe`.
    pub async fn topic_configs(
        &self,
        topic: &str,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        let out = self
            .tool(
                "kafka-configs.sh",
                &[
                    "--bootstrap-server",
                    self.addr(),
                    "--describe",
                    "--entity-type",
                    "topics",
                    "--entity-name",
                    topic,
                ],
            )
            .await?;
        // "  retention.ms=30000 sensitive=false synonyms={…}"
        Ok(out
            .lines()
            .filter(|l| l.starts_with("  "))
            .filter_map(|l| l.trim().split(' ').next())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    /// Sets topic configs with `kafka-configs.sh --alter`.
    pub async fn alter_topic_configs(&self, topic: &str, configs: &[(&str, &str)]) -> Result<()> {
        let list: Vec<String> = configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.tool(
            "kafka-configs.sh",
            &[
                "--bootstrap-server",
                self.addr(),
                "--alter",
                "--entity-type",
                "topics",
                "--entity-name",
                topic,
                "--add-config",
                &list.join(","),
            ],
        )
        .await?;
        Ok(())
    }

    /// Deletes a topic and waits until it is gone from metadata.
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        let c = self.client().await?;
        c.controller_client()?.delete_topic(topic, 10_000).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while partition_counts(&c).await?.contains_key(topic) {
            if Instant::now() > deadline {
                bail!("topic {topic} still listed 30 s after its deletion");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Whether this is a private broker the kit can stop and restart.
    pub fn is_private(&self) -> bool {
        !self.nodes.is_empty()
    }

    /// Stops node `id` cleanly (SIGTERM: Kafka's controlled shutdown) and waits until it is
    /// gone.
    pub async fn stop_node(&mut self, id: usize) -> Result<()> {
        self.end_node(id, "-TERM").await
    }

    /// Kills node `id` (SIGKILL: a crash, nothing flushed) and waits until it is gone.
    pub async fn kill_node(&mut self, id: usize) -> Result<()> {
        self.end_node(id, "-USR1").await
    }

    async fn end_node(&mut self, id: usize, signal: &str) -> Result<()> {
        let node = self.node_mut(id)?;
        let addr = node.addr.clone();
        if let Some(mut c) = node.child.take() {
            signal_shell(&c, signal);
            if tokio::time::timeout(Duration::from_secs(30), c.wait())
                .await
                .is_err()
            {
                signal_shell(&c, "-USR1");
                c.wait().await.ok();
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(&addr).is_ok() {
                if Instant::now() > deadline {
                    bail!("Kafka node {id} at {addr} still answers after stop");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Starts node `id` again on its port with its data, and waits until it has started.
    pub async fn start_node(&mut self, id: usize) -> Result<()> {
        if self.node_mut(id)?.child.is_some() {
            bail!("Kafka node {id} is running");
        }
        self.spawn_node(id)?;
        self.wait_started(id).await
    }

    /// Stops every node (private brokers only); ports and data stay for [`Self::restart`].
    pub async fn stop(&mut self) -> Result<()> {
        let ids: Vec<usize> = self.nodes.iter().map(|n| n.id).collect();
        for id in &ids {
            if let Some(c) = self.node_mut(*id)?.child.as_ref() {
                signal_shell(c, "-TERM");
            }
        }
        for id in ids {
            self.end_node(id, "-TERM").await?;
        }
        Ok(())
    }

    /// Starts every node again on the same ports; the log survives.
    pub async fn restart(&mut self) -> Result<()> {
        if !self.is_private() {
            bail!("cannot restart an external broker");
        }
        self.stop().await?;
        let ids: Vec<usize> = self.nodes.iter().map(|n| n.id).collect();
        for id in &ids {
            self.spawn_node(*id)?;
        }
        for id in ids {
            self.wait_started(id).await?;
        }
        self.wait_ready(START_TIMEOUT).await
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        for n in &self.nodes {
            if let Some(c) = n.child.as_ref() {
                signal_shell(c, "-HUP");
            }
        }
        // A folder of ours whose nodes are all stopped already: nothing will remove it.
        if let Some((dir, true)) = &self.dir {
            if self.nodes.iter().all(|n| n.child.is_none()) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Sends `signal` to a node's watchdog shell (whose traps pass it on to the JVM).
fn signal_shell(c: &Child, signal: &str) {
    if let Some(pid) = c.id() {
        let _ = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
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
                let b = Broker::start().await.expect("starting test broker");
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
