//! Multiplexed fetching: the fetches of many partition consumers sent as one Fetch request
//! per broker, on one connection per broker.
//!
//! A reader of every partition (the gateway reads 96) with one connection and one request
//! per partition makes the broker answer 96 requests per fetch cycle, and holds 96 waiting
//! fetches in its purgatory; one request per broker lane carries them all, and the broker
//! answers it as soon as any of its partitions has data. This module keeps each partition consumer's own logic (position, resets, retries) and only
//! batches the wire: a consumer asks [`FetchMux::fetch`] for its partition, a per-broker
//! lane gathers every fetch waiting at that moment into one request, and splits the answer.
//!
//! Requests use rskafka's own protocol types and messenger (its `unstable-fuzzing` feature
//! exposes them), so records are decoded exactly as rskafka's partition client decodes them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rskafka::chrono::{LocalResult, TimeZone, Utc};
use rskafka::client::error::{
    Error as RsError, ProtocolError, RequestContext, ServerErrorResponse,
};
use rskafka::messenger::Messenger;
use rskafka::protocol::messages::{
    FetchRequest, FetchRequestPartition, FetchRequestTopic, FetchResponse, IsolationLevel,
    MetadataRequest,
};
use rskafka::protocol::primitives::{Int32, Int64, String_};
use rskafka::protocol::record::{ControlBatchOrRecords, RecordBatch};
use rskafka::record::{Record, RecordAndOffset};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::consumer::FetchSettings;

/// What a fetch answers: the records at and after the offset, and the high-watermark.
pub type FetchResult = Result<(Vec<RecordAndOffset>, i64), RsError>;

/// Largest response accepted (rskafka's default).
const MAX_MESSAGE_SIZE: usize = 100 * 1024 * 1024;
/// Bytes one answer may carry at most (well under [`MAX_MESSAGE_SIZE`]).
const MAX_RESPONSE_BYTES: i64 = 32 * 1024 * 1024;
/// Partitions per request at most; more wait for the next round.
const MAX_PARTITIONS_PER_REQUEST: usize = 1024;
/// Fetches queued per lane: about one per partition consumer; senders wait when it is full.
const QUEUE: usize = 4096;
/// Longest a lane waits for the partitions of its previous request to ask again.
const GATHER: Duration = Duration::from_millis(1);
/// Metadata is not asked for again sooner than this for a partition it did not list.
const METADATA_MIN_INTERVAL: Duration = Duration::from_millis(500);

struct Pending {
    topic: String,
    partition: i32,
    offset: i64,
    reply: oneshot::Sender<FetchResult>,
}

impl Pending {
    fn fail(self, e: RsError) {
        let _ = self.reply.send(Err(e));
    }
}

/// Hands partition fetches to per-broker lanes; cheap to clone.
#[derive(Debug, Clone)]
pub struct FetchMux {
    tx: mpsc::Sender<Pending>,
}

fn stopped() -> RsError {
    RsError::InvalidResponse("fetch multiplexer stopped".into())
}

impl FetchMux {
    /// Starts the router (it finds each partition's leader) on the current runtime; every
    /// task it starts ends with `cancel`.
    /// `lanes` connections per broker (at least 1) share its partitions round-robin: the
    /// broker serves a connection's requests one at a time but different connections in
    /// parallel, so a few lanes keep one slow partition read from delaying all the others.
    pub fn spawn(
        bootstrap: Vec<String>,
        settings: FetchSettings,
        lanes: usize,
        cancel: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(route(bootstrap, settings, lanes.max(1), rx, cancel));
        Self { tx }
    }

    /// Fetches `topic`/`partition` from `offset`, in the next request to its leader.
    /// Errors are those of rskafka's partition client (`ServerError` with the partition's
    /// error code and fetch state, or a transport error), so callers handle both alike.
    pub async fn fetch(&self, topic: &str, partition: i32, offset: i64) -> FetchResult {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending {
                topic: topic.to_owned(),
                partition,
                offset,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// A protocol connection to `addr` with API versions agreed, as `client_id`, within `timeout`.
pub(crate) async fn connect(
    addr: &str,
    client_id: &str,
    timeout: Duration,
) -> Result<Messenger<TcpStream>, RsError> {
    let attempt = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| RsError::InvalidResponse(format!("connect to {addr}: {e}")))?;
        // Small requests and answers, latency first.
        let _ = stream.set_nodelay(true);
        let mut m = Messenger::new(stream, MAX_MESSAGE_SIZE, Arc::from(client_id));
        m.sync_versions()
            .await
            .map_err(|e| RsError::InvalidResponse(format!("api versions from {addr}: {e}")))?;
        Ok(m)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(RsError::Timeout))
}

type Leaders = HashMap<(String, i32), i32>;

/// Partition leaders and broker addresses from any bootstrap broker.
async fn metadata(
    bootstrap: &[String],
    timeout: Duration,
) -> Result<(Leaders, HashMap<i32, String>), RsError> {
    let mut last = RsError::InvalidResponse("no bootstrap broker".into());
    for addr in bootstrap {
        let m = match connect(addr, "odin-fetch-mux", timeout).await {
            Ok(m) => m,
            Err(e) => {
                last = e;
                continue;
            }
        };
        // All topics: naming one that does not exist would create it on some brokers.
        let req = MetadataRequest {
            topics: None,
            allow_auto_topic_creation: None,
        };
        let resp = match tokio::time::timeout(timeout, m.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                last = RsError::InvalidResponse(format!("metadata from {addr}: {e}"));
                continue;
            }
            Err(_) => {
                last = RsError::Timeout;
                continue;
            }
        };
        let brokers = resp
            .brokers
            .into_iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.0, b.port.0)))
            .collect();
        let mut leaders = HashMap::new();
        for t in resp.topics.into_iter().filter(|t| t.error.is_none()) {
            for p in t.partitions {
                if p.error.is_none() && p.leader_id.0 >= 0 {
                    leaders.insert((t.name.0.clone(), p.partition_index.0), p.leader_id.0);
                }
            }
        }
        return Ok((leaders, brokers));
    }
    Err(last)
}

fn partition_error(
    topic: &str,
    partition: i32,
    e: ProtocolError,
    response: Option<ServerErrorResponse>,
) -> RsError {
    RsError::ServerError {
        protocol_error: e,
        error_message: None,
        request: RequestContext::Partition(topic.to_owned(), partition),
        response,
        is_virtual: false,
    }
}

/// Sends each fetch to the lane of its partition's leader, learning leaders from metadata
/// when a partition is new or a lane reported its leader stale.
async fn route(
    bootstrap: Vec<String>,
    settings: FetchSettings,
    lanes_per_broker: usize,
    mut rx: mpsc::Receiver<Pending>,
    cancel: CancellationToken,
) {
    let mut leaders: Leaders = HashMap::new();
    let mut addrs: HashMap<i32, String> = HashMap::new();
    // (leader, slot) → lane; a partition keeps its slot for life, slots dealt round-robin.
    let mut lanes: HashMap<(i32, usize), (String, mpsc::Sender<Pending>)> = HashMap::new();
    let mut slots: HashMap<(String, i32), usize> = HashMap::new();
    let (stale_tx, mut stale_rx) = mpsc::channel::<(String, i32)>(QUEUE);
    let mut last_refresh: Option<Instant> = None;
    loop {
        let p = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(key) = stale_rx.recv() => {
                leaders.remove(&key);
                continue;
            }
            p = rx.recv() => match p {
                Some(p) => p,
                None => break,
            },
        };
        let key = (p.topic.clone(), p.partition);
        if !leaders.contains_key(&key)
            && last_refresh.is_none_or(|t| t.elapsed() >= METADATA_MIN_INTERVAL)
        {
            last_refresh = Some(Instant::now());
            let refreshed = tokio::select! {
                _ = cancel.cancelled() => break,
                r = metadata(&bootstrap, settings.request_timeout) => r,
            };
            match refreshed {
                Ok((l, a)) => {
                    debug!(
                        partitions = l.len(),
                        brokers = a.len(),
                        "fetch leaders refreshed"
                    );
                    leaders = l;
                    addrs = a;
                }
                Err(e) => {
                    p.fail(e);
                    continue;
                }
            }
        }
        let Some(&leader) = leaders.get(&key) else {
            p.fail(partition_error(
                &key.0,
                key.1,
                ProtocolError::UnknownTopicOrPartition,
                None,
            ));
            continue;
        };
        let Some(addr) = addrs.get(&leader) else {
            p.fail(partition_error(
                &key.0,
                key.1,
                ProtocolError::LeaderNotAvailable,
                None,
            ));
            continue;
        };
        let next = slots.len();
        let slot = *slots.entry(key).or_insert(next % lanes_per_broker);
        // A broker that moved (new address for its id) gets a new lane; the old one ends
        // when its sender is dropped here.
        if lanes.get(&(leader, slot)).is_some_and(|(at, _)| at != addr) {
            lanes.remove(&(leader, slot));
        }
        let (_, lane) = lanes.entry((leader, slot)).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(lane(
                addr.clone(),
                settings,
                rx,
                stale_tx.clone(),
                cancel.clone(),
            ));
            (addr.clone(), tx)
        });
        if let Err(mpsc::error::SendError(p)) = lane.send(p).await {
            lanes.remove(&(leader, slot));
            p.fail(stopped());
        }
    }
}

/// One broker's connection: gathers every fetch waiting, sends them as one request, splits
/// the answer. One request at a time: a broker answers a connection's requests in order.
async fn lane(
    addr: String,
    settings: FetchSettings,
    mut rx: mpsc::Receiver<Pending>,
    stale: mpsc::Sender<(String, i32)>,
    cancel: CancellationToken,
) {
    let mut conn: Option<Messenger<TcpStream>> = None;
    // Every partition this lane has fetched for.
    let mut known: HashSet<(String, i32)> = HashSet::new();
    let limit =
        settings.request_timeout + Duration::from_millis(settings.max_wait_ms.max(0) as u64);
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            p = rx.recv() => match p {
                Some(p) => p,
                None => break,
            },
        };
        // Consumers answered by the previous round ask again within microseconds: wait for
        // every partition this lane has served (briefly), so none misses this request and
        // then waits out a whole long-poll for the next one.
        let mut round = Round::default();
        round.add(first, &mut known);
        let deadline = tokio::time::Instant::now() + GATHER;
        while round.len() < known.len() && round.len() < MAX_PARTITIONS_PER_REQUEST {
            let p = match rx.try_recv() {
                Ok(p) => p,
                Err(_) => tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(deadline) => break,
                    p = rx.recv() => match p {
                        Some(p) => p,
                        None => break,
                    },
                },
            };
            round.add(p, &mut known);
        }
        let batch = round.into_batch();
        if batch.is_empty() {
            continue;
        }
        let m = match conn.take() {
            Some(m) => m,
            None => match connect(&addr, "odin-fetch-mux", settings.request_timeout).await {
                Ok(m) => m,
                Err(e) => {
                    warn!(broker = %addr, error = %e, "fetch connection failed");
                    forget_leaders(&batch, &stale);
                    for p in batch {
                        p.fail(RsError::InvalidResponse(format!(
                            "fetch connection to {addr}: {e}"
                        )));
                    }
                    continue;
                }
            },
        };
        let req = request(&batch, settings);
        let answer = tokio::select! {
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(limit, m.request(req)) => r,
        };
        match answer {
            Ok(Ok(resp)) => {
                conn = Some(m);
                dispatch(resp, batch, &stale);
            }
            Ok(Err(e)) => {
                warn!(broker = %addr, error = %e, "multiplexed fetch failed");
                forget_leaders(&batch, &stale);
                for p in batch {
                    p.fail(RsError::InvalidResponse(format!("fetch from {addr}: {e}")));
                }
            }
            Err(_) => {
                warn!(broker = %addr, ?limit, "multiplexed fetch timed out");
                forget_leaders(&batch, &stale);
                for p in batch {
                    p.fail(RsError::Timeout);
                }
            }
        }
    }
}

/// A broker that cannot be reached may have lost its partitions' leadership (a cluster
/// moves it to another broker): let the router look the leaders up again.
fn forget_leaders(batch: &[Pending], stale: &mpsc::Sender<(String, i32)>) {
    for p in batch {
        let _ = stale.try_send((p.topic.clone(), p.partition));
    }
}

/// The fetches gathered for one request, one per partition: a later ask for a partition
/// replaces the earlier one (a request names each partition once).
#[derive(Default)]
struct Round(HashMap<(String, i32), Pending>);

impl Round {
    /// Adds `p`, and its partition to those the lane has served (`known`).
    fn add(&mut self, p: Pending, known: &mut HashSet<(String, i32)>) {
        let key = (p.topic.clone(), p.partition);
        if !known.contains(&key) {
            known.insert(key.clone());
        }
        self.0.insert(key, p);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// The fetches still awaited: those nobody waits for any more (a consumer timed out)
    /// are dropped.
    fn into_batch(self) -> Vec<Pending> {
        self.0
            .into_values()
            .filter(|p| !p.reply.is_closed())
            .collect()
    }
}

fn request(batch: &[Pending], settings: FetchSettings) -> FetchRequest {
    let max = Int32(settings.max_bytes.max(1));
    let mut topics: Vec<FetchRequestTopic> = Vec::new();
    for p in batch {
        let part = FetchRequestPartition {
            partition: Int32(p.partition),
            fetch_offset: Int64(p.offset),
            partition_max_bytes: max,
        };
        match topics.iter_mut().find(|t| t.topic.0 == p.topic) {
            Some(t) => t.partitions.push(part),
            None => topics.push(FetchRequestTopic {
                topic: String_(p.topic.clone()),
                partitions: vec![part],
            }),
        }
    }
    // The whole answer may hold every partition's share: a total of one partition's share
    // would starve the partitions after the first busy one.
    let total = (i64::from(max.0) * batch.len() as i64).min(MAX_RESPONSE_BYTES);
    FetchRequest {
        replica_id: Int32(-1),
        max_wait_ms: Int32(settings.max_wait_ms.max(0)),
        min_bytes: Int32(1),
        max_bytes: Some(Int32(i32::try_from(total).unwrap_or(i32::MAX))),
        // As rskafka's partition client: only committed records.
        isolation_level: Some(IsolationLevel::ReadCommitted),
        topics,
    }
}

fn dispatch(resp: FetchResponse, batch: Vec<Pending>, stale: &mpsc::Sender<(String, i32)>) {
    let mut parts = HashMap::new();
    for t in resp.responses {
        for p in t.partitions {
            parts.insert((t.topic.0.clone(), p.partition_index.0), p);
        }
    }
    for p in batch {
        let Some(part) = parts.remove(&(p.topic.clone(), p.partition)) else {
            let e = RsError::InvalidResponse(format!(
                "fetch answer has no data for {}/{}",
                p.topic, p.partition
            ));
            p.fail(e);
            continue;
        };
        let hwm = part.high_watermark.0;
        let result = match part.error_code {
            Some(e) => {
                if matches!(
                    e,
                    ProtocolError::NotLeaderOrFollower
                        | ProtocolError::LeaderNotAvailable
                        | ProtocolError::UnknownTopicOrPartition
                        | ProtocolError::FencedLeaderEpoch
                ) {
                    let _ = stale.try_send((p.topic.clone(), p.partition));
                }
                Err(partition_error(
                    &p.topic,
                    p.partition,
                    e,
                    Some(ServerErrorResponse::PartitionFetchState {
                        high_watermark: hwm,
                        last_stable_offset: part.last_stable_offset.map(|x| x.0),
                    }),
                ))
            }
            None => records(part.records.0, p.offset).map(|r| (r, hwm)),
        };
        let _ = p.reply.send(result);
    }
}

/// The records of `batches` at or after `offset` (a broker answers whole batches), decoded
/// as rskafka's partition client decodes them; control batches are skipped.
fn records(batches: Vec<RecordBatch>, offset: i64) -> Result<Vec<RecordAndOffset>, RsError> {
    let mut out = Vec::new();
    for batch in batches {
        let ControlBatchOrRecords::Records(records) = batch.records else {
            continue;
        };
        out.reserve(records.len());
        for r in records {
            let at = batch.base_offset + i64::from(r.offset_delta);
            if at < offset {
                continue;
            }
            let ms = batch
                .first_timestamp
                .checked_add(r.timestamp_delta)
                .ok_or_else(|| {
                    RsError::InvalidResponse(format!(
                        "timestamp overflow (first {}, delta {})",
                        batch.first_timestamp, r.timestamp_delta
                    ))
                })?;
            let timestamp = match Utc.timestamp_millis_opt(ms) {
                LocalResult::Single(t) => t,
                _ => {
                    return Err(RsError::InvalidResponse(format!(
                        "not a valid timestamp ({ms})"
                    )))
                }
            };
            out.push(RecordAndOffset {
                record: Record {
                    key: r.key,
                    value: r.value,
                    headers: r.headers.into_iter().map(|h| (h.key, h.value)).collect(),
                    timestamp,
                },
                offset: at,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> (Pending, oneshot::Receiver<FetchResult>) {
        let (reply, rx) = oneshot::channel();
        (
            Pending {
                topic: topic.into(),
                partition,
                offset,
                reply,
            },
            rx,
        )
    }

    #[test]
    fn a_round_keeps_the_newest_ask_and_drops_abandoned_ones() {
        let (a_old, _a_old_rx) = pending("a", 0, 1);
        let (b, _b_rx) = pending("b", 0, 7);
        let (gone, gone_rx) = pending("c", 3, 0);
        drop(gone_rx);
        let (a_new, _a_new_rx) = pending("a", 0, 5);
        let mut known = HashSet::new();
        let mut round = Round::default();
        for p in [a_old, b, gone, a_new] {
            round.add(p, &mut known);
        }
        assert_eq!(round.len(), 3);
        assert_eq!(known.len(), 3, "the abandoned partition was still served");
        let mut kept: Vec<(String, i32, i64)> = round
            .into_batch()
            .into_iter()
            .map(|p| (p.topic, p.partition, p.offset))
            .collect();
        kept.sort();
        assert_eq!(kept, [("a".into(), 0, 5), ("b".into(), 0, 7)]);
    }

    #[test]
    fn one_request_names_each_topic_once_with_all_its_partitions() {
        let asks: Vec<_> = [("a", 0, 10), ("b", 2, 20), ("a", 1, 11)]
            .into_iter()
            .map(|(t, p, o)| pending(t, p, o))
            .collect();
        let batch: Vec<Pending> = asks.into_iter().map(|(p, _)| p).collect();
        let settings = FetchSettings {
            max_wait_ms: 3,
            max_bytes: 4096,
            request_timeout: Duration::from_secs(1),
        };
        let req = request(&batch, settings);
        assert_eq!(req.max_wait_ms.0, 3);
        assert_eq!(
            req.max_bytes.map(|b| b.0),
            Some(3 * 4096),
            "every partition's share"
        );
        let shape: Vec<(String, Vec<(i32, i64)>)> = req
            .topics
            .iter()
            .map(|t| {
                (
                    t.topic.0.clone(),
                    t.partitions
                        .iter()
                        .map(|p| (p.partition.0, p.fetch_offset.0))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("a".into(), vec![(0, 10), (1, 11)]),
                ("b".into(), vec![(2, 20)])
            ]
        );
    }
}
