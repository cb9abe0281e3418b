//! One WebSocket connection: reads client frames (rate limit, strikes, size limit), writes
//! the frames the fan-out queued for it in batches (one flush per batch), keeps the peer
//! alive with pings, reaps idle peers, and closes with a code and a reason.
//!
//! One task per connection drives both directions, so an idle connection costs one task,
//! one bounded queue and the WebSocket's buffers. The session is generic over the socket
//! (`Stream` + `Sink` of messages), so its logic can run over any transport.
//!
//! Issue 7: the connection's identity (from the upgrade or an `auth` frame) lives on its
//! [`Subscriber`], where the fan-out checks it for private records; an expiry clock tells the
//! client when its token expires and closes after the grace period; a subscribe with
//! `"recover"` replays from Kafka and joins live delivery through the subscriber's seam.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
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
/// Frames written per flush at most, so one busy client yields to the others.
const MAX_BATCH: usize = 256;
/// How long a close frame may take to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

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
    let mut s = Session {
        ws,
        cfg,
        registry,
        sub: Arc::new(Subscriber::new(id, tx)),
        rx,
        channels: HashSet::new(),
        bucket: TokenBucket::new(cfg.msgs_per_sec),
        strikes: Strikes {
            count: 0,
            since: now,
        },
        clock: ExpiryClock::default(),
    };
    if let Some(identity) = identity {
        // A fresh connection has no user yet, so this cannot conflict.
        if s.sub.identity.authenticate(&identity).is_ok() {
            s.clock.authenticated(&identity);
        }
    }
    let mut stop = watch_stop(shutdown, Arc::clone(&s.sub));
    let end = s.run_loop(&mut stop).await;
    let all: Vec<Channel> = s.channels.drain().collect();
    registry.unsubscribe(id, &all);
    let label = match &end {
        End::Close(code, reason, label) => {
            let frame = CloseFrame {
                code: *code,
                reason: Utf8Bytes::from_static(reason),
            };
            let _ =
                tokio::time::timeout(CLOSE_TIMEOUT, s.ws.send(Message::Close(Some(frame)))).await;
            *label
        }
        End::Gone(label) => label,
    };
    counter!(m::DISCONNECTIONS, "reason" => label).increment(1);
    debug!(conn = id, reason = label, "connection ended");
}

impl<S> Session<'_, S>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    async fn run_loop(&mut self, stop: &mut oneshot::Receiver<Stop>) -> End {
        let mut last_seen = Instant::now();
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + self.cfg.ping_interval,
            self.cfg.ping_interval,
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A write that cannot finish within this is a dead or stuck peer.
        let write_timeout = match self.cfg.slow_client {
            SlowClientPolicy::Disconnect => self.cfg.slow_client_timeout,
            SlowClientPolicy::Drop => self.cfg.idle_timeout,
        };
        loop {
            let expiry = self.clock.deadline();
            tokio::select! {
                biased;
                why = &mut *stop => return stop_end(why),
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
                            if Box::pin(self.reply(protocol::error(None, &e))).await.is_err() {
                                return End::Gone("write_error");
                            }
                        }
                        Some(ExpiryAction::Close) => {
                            counter!(auth::TOKEN_EXPIRED, "outcome" => "closed").increment(1);
                            return End::Close(CloseCode::Policy, "token expired", "token_expired");
                        }
                        None => {}
                    }
                }
                frame = self.rx.recv() => {
                    let Some(frame) = frame else {
                        return End::Gone("queue_closed");
                    };
                    let written = tokio::select! {
                        r = tokio::time::timeout(write_timeout, self.write_batch(Some(frame))) => r,
                        why = &mut *stop => return stop_end(why),
                    };
                    match written {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return End::Gone("write_error"),
                        Err(_) => {
                            return End::Close(CloseCode::Policy, "slow consumer", "slow_consumer");
                        }
                    }
                }
                msg = self.ws.next() => {
                    last_seen = Instant::now();
                    match msg {
                        None => return End::Gone("peer_gone"),
                        Some(Ok(Message::Text(text))) => {
                            // Boxed: request handling (subscriptions, replays) has large
                            // futures that every idle connection would otherwise carry.
                            if let Some(end) = Box::pin(self.on_text(&text)).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let e = ClientError::bad_request("binary frames are not supported; send JSON text frames");
                            if let Some(end) = Box::pin(self.refuse(None, &e)).await {
                                return end;
                            }
                        }
                        // tungstenite queued the pong; push it out now.
                        Some(Ok(Message::Ping(_))) => {
                            if self.ws.flush().await.is_err() {
                                return End::Gone("write_error");
                            }
                        }
                        Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
                        Some(Ok(Message::Close(_))) => return End::Gone("peer_closed"),
                        Some(Err(WsError::Capacity(_))) => {
                            return End::Close(CloseCode::Size, "frame too large", "frame_too_large");
                        }
                        // RFC 6455 §8.1: a text message that is not UTF-8 fails the
                        // connection with 1007, so the client learns why.
                        Some(Err(WsError::Utf8(_))) => {
                            return End::Close(CloseCode::Invalid, "invalid UTF-8", "invalid_utf8");
                        }
                        Some(Err(_)) => return End::Gone("read_error"),
                    }
                }
                _ = ticker.tick() => {
                    if last_seen.elapsed() > self.cfg.idle_timeout {
                        return End::Close(CloseCode::Away, "idle timeout", "idle");
                    }
                    if self.ws.send(Message::Ping(Default::default())).await.is_err() {
                        return End::Gone("write_error");
                    }
                }
            }
        }
    }

    /// Writes `first` and whatever else is queued (up to [`MAX_BATCH`]), then flushes once.
    async fn write_batch(&mut self, first: Option<Utf8Bytes>) -> Result<(), WsError> {
        let mut n = 0;
        if let Some(f) = first {
            self.ws.feed(Message::Text(f)).await?;
            n += 1;
        }
        while n < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(f) => {
                    self.ws.feed(Message::Text(f)).await?;
                    n += 1;
                }
                Err(_) => break,
            }
        }
        self.ws.flush().await
    }

    /// Sends a reply after every frame queued before it, so a reply is also a barrier:
    /// everything delivered before the request was handled reaches the client first.
    async fn reply(&mut self, frame: Utf8Bytes) -> Result<(), WsError> {
        while !self.rx.is_empty() {
            self.write_batch(None).await?;
        }
        self.ws.send(Message::Text(frame)).await
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
        if self.reply(protocol::error(id, e)).await.is_err() {
            return Some(End::Gone("write_error"));
        }
        None
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
                    Err(_) => return Some(End::Gone("write_error")),
                }
            }
            Command::Auth { token } => self.authenticate(id, &token),
            Command::Subscribe(req) => self.subscribe(id, &req),
            Command::Unsubscribe(req) => self.unsubscribe(id, &req),
            Command::Ping => Ok(protocol::pong(id, now_ms())),
        };
        match reply {
            Ok(frame) => self
                .reply(frame)
                .await
                .is_err()
                .then_some(End::Gone("write_error")),
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
    ) -> Result<Result<Utf8Bytes, ClientError>, WsError> {
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
        if n > 0 {
            let write = async {
                for f in frames.into_iter().chain(held) {
                    self.ws.feed(Message::Text(f)).await?;
                }
                self.ws.flush().await
            };
            match tokio::time::timeout(self.cfg.slow_client_timeout, write).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(WsError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "replay write timed out",
                    )))
                }
            }
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
