//! The listener: accepts TCP connections, reads the HTTP request head, serves `/health` and
//! `/metrics`, refuses upgrades over the connection cap with 503 *before* the handshake, and
//! upgrades `/ws` (and `/`) to WebSocket by hand (see `docs/gateway.md` for why not hyper).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use odin_service::KafkaHealth;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::auth::{self, AuthError, Identity};
use crate::consumer::KafkaState;
use crate::fanout::Registry;
use crate::metrics as m;
use crate::origin::OriginPolicy;
use crate::session::{self, SessionConfig};

/// Longest accepted request head.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Headers parsed at most.
const MAX_HEADERS: usize = 32;
/// tungstenite's read buffer is allocated up front for every connection (128 KiB by
/// default); client frames are small, and it grows for the rare large one.
const READ_BUFFER_BYTES: usize = 512;
/// Frames are gathered up to this many bytes before a write (a flush writes the rest).
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// What every connection handler shares.
#[derive(Debug)]
pub struct Listener {
    pub session: SessionConfig,
    /// Browser origins allowed to upgrade (403 otherwise).
    pub origins: OriginPolicy,
    pub ws_config: WebSocketConfig,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub registry: Arc<Registry>,
    pub health: KafkaHealth,
    pub kafka: Arc<KafkaState>,
    /// Open WebSocket connections (and upgrades in progress) of this instance.
    pub open: AtomicUsize,
    pub next_id: AtomicU64,
    pub shutdown: CancellationToken,
}

/// tungstenite settings sized for many mostly idle connections.
pub fn ws_config(max_frame_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(Some(max_frame_bytes))
        .max_frame_size(Some(max_frame_bytes))
}

/// Accepts connections until `shutdown`; each one runs on `sessions`.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Listener>, sessions: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let shared = Arc::clone(&shared);
                sessions.spawn(async move {
                    handle(stream, peer, shared).await;
                });
            }
            Err(e) => {
                // Out of file descriptors (EMFILE) or a transient error: back off instead
                // of spinning; established connections keep running.
                warn!(error = %e, "accept failed");
                counter!(m::CONNECTIONS_REJECTED, "reason" => "accept_error").increment(1);
                tokio::select! {
                    _ = shared.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
    debug!("accept loop stopped");
}

struct Head {
    method: String,
    path: String,
    upgrade_websocket: bool,
    key: Option<String>,
    version_13: bool,
    origin: Option<String>,
    authorization: Option<String>,
    /// Bytes read after the head (a client may pipeline its first frame).
    rest: Vec<u8>,
}

enum HeadError {
    Closed,
    TooLarge,
    Malformed(String),
    Io,
}

async fn read_head(stream: &mut TcpStream) -> Result<Head, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let header = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                };
                let has_token = |name: &str, token: &str| {
                    header(name)
                        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                };
                return Ok(Head {
                    method: req.method.unwrap_or_default().to_owned(),
                    path: req.path.unwrap_or_default().to_owned(),
                    upgrade_websocket: has_token("upgrade", "websocket")
                        && has_token("connection", "upgrade"),
                    key: header("sec-websocket-key").map(str::to_owned),
                    version_13: header("sec-websocket-version").is_some_and(|v| v.trim() == "13"),
                    origin: header("origin").map(str::to_owned),
                    authorization: header("authorization").map(str::to_owned),
                    rest: buf[len..].to_vec(),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => {}
            Ok(httparse::Status::Partial) => return Err(HeadError::TooLarge),
            Err(e) => return Err(HeadError::Malformed(e.to_string())),
        }
    }
}

async fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut extra = "";
    if status == 426 {
        extra = "Upgrade: websocket\r\n";
    }
    if status == 401 {
        extra = "WWW-Authenticate: Bearer\r\n";
    }
    write_response(stream, status, reason, content_type, extra, body).await;
}

/// Writes one whole response (`extra_headers`: complete `Name: value\r\n` lines) and closes
/// the connection. A peer that stops reading must not hold the task.
pub(crate) async fn write_response(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    content_type: &str,
    extra_headers: &str,
    body: &str,
) {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
}

async fn json_error(stream: &mut TcpStream, status: u16, message: &str) {
    let body = serde_json::json!({ "error": message, "status": status }).to_string();
    respond(stream, status, "application/json", &body).await;
}

fn reject(reason: &'static str) {
    counter!(m::CONNECTIONS_REJECTED, "reason" => reason).increment(1);
}

/// Releases a connection slot when the connection ends, however it ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn handle(mut stream: TcpStream, peer: std::net::SocketAddr, shared: Arc<Listener>) {
    // Frames are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let head = match tokio::time::timeout(shared.handshake_timeout, read_head(&mut stream)).await {
        Ok(Ok(h)) => h,
        Ok(Err(HeadError::TooLarge)) => {
            reject("bad_request");
            return json_error(&mut stream, 431, "request head too large").await;
        }
        Ok(Err(HeadError::Malformed(e))) => {
            reject("bad_request");
            return json_error(&mut stream, 400, &format!("malformed HTTP request: {e}")).await;
        }
        Ok(Err(HeadError::Closed | HeadError::Io)) => return,
        Err(_) => {
            reject("handshake_timeout");
            return;
        }
    };
    let path = head.path.split('?').next().unwrap_or_default();
    if head.method != "GET" {
        return json_error(&mut stream, 405, "only GET is served").await;
    }
    match path {
        "/health" => {
            let (status, body) = health(&shared);
            respond(&mut stream, status, "application/json", &body).await;
        }
        "/metrics" => {
            let text = odin_service::telemetry::prometheus().render();
            respond(&mut stream, 200, "text/plain; version=0.0.4", &text).await;
        }
        // A browser's plain GET of `/` gets the console page; an upgrade still gets the stream.
        p if !head.upgrade_websocket && crate::console::serves(p) => {
            crate::console::respond(&mut stream, p, &shared).await;
        }
        "/ws" | "/" if head.upgrade_websocket => upgrade(stream, peer, head, &shared).await,
        "/ws" | "/" => {
            reject("not_websocket");
            json_error(&mut stream, 426, "this endpoint speaks WebSocket only").await;
        }
        other => json_error(&mut stream, 404, &format!("no route for {other}")).await,
    }
}

async fn upgrade(mut stream: TcpStream, peer: std::net::SocketAddr, head: Head, shared: &Listener) {
    let Some(key) = head.key.as_deref().filter(|_| head.version_13) else {
        reject("bad_request");
        return json_error(
            &mut stream,
            400,
            "WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13",
        )
        .await;
    };
    if shared.shutdown.is_cancelled() {
        reject("shutting_down");
        return json_error(&mut stream, 503, "server shutting down").await;
    }
    // Before anything else a browser page from another site could learn from.
    if !shared.origins.allows(head.origin.as_deref()) {
        reject("origin");
        debug!(%peer, origin = ?head.origin, "upgrade from a disallowed origin");
        return json_error(&mut stream, 403, "origin not allowed").await;
    }
    let identity = match authenticate(&head, &shared.session) {
        Ok(id) => id,
        Err(e) => {
            reject("unauthorized");
            counter!(auth::AUTH_FAILURES, "stage" => "upgrade", "reason" => e.label()).increment(1);
            debug!(%peer, error = %e, "upgrade refused");
            return json_error(&mut stream, 401, &e.to_string()).await;
        }
    };
    if shared.open.fetch_add(1, Ordering::AcqRel) >= shared.max_connections {
        shared.open.fetch_sub(1, Ordering::AcqRel);
        reject("capacity");
        return json_error(&mut stream, 503, "connection limit reached").await;
    }
    let _slot = Slot(&shared.open);
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.trim().as_bytes())
    );
    // The head (its token, origin, path) and the response are not needed for the
    // connection's lifetime: free them now rather than carry them in every idle session.
    let rest = {
        let h = head;
        h.rest
    };
    let written = stream.write_all(response.as_bytes()).await;
    drop(response);
    if written.is_err() {
        reject("handshake_failed");
        return;
    }
    let ws =
        WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(shared.ws_config))
            .await;
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    counter!(m::CONNECTIONS_ACCEPTED).increment(1);
    gauge!(m::CONNECTIONS).increment(1.0);
    debug!(conn = id, %peer, "client connected");
    session::run(
        ws,
        id,
        identity,
        &shared.session,
        &shared.registry,
        shared.shutdown.clone(),
    )
    .await;
    gauge!(m::CONNECTIONS).decrement(1.0);
}

/// The identity of an upgrade request: its token verified, or anonymous. Without a key
/// configured tokens are ignored (nothing to check them with; the gateway warned at start).
fn authenticate(head: &Head, cfg: &SessionConfig) -> Result<Option<Identity>, AuthError> {
    if !cfg.verifier.is_configured() {
        return Ok(None);
    }
    let query = head.path.split_once('?').map(|(_, q)| q);
    let token = auth::token_from_request(head.authorization.as_deref(), query)?;
    match token {
        Some(t) => {
            let id = cfg.verifier.verify(&t)?;
            counter!(auth::AUTH_SUCCESS, "stage" => "upgrade").increment(1);
            Ok(Some(id))
        }
        None if cfg.verifier.is_required() => Err(AuthError::Missing),
        None => Ok(None),
    }
}

/// `/health`: 200 when every event topic exists and every partition consumer is reading,
/// else 503 with the reason.
fn health(shared: &Listener) -> (u16, String) {
    let k = shared.kafka.summary();
    let connected = shared.health.is_connected();
    let reason = if !connected {
        Some(
            shared
                .health
                .reason()
                .unwrap_or_else(|| "kafka disconnected".into()),
        )
    } else if !k.missing_topics.is_empty() {
        Some(format!("missing topics: {}", k.missing_topics.join(", ")))
    } else if k.partitions == 0 {
        Some("no partitions discovered yet".into())
    } else if k.ready < k.partitions {
        Some(format!(
            "starting: {} of {} partitions positioned",
            k.ready, k.partitions
        ))
    } else {
        None
    };
    let status = if reason.is_none() { 200 } else { 503 };
    let body = serde_json::json!({
        "status": if reason.is_none() { "ok" } else { "unavailable" },
        "reason": reason,
        "kafka": {
            "connected": connected,
            "partitions": k.partitions,
            "partitionsReady": k.ready,
            "lag": k.lag,
            "missingTopics": k.missing_topics,
        },
        "connections": shared.open.load(Ordering::Relaxed),
        "channels": shared.registry.channel_count(),
    });
    (status, body.to_string())
}
