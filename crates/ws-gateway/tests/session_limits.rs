//! The session's limits under clients that read slowly, stop reading or keep sending
//! (issue 15, items 1–4): every write has a deadline, no frame is lost silently (`gap`
//! frames; a client reading at half its channel's rate is disconnected), closing is a
//! handshake even while the client sends, and client input is heard under load.
//!
//! Every test runs a gateway in-process on 127.0.0.1:0 over its own topics on the shared
//! testkit broker; they take turns ([`SERIAL`]) because several measure time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use odin_events::EventType;
use serde_json::{json, Value};
use support::*;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client over a socket with a 4 KiB receive buffer, so a client that reads
/// slowly backs up into the gateway's queue quickly.
async fn small_buffer_client(addr: SocketAddr) -> Ws {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (ws, _) =
        tokio_tungstenite::client_async(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    ws
}

async fn subscribe_raw(ws: &mut Ws, channel: &str) {
    let sub = json!({"type": "subscribe", "id": "s", "channels": [channel]});
    ws.send(Message::text(sub.to_string())).await.unwrap();
    let reply = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    let reply = reply.unwrap().unwrap();
    assert!(reply.to_text().unwrap().contains("subscribed"), "{reply}");
}

async fn stats_connections(gw: &Gateway) -> u64 {
    let (status, body) = gw.get("/stats").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["connections"]
        .as_u64()
        .unwrap()
}

/// Produces `per_sec` events a second of ~`pad` bytes on `token`'s trade channel until
/// `stop` (or `max` events); returns how many.
fn paced_producer(
    gw: &Gateway,
    token: &'static str,
    per_sec: u64,
    pad: usize,
    max: u64,
    stop: CancellationToken,
) -> JoinHandle<u64> {
    let p = producer(testkit::shared());
    let names = gw.names.clone();
    let pad = "x".repeat(pad);
    tokio::spawn(async move {
        // Batches every 20 ms.
        let per_batch = (per_sec / 50).max(1);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut n = 0;
        while n < max && !stop.is_cancelled() {
            tick.tick().await;
            let records = (n..(n + per_batch).min(max))
                .map(|seq| {
                    let env = envelope(
                        EventType::TradeExecuted,
                        token,
                        json!({"seq": seq, "pad": pad}),
                    );
                    record(&names, &env)
                })
                .collect::<Vec<_>>();
            n += records.len() as u64;
            produce(&p, records).await;
        }
        n
    })
}

/// Checks a channel's frames as a client saw them: consecutive offsets, except where a
/// `gap` frame right before an event announces exactly the offsets missing. Returns the
/// number of gap frames.
fn assert_no_silent_loss(frames: &[Value], channel: &str) -> usize {
    let mut expected: Option<i64> = None;
    let mut gaps = 0;
    let mut pending_gap = false;
    for f in frames {
        match f["type"].as_str() {
            Some("gap") => {
                assert_eq!(f["channel"], channel, "{f}");
                let (from, to) = (
                    f["fromOffset"].as_i64().unwrap(),
                    f["toOffset"].as_i64().unwrap(),
                );
                if let Some(e) = expected {
                    assert_eq!(from, e, "gap does not start after the last event: {f}");
                }
                assert!(to >= from, "{f}");
                assert_eq!(f["dropped"].as_i64().unwrap(), to - from + 1, "{f}");
                expected = Some(to + 1);
                gaps += 1;
                pending_gap = true;
            }
            Some("event") if f["channel"] == channel => {
                let offset = f["offset"].as_i64().unwrap();
                if let Some(e) = expected {
                    assert_eq!(offset, e, "offsets missing without a gap frame before {f}");
                }
                expected = Some(offset + 1);
                pending_gap = false;
            }
            _ => {}
        }
    }
    assert!(!pending_gap, "a gap frame not followed by its event");
    gaps
}

/// Item 1: a peer that stops reading is closed within `WS_SLOW_CLIENT_TIMEOUT` plus a ping
/// interval, however it filled its buffers: WebSocket pings (each answered by a pong the
/// gateway flushed without a deadline), or a request on a busy subscription (the reply
/// waited, without a deadline, for the queue to empty). Its slot is released. An id over
/// 256 bytes is refused.
#[tokio::test]
async fn a_peer_that_stops_reading_is_closed_and_its_slot_released() {
    let _turn = SERIAL.lock().await;
    let gw = Gateway::start(
        testkit::shared(),
        &[
            "--slow-client-timeout",
            "2s",
            "--ping-interval",
            "1s",
            "--idle-timeout",
            "60s",
            // The queue never fills here: only the write deadline can end these sessions.
            "--client-queue",
            "100000",
        ],
    )
    .await;

    // A: WebSocket pings as fast as the gateway takes them; never reads.
    let mut a = small_buffer_client(gw.addr).await;
    let pinging = tokio::spawn(async move {
        for _ in 0..1_000_000 {
            if a.send(Message::Ping(vec![b'p'; 125].into())).await.is_err() {
                return;
            }
        }
    });
    // B: subscribed to a busy channel, sends one request, never reads.
    let mut b = small_buffer_client(gw.addr).await;
    subscribe_raw(&mut b, "BUSY.trade").await;
    let stop = CancellationToken::new();
    let busy = paced_producer(&gw, "BUSY", 500, 4000, 5000, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.send(Message::text(
        json!({"type": "ping", "id": "b"}).to_string(),
    ))
    .await
    .unwrap();

    // 2 s write deadline + 1 s ping interval, plus the time the buffers take to fill.
    let started = Instant::now();
    loop {
        let open = stats_connections(&gw).await;
        if open == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "{open} clients that stopped reading still connected after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "stopped readers closed {:?} after the busy client's request",
        started.elapsed()
    );
    let slow = metric(gw.addr, "ws_disconnections_total{reason=\"slow_consumer\"}").await;
    assert!(slow >= 2.0, "slow-consumer disconnections: {slow}");
    stop.cancel();
    busy.await.unwrap();
    // A's socket was closed: its sender fails instead of hanging.
    tokio::time::timeout(WAIT, pinging).await.unwrap().unwrap();
    drop(b);

    // Ids: 256 bytes of JSON text are echoed, longer ones refused without an echo.
    let mut c = gw.client().await;
    let ok_id = "i".repeat(254);
    c.send(json!({"type": "ping", "id": ok_id})).await;
    let pong = c.recv().await;
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_str()),
        (Some("pong"), Some(&*ok_id))
    );
    c.send(json!({"type": "ping", "id": "i".repeat(255)})).await;
    let e = c.recv().await;
    assert_eq!(e["code"], "bad_request", "{e}");
    assert!(e.get("id").is_none(), "a long id was echoed: {e}");
    drop(c);
    gw.shutdown().await;
}

/// Item 2, `disconnect` (default): a client reading at half its channel's rate is closed
/// with 1008 "slow consumer" (today it stays connected, losing half its events), and until
/// then every event it lost is announced by a `gap` frame.
#[tokio::test]
async fn a_client_reading_at_half_rate_is_disconnected_and_told_of_its_gaps() {
    let _turn = SERIAL.lock().await;
    let gw = Gateway::start(
        testkit::shared(),
        &["--client-queue", "64", "--slow-client-timeout", "2s"],
    )
    .await;
    let mut ws = small_buffer_client(gw.addr).await;
    subscribe_raw(&mut ws, "HALF.trade").await;
    let stop = CancellationToken::new();
    // 400 events/s of ~8 KB; the client reads 200 a second. (Large frames: the kernel grows
    // the gateway's send buffer up to 4 MiB, which fills before the queue does.)
    let producing = paced_producer(&gw, "HALF", 400, 8000, 12_000, stop.clone());
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut frames: Vec<Value> = Vec::new();
    let ended = loop {
        tick.tick().await;
        if started.elapsed() > Duration::from_secs(25) {
            stop.cancel();
            panic!(
                "a client reading at half rate is still connected after {:?} ({} frames read, {} gaps, {} events produced)",
                started.elapsed(),
                frames.len(),
                frames.iter().filter(|f| f["type"] == "gap").count(),
                producing.await.unwrap()
            );
        }
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => frames.push(serde_json::from_str::<Value>(&t).unwrap()),
            Some(Ok(Message::Close(c))) => break c.map(|c| (c.code, c.reason.to_string())),
            Some(Ok(_)) => {}
            other => panic!("the stream ended without a close frame: {other:?}"),
        }
    };
    stop.cancel();
    let produced = producing.await.unwrap();
    eprintln!(
        "half rate: closed after {:?}, {produced} events produced, {} frames read: {ended:?}",
        started.elapsed(),
        frames.len()
    );
    assert_eq!(ended, Some((CloseCode::Policy, "slow consumer".to_owned())));
    let gaps = assert_no_silent_loss(&frames, "HALF.trade");
    assert!(gaps > 0, "the client lost events and was never told");
    gw.shutdown().await;
}

/// Item 2, `drop`: the client stays connected, and before the channel's next event it
/// learns exactly which offsets it lost.
#[tokio::test]
async fn frames_dropped_under_the_drop_policy_are_announced_by_a_gap() {
    let _turn = SERIAL.lock().await;
    let gw = Gateway::start(
        testkit::shared(),
        &[
            "--slow-client",
            "drop",
            "--client-queue",
            "16",
            "--slow-client-timeout",
            "20s",
        ],
    )
    .await;
    let mut ws = small_buffer_client(gw.addr).await;
    subscribe_raw(&mut ws, "GAP.trade").await;
    let dropped = "ws_messages_dropped_total{reason=\"queue_full\"}";
    let before = metric(gw.addr, dropped).await;
    let gap_frames_before = metric(gw.addr, "ws_gap_frames_total").await;
    // ~1.6 MB the client does not read while it is produced.
    let producing = paced_producer(&gw, "GAP", 2000, 4000, 400, CancellationToken::new());
    assert_eq!(producing.await.unwrap(), 400);
    let deadline = Instant::now() + WAIT;
    let lost = loop {
        let now = metric(gw.addr, dropped).await - before;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if now > 0.0 && metric(gw.addr, dropped).await - before == now {
            break now;
        }
        assert!(Instant::now() < deadline, "no frame was dropped");
    };
    let mut c = Client::connect_with(ws).await;
    let mut frames = c.drain().await;
    // The next event of the channel comes after a gap frame when the last ones were lost.
    let p = producer(testkit::shared());
    let env = envelope(EventType::TradeExecuted, "GAP", json!({"seq": 400}));
    produce(&p, vec![record(&gw.names, &env)]).await;
    let mut next = c.recv().await;
    if next["type"] == "gap" {
        frames.push(next);
        next = c.recv().await;
    }
    assert_eq!(next["data"]["seq"], 400, "{next}");
    frames.push(next);
    let gaps = assert_no_silent_loss(&frames, "GAP.trade");
    let reported: f64 = frames
        .iter()
        .filter(|f| f["type"] == "gap")
        .map(|f| f["dropped"].as_f64().unwrap())
        .sum();
    eprintln!("drop policy: {lost} frames dropped, reported by {gaps} gap frame(s)");
    assert!(
        gaps > 0,
        "frames were dropped and the client was never told"
    );
    assert_eq!(reported, lost, "gap frames report every dropped frame");
    // Process-wide (every test's gateway records into one registry): compared as a delta.
    let gap_frames = metric(gw.addr, "ws_gap_frames_total").await - gap_frames_before;
    assert_eq!(gap_frames, gaps as f64);
    // Still connected and answering.
    let (pong, _) = c.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong");
    gw.shutdown().await;
}

/// Reads until the close frame; panics when the stream ends without one.
async fn close_while_reading(ws: &mut futures::stream::SplitStream<Ws>) -> (CloseCode, String) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("no close within {WAIT:?}"),
            Ok(Some(Ok(Message::Close(Some(c))))) => return (c.code, c.reason.to_string()),
            Ok(Some(Ok(Message::Close(None)))) => panic!("a close frame without a code"),
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("the stream ended without a close frame: {other:?}"),
        }
    }
}

/// Item 3: the close frame, code and reason, reaches a client that is still sending (rate
/// limit after a burst of 60 pings; rate limit while sending without pause; shutdown).
#[tokio::test]
async fn the_close_frame_reaches_a_client_that_is_still_sending() {
    let _turn = SERIAL.lock().await;
    let gw = Gateway::start(testkit::shared(), &[]).await;

    // 60 pings at once, then read: 20 pongs (the burst), 10 `rate_limited`, then 1008.
    let mut c = gw.client().await;
    for i in 0..60 {
        let ping = json!({"type": "ping", "id": i});
        c.ws.feed(Message::text(ping.to_string())).await.unwrap();
    }
    c.ws.flush().await.unwrap();
    let (frames, ended) = c.until_end().await;
    let pongs = frames.iter().filter(|f| f["type"] == "pong").count();
    let limited = frames
        .iter()
        .filter(|f| f["code"] == "rate_limited")
        .count();
    assert_eq!((pongs, limited), (20, 10), "{frames:?}");
    match ended {
        Ended::Closed(Some((code, reason))) => {
            assert_eq!(
                (code, reason.as_str()),
                (CloseCode::Policy, "rate limit exceeded")
            );
        }
        other => panic!("60 pings at once: {other:?} instead of 1008"),
    }

    // Pings without pause from another task while this one reads.
    let (mut sink, mut stream) = gw.client().await.ws.split();
    let sending = tokio::spawn(async move {
        let mut n = 0u64;
        while sink
            .send(Message::text(json!({"type": "ping", "id": n}).to_string()))
            .await
            .is_ok()
            && n < 100_000
        {
            n += 1;
        }
    });
    assert_eq!(
        close_while_reading(&mut stream).await,
        (CloseCode::Policy, "rate limit exceeded".to_owned())
    );
    tokio::time::timeout(WAIT, sending).await.unwrap().unwrap();

    // Shutdown while a client sends (within its rate limit) and reads.
    let (mut sink, mut stream) = gw.client().await.ws.split();
    let sending = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            let ping = json!({"type": "ping", "id": n, "pad": "p".repeat(4000)});
            if sink.send(Message::text(ping.to_string())).await.is_err() {
                return;
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(gw.shutdown());
    assert_eq!(
        close_while_reading(&mut stream).await,
        (CloseCode::Away, "server shutting down".to_owned())
    );
    stopping.await.unwrap();
    tokio::time::timeout(WAIT, sending).await.unwrap().unwrap();
}

/// Item 4: a client whose queue never empties (it reads at half its channel's rate) is
/// still heard: its `unsubscribe` is answered within seconds, not when traffic stops.
#[tokio::test]
async fn client_input_is_heard_while_the_queue_never_empties() {
    let _turn = SERIAL.lock().await;
    let gw = Gateway::start(
        testkit::shared(),
        &[
            "--slow-client",
            "drop",
            // Deep enough that a lull in the channel never empties it once it is full.
            "--client-queue",
            "512",
            "--slow-client-timeout",
            "20s",
        ],
    )
    .await;
    let mut ws = small_buffer_client(gw.addr).await;
    subscribe_raw(&mut ws, "LOAD.trade").await;
    let stop = CancellationToken::new();
    // 400 events/s of ~8 KB; the client reads 200 a second, so its queue never empties
    // once the kernel buffers are full (the gateway's send buffer grows up to 4 MiB).
    let producing = paced_producer(&gw, "LOAD", 400, 8000, 12_000, stop.clone());
    let (mut sink, mut stream) = ws.split();
    let reading = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let mut replied = None;
            while !stop.is_cancelled() {
                tick.tick().await;
                match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        let f: Value = serde_json::from_str(&t).unwrap();
                        if f["id"] == "u" {
                            replied = Some(f);
                            break;
                        }
                    }
                    Ok(Some(Ok(_))) | Err(_) => {}
                    Ok(other) => panic!("the stream ended: {other:?}"),
                }
            }
            replied
        })
    };
    // Kernel buffers (~2.5 s) then the queue (~2.5 s) fill up.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(gw.health().await["channels"], 1);
    let unsub = json!({"type": "unsubscribe", "id": "u", "channels": ["LOAD.trade"]});
    sink.send(Message::text(unsub.to_string())).await.unwrap();
    let sent = Instant::now();
    // Handled by the gateway (the registry has no channel left), whatever is still in the
    // socket buffers ahead of the reply.
    while gw.health().await["channels"] != 0 {
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "an unsubscribe from a busy client not handled after {:?}",
            sent.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answered = sent.elapsed();
    assert!(
        !producing.is_finished(),
        "traffic stopped before the answer"
    );
    stop.cancel();
    producing.await.unwrap();
    // The reply follows the frames queued before it; the reader stops at the reply (or
    // when the stop above reaches it: then `None`).
    let reply = tokio::time::timeout(WAIT, reading).await.unwrap().unwrap();
    if let Some(reply) = reply {
        assert_eq!(reply["type"], "unsubscribed", "{reply}");
    }
    eprintln!("busy client: unsubscribe answered after {answered:?}");
    gw.shutdown().await;
}
