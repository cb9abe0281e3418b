//! One simulated WebSocket client: connects from its own loopback source address, upgrades
//! (with a JWT when configured), subscribes, waits for the confirmation, then reads event
//! frames, checking each channel's sequence numbers and recording produce → receive latency.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::config::JwtIn;
use crate::plan::{Plan, Subscribers};
use crate::sequence::{Seen, SeqTracker};
use crate::stats::{Failure, Stats};

/// Everything the clients of a run share (read-only or atomic).
#[derive(Debug)]
pub struct ClientCtx {
    pub plan: Arc<Plan>,
    pub subs: Arc<Subscribers>,
    pub stats: Arc<Stats>,
    /// Resolved gateway address.
    pub addr: SocketAddr,
    /// The WebSocket URL (for the upgrade request).
    pub url: String,
    /// Source addresses to spread over (127.0.0.1 ..= 127.0.0.N); 0 = let the kernel pick.
    pub source_ips: usize,
    pub read_buffer: usize,
    pub jwt: Option<(String, JwtIn)>,
    pub connect_timeout: Duration,
    /// For events without a measured flag (publisher mode): whether the window is open.
    pub measuring: Arc<AtomicBool>,
    /// Sequence numbers handed out per channel, set once producing has ended, so that each
    /// client can tell which of its channels' events never arrived.
    pub produced: OnceLock<Vec<u64>>,
}

/// What a client knows at the end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientOutcome {
    /// Subscribed and still connected when the run ended.
    pub stayed: bool,
    /// Sequence numbers of its channels never received (measured and warm-up events),
    /// given how many were produced per channel.
    pub missing_by_sequence: u64,
}

/// Source address of client `i`: 127.0.0.(1 + i mod n), so that no address runs out of
/// ephemeral ports (one has ~28,000).
pub fn source_addr(client: usize, n: usize) -> Option<SocketAddr> {
    if n == 0 {
        return None;
    }
    let host = 1 + (client % n.min(254)) as u8;
    Some(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)),
        0,
    ))
}

/// The per-client WebSocket settings: small buffers, so that 20,000 clients fit.
pub fn ws_config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    data: Option<EventData>,
    #[serde(borrow, default)]
    channels: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
}

/// The fields the loadtest's own producer puts into each event's data.
#[derive(Deserialize)]
struct EventData {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(rename = "sentUs", default)]
    sent_us: Option<u64>,
    #[serde(default)]
    m: Option<u8>,
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A client's per-channel state, ordered by channel id.
struct Channels {
    ids: Vec<u32>,
    trackers: Vec<SeqTracker>,
}

impl Channels {
    fn tracker(&mut self, plan: &Plan, name: &str) -> Option<&mut SeqTracker> {
        let id = plan.channel_id(name)?;
        let i = self.ids.binary_search(&id).ok()?;
        self.trackers.get_mut(i)
    }
}

/// What a frame was, for the subscribe handshake.
enum Handled {
    Other,
    Subscribed,
    Error,
}

fn handle_text(ctx: &ClientCtx, chans: &mut Channels, text: &str) -> Handled {
    let stats = &ctx.stats;
    let frame: Frame<'_> = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(_) => {
            Stats::add(&stats.bad_frames, 1);
            return Handled::Other;
        }
    };
    match frame.kind.as_ref() {
        "event" => {
            let now = now_us();
            Stats::add(&stats.events, 1);
            let Some(name) = frame.channel.as_deref() else {
                Stats::add(&stats.bad_frames, 1);
                return Handled::Other;
            };
            let Some(tracker) = chans.tracker(&ctx.plan, name) else {
                Stats::add(&stats.unexpected, 1);
                return Handled::Other;
            };
            let data = frame.data.unwrap_or(EventData {
                seq: None,
                sent_us: None,
                m: None,
            });
            let seen = match data.seq {
                Some(seq) => tracker.observe(seq),
                None => Seen::InOrder,
            };
            match seen {
                Seen::Duplicate => {
                    Stats::add(&stats.duplicates, 1);
                    return Handled::Other;
                }
                Seen::Late => Stats::add(&stats.out_of_order, 1),
                Seen::InOrder => {}
            }
            // Our own events carry µs send times; others (publisher mode) only the
            // event's ms timestamp.
            let sent = data
                .sent_us
                .or_else(|| frame.timestamp.map(|ms| ms.max(0) as u64 * 1_000));
            let latency = sent.map(|s| now.saturating_sub(s));
            let measured = match data.m {
                Some(m) => m == 1,
                None => ctx.measuring.load(Ordering::Relaxed),
            };
            if let Some(l) = latency {
                stats.live.record(l);
                if measured {
                    stats.latency.record(l);
                }
            }
            if measured {
                Stats::add(&stats.measured_received, 1);
            }
            Handled::Other
        }
        "subscribed" => {
            if let Some(confirmed) = frame.channels {
                let mut ok = confirmed.len() == chans.ids.len();
                ok = ok
                    && confirmed.iter().all(|c| {
                        ctx.plan
                            .channel_id(c)
                            .is_some_and(|id| chans.ids.binary_search(&id).is_ok())
                    });
                if !ok {
                    Stats::add(&stats.subscription_mismatch, 1);
                }
            }
            Handled::Subscribed
        }
        "error" => {
            tracing::debug!(code = ?frame.code, "error frame");
            Stats::add(&stats.error_frames, 1);
            Handled::Error
        }
        _ => Handled::Other,
    }
}

async fn connect(ctx: &ClientCtx, idx: usize) -> Result<TcpStream, Failure> {
    let socket = if ctx.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|_| Failure::Connect)?;
    if ctx.addr.is_ipv4() {
        if let Some(src) = source_addr(idx, ctx.source_ips) {
            socket.bind(src).map_err(|_| Failure::Connect)?;
        }
    }
    let stream = socket
        .connect(ctx.addr)
        .await
        .map_err(|_| Failure::Connect)?;
    // Latency matters more than segment count for a subscriber's small frames.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn upgrade(
    ctx: &ClientCtx,
    idx: usize,
    stream: TcpStream,
) -> Result<WebSocketStream<TcpStream>, Failure> {
    let mut url = ctx.url.clone();
    let mut bearer = None;
    if let Some((secret, how)) = &ctx.jwt {
        let now = now_us() / 1_000_000;
        let token = crate::jwt::mint(&crate::jwt::user_of(idx), secret.as_bytes(), now, 24 * 3600);
        match how {
            JwtIn::Query => {
                let sep = if url.contains('?') { '&' } else { '?' };
                url = format!("{url}{sep}token={token}");
            }
            JwtIn::Header => bearer = Some(token),
        }
    }
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|_| Failure::Handshake)?;
    if let Some(token) = bearer {
        let v =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Failure::Handshake)?;
        request.headers_mut().insert("authorization", v);
    }
    match tokio_tungstenite::client_async_with_config(
        request,
        stream,
        Some(ws_config(ctx.read_buffer)),
    )
    .await
    {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => Err(match resp.status().as_u16() {
            503 => Failure::Rejected503,
            401 | 403 => Failure::Unauthorized,
            _ => Failure::Handshake,
        }),
        Err(_) => Err(Failure::Handshake),
    }
}

/// Runs client `idx` until `cancel` fires or its connection ends.
pub async fn run_client(
    idx: usize,
    ctx: Arc<ClientCtx>,
    cancel: CancellationToken,
) -> ClientOutcome {
    let ids = ctx.plan.client_channels(idx);
    let mut chans = Channels {
        trackers: vec![SeqTracker::new(); ids.len()],
        ids,
    };
    let stats = ctx.stats.clone();

    // Connect, upgrade, subscribe, confirmation: all within the connect timeout.
    let setup = async {
        let stream = connect(&ctx, idx).await?;
        let mut ws = upgrade(&ctx, idx, stream).await?;
        Stats::add(&stats.upgraded, 1);
        ws.send(Message::text(ctx.plan.subscribe_frame(idx)))
            .await
            .map_err(|_| Failure::Closed)?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => match handle_text(&ctx, &mut chans, t.as_str()) {
                    Handled::Subscribed => return Ok(ws),
                    Handled::Error => return Err(Failure::ErrorFrame),
                    Handled::Other => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Err(Failure::Closed),
                Some(Ok(_)) => {}
            }
        }
    };
    let result = tokio::select! {
        _ = cancel.cancelled() => Err(Failure::Cancelled),
        r = tokio::time::timeout(ctx.connect_timeout, setup) => r.unwrap_or(Err(Failure::Timeout)),
    };
    let mut ws = match result {
        Ok(ws) => ws,
        Err(why) => {
            stats.fail(why);
            return ClientOutcome::default();
        }
    };
    ctx.subs.add(&chans.ids);
    Stats::add(&stats.subscribed, 1);

    let stayed = loop {
        tokio::select! {
            _ = cancel.cancelled() => break true,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    handle_text(&ctx, &mut chans, t.as_str());
                }
                Some(Ok(Message::Binary(_))) => Stats::add(&stats.bad_frames, 1),
                // Pings are answered by tungstenite on the next read or write.
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break false,
            }
        }
    };
    ctx.subs.remove(&chans.ids);
    if !stayed {
        Stats::add(&stats.disconnected, 1);
        return ClientOutcome::default();
    }
    // A polite close, bounded so a gateway that no longer reads cannot hold the run.
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    let missing_by_sequence = match ctx.produced.get() {
        Some(produced) => chans
            .ids
            .iter()
            .zip(&chans.trackers)
            .map(|(&id, t)| t.missing(produced.get(id as usize).copied().unwrap_or(0)))
            .sum(),
        None => 0,
    };
    ClientOutcome {
        stayed: true,
        missing_by_sequence,
    }
}
