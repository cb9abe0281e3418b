//! One WebSocket connection: reads client frames (rate limit, strikes, size limit), writes
//! the frames the fan-out queued for it in batches (one flush per batch), keeps the peer
//! alive with pings, reaps idle peers, and closes with a code and a reason.
//!
//! One task per connection drives both directions, so an idle connection costs one task,
//! one bounded queue and the WebSocket's buffers. The session is generic over the socket
//! (`Stream` + `Sink` of messages), so its logic can run over any transport.
//!
//! Every write is bounded by `WS_SLOW_CLIENT_TIMEOUT` (and gives way to shutdown or a kick),
//! so a peer that stops reading cannot pin its session, slot and socket. Client input is
//! read between batches of at most [`MAX_BATCH`] frames, so a busy client is still heard.
//! Closing is a handshake: the close frame goes out, then the client's input is drained for
//! a bounded time, so the client reads the code and reason instead of a reset.
//!
//! Issue 7: the connection's identity (from the upgrade or an `auth` frame) lives on its
//! [`Subscriber`], where the fan-out checks it for private records; an expiry clock tells the
//! client when its token expires and closes after the grace period; a subscribe with
//! `"recover"` replays from Kafka and joins live delivery through the subscriber's seam.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::{Sink, SinkExt, Stream, StreamExt};
use metrics::counter;
use odin_events::envelope::parse_record;
use odin_events::Channel;
use rskafka::record::RecordAndOffset;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::auth::{self, AuthError, ExpiryAction, ExpiryClock, Identity, Verifier};
use crate::config::SlowClientPolicy;
use crate::consumer::now_ms;
use crate::fanout::{Registry, Subscriber};
use crate::limit::TokenBucket;
use crate::metrics as m;
use crate::policy::Audience;
use crate::protocol::{self, ClientError, Command, ErrorCode, SubscriptionRequest};
use crate::recovery::{Incomplete, Outcome, Recoverer};

/// Bad or rate-limited frames tolerated per [`STRIKE_WINDOW`] before the connection is closed.
pub const MAX_STRIKES: u32 = 10;
pub const STRIKE_WINDOW: Duration = Duration::from_secs(10);
/// Frames written per flush at most: one busy client yields to the others, and its own
/// input (an `auth` refresh, an `unsubscribe`, a close) is read at least this often.
pub const MAX_BATCH: usize = 64;
/// How long a close frame may take to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// After the close frame, how long the client's input is read (and ignored) while waiting
/// for its close reply. Dropping a socket with unread input makes the kernel reset the
/// connection, and a client that was still sending then loses the close frame it had not
/// read yet (it sees 1006 and no reason).
const CLOSE_DRAIN: Duration = Duration::from_secs(1);
/// Client messages read ahead while writing, handled after the write. Full ⇒ no more are
/// read until they are handled (the client's TCP window then closes).
const INBOX: usize = 16;

/// Per-connection limits, from the configuration.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub client_queue: usize,
    pub max_channels: usize,
    pub msgs_per_sec: u32,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub slow_client: SlowClientPolicy,
    pub slow_client_timeout: Duration,
    /// Checks client JWTs (upgrade and `auth` frames).
    pub verifier: Verifier,
    /// Replays channels from Kafka offsets (`"recover"` on subscribe).
    pub recoverer: Arc<Recoverer>,
}

/// Why a session ended; the label of `ws_disconnections_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// We close with this code and reason.
    Close(CloseCode, &'static str, &'static str),
    /// The peer closed or the socket failed; nothing more to send.
    Gone(&'static str),
}

#[derive(Debug)]
struct Strikes {
    count: u32,
    since: Instant,
}

impl Strikes {
    /// Counts one strike; true when the connection has used up its tolerance.
    fn hit(&mut self, now: Instant) -> bool {
        if now.duration_since(self.since) > STRIKE_WINDOW {
            self.count = 0;
            self.since = now;
        }
        self.count += 1;
        self.count > MAX_STRIKES
    }
}

/// One client message as the socket gave it (`None`: the stream ended).
type Input = Option<Result<Message, WsError>>;

struct Session<'a, S> {
    ws: S,
    cfg: &'a SessionConfig,
    registry: &'a Registry,
    sub: Arc<Subscriber>,
    rx: mpsc::Receiver<Utf8Bytes>,
    channels: HashSet<Channel>,
    bucket: TokenBucket,
    strikes: Strikes,
    clock: ExpiryClock,
    /// Shutdown or a kick, raced by every write.
    stop: oneshot::Receiver<Stop>,
    /// Messages read while writing, handled in order before anything else.
    inbox: VecDeque<Input>,
    /// The stream ended or failed: nothing more to read.
    input_done: bool,
    last_seen: Instant,
}

/// Why a session must stop, decided outside its loop.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Shutdown,
    /// The fan-out found this client too slow (`WS_SLOW_CLIENT=disconnect`).
    Kicked,
}

/// Waits for shutdown or a kick on a task of its own and reports it through a oneshot.
/// The session polls the oneshot on every wake-up, which is lock-free; polling the shared
/// shutdown token's and the kick's `Notify` there instead took their mutexes on every
/// delivery (measured: ~5 % of the gateway's CPU at 300,000 deliveries/s).
fn watch_stop(shutdown: CancellationToken, sub: Arc<Subscriber>) -> oneshot::Receiver<Stop> {
    let (mut tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let why = tokio::select! {
            _ = shutdown.cancelled() => Stop::Shutdown,
            _ = sub.kicked() => Stop::Kicked,
            // The session ended first.
            _ = tx.closed() => return,
        };
        let _ = tx.send(why);
    });
    rx
}

fn stop_end(why: Result<Stop, oneshot::error::RecvError>) -> End {
    match why {
        Ok(Stop::Kicked) => End::Close(CloseCode::Policy, "slow consumer", "slow_consumer"),
        // The watcher only goes away without a word when the runtime shuts down.
        Ok(Stop::Shutdown) | Err(_) => {
            End::Close(CloseCode::Away, "server shutting down", "shutdown")
        }
    }
}

/// Awaits one write (or several, then a flush) for at most `limit`, giving way to shutdown
/// and kicks; the error is how the session ends.
async fn bounded<T>(
    stop: &mut oneshot::Receiver<Stop>,
    limit: Duration,
    write: impl Future<Output = Result<T, WsError>>,
) -> Result<T, End> {
    tokio::select! {
        biased;
        why = stop => Err(stop_end(why)),
        r = tokio::time::timeout(limit, write) => match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(End::Gone("write_error")),
            // The peer stopped reading: its socket buffers are full.
            Err(_) => Err(End::Close(CloseCode::Policy, "slow consumer", "slow_consumer")),
        },
    }
}

/// Runs one connection until it ends or `shutdown` fires (then it closes with 1001).
pub async fn run<S>(
    ws: S,
    id: u64,
    identity: Option<Identity>,
    cfg: &SessionConfig,
    registry: &Registry,
    shutdown: CancellationToken,
) where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    // Full ⇒ the fan-out drops the frame (counted); with `disconnect`, a queue full for
    // WS_SLOW_CLIENT_TIMEOUT kicks the session, which closes with 1008.
    let (tx, rx) = mpsc::channel(cfg.client_queue);
    let now = Instant::now();
    let sub = Arc::new(Subscriber::new(id, tx));
    let stop = watch_stop(shutdown, Arc::clone(&sub));
    let mut s = Session {
        ws,
        cfg,
        registry,
        sub,
        rx,
        channels: HashSet::new(),
        bucket: TokenBucket::new(cfg.msgs_per_sec),
        strikes: Strikes {
            count: 0,
            since: now,
        },
        clock: ExpiryClock::default(),
        stop,
        inbox: VecDeque::with_capacity(INBOX),
        input_done: false,
        last_seen: now,
    };
    if let Some(identity) = identity {
        // A fresh connection has no user yet, so this cannot conflict.
        if s.sub.identity.authenticate(&identity).is_ok() {
            s.clock.authenticated(&identity);
        }
    }
    let end = s.run_loop().await;
    let all: Vec<Channel> = s.channels.drain().collect();
    registry.unsubscribe(id, &all);
    let label = match &end {
        End::Close(_, _, label) | End::Gone(label) => *label,
    };
    // Counted when decided: the closing handshake below may take up to a second.
    counter!(m::DISCONNECTIONS, "reason" => label).increment(1);
    if let End::Close(code, reason, _) = end {
        s.close(code, reason).await;
    }
    debug!(conn = id, reason = label, "connection ended");
}

impl<S> Session<'_, S>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    async fn run_loop(&mut self) -> End {
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + self.cfg.ping_interval,
            self.cfg.ping_interval,
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Some(msg) = self.inbox.pop_front() {
                // Boxed: request handling (subscriptions, replays) has large futures that
                // every idle connection would otherwise carry.
                if let Some(end) = Box::pin(self.on_input(msg)).await {
                    return end;
                }
            }
            let expiry = self.clock.deadline();
            // Order: what ends the session, then the clocks and the client's input, then
            // the queue, which under sustained traffic is always ready and would otherwise
            // starve everything after it.
            tokio::select! {
                biased;
                why = &mut self.stop => return stop_end(why),
                _ = sleep_until_epoch_ms(expiry), if expiry.is_some() => {
                    match self.clock.fire(auth::epoch_ms()) {
                        Some(ExpiryAction::Notify) => {
                            counter!(auth::TOKEN_EXPIRED, "outcome" => "notified").increment(1);
                            let e = ClientError::new(
                                ErrorCode::TokenExpired,
                                format!(
                                    "token expired: send a fresh {{\"type\":\"auth\"}} frame within {} s or the connection closes",
                                    auth::EXPIRY_GRACE.as_secs()
                                ),
                            );
                            if let Err(end) = Box::pin(self.reply(protocol::error(None, &e))).await {
                                return end;
                            }
                        }
                        Some(ExpiryAction::Close) => {
                            counter!(auth::TOKEN_EXPIRED, "outcome" => "closed").increment(1);
                            return End::Close(CloseCode::Policy, "token expired", "token_expired");
                        }
                        None => {}
                    }
                }
                _ = ticker.tick() => {
                    if self.last_seen.elapsed() > self.cfg.idle_timeout {
                        return End::Close(CloseCode::Away, "idle timeout", "idle");
                    }
                    let ping = self.ws.send(Message::Ping(Default::default()));
                    if let Err(end) = bounded(&mut self.stop, self.cfg.slow_client_timeout, ping).await {
                        return end;
                    }
                }
                msg = self.ws.next() => {
                    if let Some(end) = Box::pin(self.on_input(msg)).await {
                        return end;
                    }
                }
                frame = self.rx.recv() => {
                    let Some(frame) = frame else {
                        return End::Gone("queue_closed");
                    };
                    if let Err(end) = self.write_batch(Some(frame), MAX_BATCH).await {
                        return end;
                    }
                    if self.registry.too_slow(&self.sub, self.rx.len()) {
                        return End::Close(CloseCode::Policy, "slow consumer", "slow_consumer");
                    }
                }
            }
        }
    }

    /// One message from the client; `Some` when the session must end.
    async fn on_input(&mut self, msg: Input) -> Option<End> {
        self.last_seen = Instant::now();
        match msg {
            None => Some(End::Gone("peer_gone")),
            Some(Ok(Message::Text(text))) => self.on_text(&text).await,
            Some(Ok(Message::Binary(_))) => {
                let e = ClientError::bad_request(
                    "binary frames are not supported; send JSON text frames",
                );
                self.refuse(None, &e).await
            }
            // tungstenite queued the pong; push it out now.
            Some(Ok(Message::Ping(_))) => {
                let flush = self.ws.flush();
                bounded(&mut self.stop, self.cfg.slow_client_timeout, flush)
                    .await
                    .err()
            }
            Some(Ok(Message::Pong(_) | Message::Frame(_))) => None,
            Some(Ok(Message::Close(_))) => Some(End::Gone("peer_closed")),
            Some(Err(WsError::Capacity(_))) => Some(End::Close(
                CloseCode::Size,
                "frame too large",
                "frame_too_large",
            )),
            // RFC 6455 §8.1: a text message that is not UTF-8 fails the connection with
            // 1007, so the client learns why.
            Some(Err(WsError::Utf8(_))) => Some(End::Close(
                CloseCode::Invalid,
                "invalid UTF-8",
                "invalid_utf8",
            )),
            Some(Err(_)) => Some(End::Gone("read_error")),
        }
    }

    /// Writes `first` and whatever else is queued (at most `max` frames), flushes once
    /// (bounded), then reads the client messages already waiting.
    async fn write_batch(&mut self, first: Option<Utf8Bytes>, max: usize) -> Result<usize, End> {
        let (ws, rx) = (&mut self.ws, &mut self.rx);
        let write = async {
            let mut n = 0;
            if let Some(f) = first {
                ws.feed(Message::Text(f)).await?;
                n += 1;
            }
            while n < max {
                match rx.try_recv() {
                    Ok(f) => {
                        ws.feed(Message::Text(f)).await?;
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            ws.flush().await?;
            Ok(n)
        };
        let n = bounded(&mut self.stop, self.cfg.slow_client_timeout, write).await?;
        self.read_ahead().await;
        Ok(n)
    }

    /// Moves the client messages that are already here into the inbox (never waits).
    async fn read_ahead(&mut self) {
        while !self.input_done && self.inbox.len() < INBOX {
            // Polled with this task's waker, so a later wake-up is not lost.
            let ready = std::future::poll_fn(|cx| {
                Poll::Ready(match self.ws.poll_next_unpin(cx) {
                    Poll::Ready(m) => Some(m),
                    Poll::Pending => None,
                })
            })
            .await;
            let Some(msg) = ready else {
                return;
            };
            self.input_done = matches!(msg, None | Some(Err(_)) | Some(Ok(Message::Close(_))));
            self.inbox.push_back(msg);
        }
    }

    /// Sends a reply after the frames queued before it, so a reply is also a barrier:
    /// everything delivered before the request was handled reaches the client first. Only
    /// those: under sustained traffic the queue never empties.
    async fn reply(&mut self, frame: Utf8Bytes) -> Result<(), End> {
        let mut before = self.rx.len();
        while before > 0 {
            let n = self.write_batch(None, before.min(MAX_BATCH)).await?;
            if n == 0 {
                break;
            }
            before = before.saturating_sub(n);
        }
        let send = self.ws.send(Message::Text(frame));
        bounded(&mut self.stop, self.cfg.slow_client_timeout, send).await
    }

    /// The closing handshake: no request is read any more; the close frame goes out
    /// (bounded), then the client's input is read and ignored until its close reply, the
    /// end of the stream or [`CLOSE_DRAIN`].
    async fn close(&mut self, code: CloseCode, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let sent =
            tokio::time::timeout(CLOSE_TIMEOUT, self.ws.send(Message::Close(Some(frame)))).await;
        // Not sent: the peer does not read, so nothing it sends can help it see the close.
        if !matches!(sent, Ok(Ok(()))) || self.input_done {
            return;
        }
        let deadline = tokio::time::Instant::now() + CLOSE_DRAIN;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) | Err(_) => return,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Sends an error frame and counts a strike; `Some` when the connection must close.
    async fn refuse(&mut self, id: Option<&RawValue>, e: &ClientError) -> Option<End> {
        counter!(m::CLIENT_ERRORS, "code" => e.code.as_str()).increment(1);
        if self.strikes.hit(Instant::now()) {
            let reason = if e.code == ErrorCode::RateLimited {
                "rate limit exceeded"
            } else {
                "too many invalid messages"
            };
            return Some(End::Close(CloseCode::Policy, reason, "policy"));
        }
        self.reply(protocol::error(id, e)).await.err()
    }

    async fn on_text(&mut self, text: &str) -> Option<End> {
        if !self.bucket.try_take() {
            let e = ClientError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} messages per second; message ignored",
                    self.cfg.msgs_per_sec
                ),
            );
            return self.refuse(None, &e).await;
        }
        let frame = match protocol::parse_client_frame(text) {
            Ok(f) => f,
            Err((id, e)) => return self.refuse(id.as_deref(), &e).await,
        };
        let id = frame.id.as_deref();
        let reply = match frame.command {
            Command::Subscribe(req) if !req.recover.is_empty() => {
                match self.subscribe_recovering(id, &req).await {
                    Ok(r) => r,
                    Err(end) => return Some(end),
                }
            }
            Command::Auth { token } => self.authenticate(id, &token),
            Command::Subscribe(req) => self.subscribe(id, &req),
            Command::Unsubscribe(req) => self.unsubscribe(id, &req),
            Command::Ping => Ok(protocol::pong(id, now_ms())),
        };
        match reply {
            Ok(frame) => self.reply(frame).await.err(),
            Err(e) => self.refuse(id, &e).await,
        }
    }

    /// The channels a subscribe names, and those of them not held yet (within the limit).
    fn plan(&self, req: &SubscriptionRequest) -> Result<(Vec<Channel>, Vec<Channel>), ClientError> {
        let expanded = bundles::expand(&req.as_request(), self.cfg.max_channels)?;
        let new: Vec<Channel> = expanded
            .iter()
            .filter(|c| !self.channels.contains(*c))
            .cloned()
            .collect();
        if self.channels.len() + new.len() > self.cfg.max_channels {
            return Err(ClientError::new(
                ErrorCode::TooManySubscriptions,
                format!(
                    "{} channels held + {} new exceeds the limit of {}",
                    self.channels.len(),
                    new.len(),
                    self.cfg.max_channels
                ),
            ));
        }
        Ok((expanded, new))
    }

    fn subscribe(
        &mut self,
        id: Option<&RawValue>,
        req: &SubscriptionRequest,
    ) -> Result<Utf8Bytes, ClientError> {
        let (expanded, new) = self.plan(req)?;
        self.registry.subscribe(&self.sub, &new);
        self.channels.extend(new);
        info!(
            conn = self.sub.id(),
            channels = self.channels.len(),
            "client subscribed"
        );
        let names: Vec<String> = expanded.iter().map(Channel::to_string).collect();
        Ok(protocol::subscription_reply(
            true,
            id,
            names.iter().map(String::as_str),
        ))
    }

    /// A subscribe with `"recover"`: replays each channel's missed records from Kafka, then
    /// joins live delivery through the subscriber's [`crate::recovery::Seam`], so the client
    /// gets every record after its offset once and in order. The replayed (and held) frames
    /// are written before the reply; a write failure is the outer error.
    async fn subscribe_recovering(
        &mut self,
        id: Option<&RawValue>,
        req: &SubscriptionRequest,
    ) -> Result<Result<Utf8Bytes, ClientError>, End> {
        // Everything is checked before anything changes.
        let mut wanted = Vec::with_capacity(req.recover.len());
        for (name, after) in &req.recover {
            match Channel::parse(name) {
                Ok(c) => wanted.push((name.clone(), c, *after)),
                Err(e) => {
                    return Ok(Err(ClientError::new(
                        ErrorCode::InvalidChannel,
                        format!("recover: {e}"),
                    )))
                }
            }
        }
        let (expanded, new) = match self.plan(req) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let mut outcomes: Vec<(String, Outcome)> = Vec::with_capacity(wanted.len());
        let mut todo = Vec::with_capacity(wanted.len());
        for (name, c, after) in wanted {
            if c.is_wildcard() || !expanded.contains(&c) {
                outcomes.push((name, Outcome::incomplete(Incomplete::NotSubscribed)));
            } else if self.channels.contains(&c)
                || self.channels.contains(&Channel::wildcard(c.category()))
            {
                // Already live here (itself or through its wildcard): a replay would repeat
                // what the client has.
                outcomes.push((name, Outcome::incomplete(Incomplete::AlreadySubscribed)));
            } else {
                todo.push((name, c, after));
            }
        }
        // Hold live frames of the replayed channels from the moment they are subscribed.
        self.sub.seam.begin(todo.iter().map(|(_, c, _)| c));
        self.registry.subscribe(&self.sub, &new);
        self.channels.extend(new);

        let recoverer = Arc::clone(&self.cfg.recoverer);
        let sub = Arc::clone(&self.sub);
        let auth_enabled = self.cfg.verifier.is_configured();
        let deadline = tokio::time::Instant::now() + recoverer.timeout;
        let mut budget = recoverer.max_records;
        let mut live_from: HashMap<Channel, i64> = HashMap::with_capacity(todo.len());
        let mut frames = Vec::new();
        for (name, c, after) in todo {
            let decode = |r: &RecordAndOffset| {
                replay_frame(r, &c, recoverer.is_single(), &sub, auth_enabled)
            };
            let replay = recoverer.replay(&c, after, budget, deadline, decode).await;
            budget = budget.saturating_sub(replay.items.len());
            live_from.insert(c, replay.live_from);
            frames.extend(replay.items);
            outcomes.push((name, replay.outcome));
        }
        let (held, overrun) = self
            .sub
            .seam
            .finish(|c| live_from.get(c).copied().unwrap_or(i64::MIN));
        for c in overrun {
            let same = |n: &String| Channel::parse(n).ok().as_ref() == Some(&c);
            if let Some((_, o)) = outcomes.iter_mut().find(|(n, _)| same(n)) {
                *o = Outcome::incomplete(Incomplete::Overrun);
            }
        }
        // Replayed, then held frames go out before anything queued after the seam closed.
        let n = frames.len() + held.len();
        let mut frames = frames.into_iter().chain(held).peekable();
        while frames.peek().is_some() {
            // In batches, like live frames, with the client's input read in between.
            let ws = &mut self.ws;
            let batch = frames.by_ref().take(MAX_BATCH);
            let write = async {
                for f in batch {
                    ws.feed(Message::Text(f)).await?;
                }
                ws.flush().await
            };
            bounded(&mut self.stop, self.cfg.slow_client_timeout, write).await?;
            self.read_ahead().await;
        }
        info!(
            conn = self.sub.id(),
            channels = self.channels.len(),
            replayed = n,
            "client subscribed with recovery"
        );
        let names: Vec<String> = expanded.iter().map(Channel::to_string).collect();
        Ok(Ok(protocol::subscribed_with_recovery(
            id,
            names.iter().map(String::as_str),
            &outcomes,
        )))
    }

    /// An `auth` frame: a good token authenticates (or refreshes) the connection; a bad one
    /// is refused with `unauthorized` and changes nothing.
    fn authenticate(
        &mut self,
        id: Option<&RawValue>,
        token: &str,
    ) -> Result<Utf8Bytes, ClientError> {
        let refuse = |e: AuthError| {
            counter!(auth::AUTH_FAILURES, "stage" => "frame", "reason" => e.label()).increment(1);
            ClientError::new(ErrorCode::Unauthorized, e.to_string())
        };
        let identity = self.cfg.verifier.verify(token).map_err(refuse)?;
        self.sub.identity.authenticate(&identity).map_err(refuse)?;
        self.clock.authenticated(&identity);
        counter!(auth::AUTH_SUCCESS, "stage" => "frame").increment(1);
        debug!(conn = self.sub.id(), user = %identity.user_id, "client authenticated");
        Ok(protocol::authenticated(
            id,
            &identity.user_id,
            identity.valid_until_ms,
        ))
    }

    fn unsubscribe(
        &mut self,
        id: Option<&RawValue>,
        req: &SubscriptionRequest,
    ) -> Result<Utf8Bytes, ClientError> {
        let expanded = bundles::expand(
            &req.as_request(),
            self.cfg.max_channels.max(self.channels.len()),
        )?;
        let held: Vec<Channel> = expanded
            .iter()
            .filter(|c| self.channels.remove(*c))
            .cloned()
            .collect();
        self.registry.unsubscribe(self.sub.id(), &held);
        self.sub.seam.forget(&held);
        // Drops of channels no longer received: no next event will report them.
        let still = &self.channels;
        self.sub.retain_gaps(|category, token| {
            still.contains(&Channel::wildcard(category))
                || Channel::parse(&format!("{token}.{}", category.as_str()))
                    .is_ok_and(|c| still.contains(&c))
        });
        let names: Vec<String> = expanded.iter().map(Channel::to_string).collect();
        Ok(protocol::subscription_reply(
            false,
            id,
            names.iter().map(String::as_str),
        ))
    }
}

/// Sleeps until an epoch-ms instant (the token expiry clock is wall-clock time).
fn sleep_until_epoch_ms(at: Option<i64>) -> tokio::time::Sleep {
    // Capped: a wake-up before the deadline just finds nothing to do and sleeps again.
    let wait = at.map_or(Duration::from_secs(3600), |at| {
        Duration::from_millis((at.saturating_sub(auth::epoch_ms())).clamp(0, 3_600_000) as u64)
    });
    tokio::time::sleep(wait)
}

/// The event frame of a replayed record, when it belongs to `channel` and this connection
/// may see it (the same frame live delivery builds).
fn replay_frame(
    r: &RecordAndOffset,
    channel: &Channel,
    single_topic: bool,
    sub: &Subscriber,
    auth_enabled: bool,
) -> Option<Utf8Bytes> {
    let p = parse_record(r.record.value.as_deref()?, r.record.key.as_deref()).ok()?;
    if *p.token_id != *channel.token() {
        return None;
    }
    // Per-category topics: the topic is the channel's category; single topic: the type's.
    let category = if single_topic {
        p.event_type.category()
    } else {
        channel.category()
    };
    if category != channel.category() {
        return None;
    }
    let audience = Audience::of(p.classification, p.user_id.as_deref(), auth_enabled);
    if !audience.admits(&sub.identity, auth::epoch_ms()) {
        return None;
    }
    Some(protocol::record_frame(
        &p,
        category,
        r.offset,
        r.record.timestamp.timestamp_millis(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strikes_reset_after_the_window() {
        let t0 = Instant::now();
        let mut s = Strikes {
            count: 0,
            since: t0,
        };
        assert!((0..MAX_STRIKES).all(|_| !s.hit(t0)));
        assert!(s.hit(t0));
        let mut s = Strikes {
            count: 0,
            since: t0,
        };
        for _ in 0..MAX_STRIKES {
            s.hit(t0);
        }
        assert!(!s.hit(t0 + STRIKE_WINDOW + Duration::from_millis(1)));
    }
}
