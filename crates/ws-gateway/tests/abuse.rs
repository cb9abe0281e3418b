//! Hostile clients against the gateway (issue 10): slow handshakes, never-reading clients,
//! oversized, fragmented and invalid-UTF-8 frames, subscription floods, 10,000
//! subscribe/unsubscribe cycles on one connection and connection churn at ~500/s.
//!
//! Every test runs a gateway in-process on 127.0.0.1:0 over its own topics on the shared
//! testkit broker, with a well-behaved client alongside ([`Witness`]) that must receive every
//! event produced for it, in order, while the abuse goes on. Memory is read from this
//! process's `VmRSS` (the gateway runs in it), so the tests take turns ([`SERIAL`]) and the
//! bounds are generous: they catch growth per connection or per request, not allocator noise.
//! Registry leaks are caught exactly through `/stats` (`connections`, `channels`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use odin_events::EventType;
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// One abuse test at a time: RSS is process-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: u64 = 1024 * 1024;

/// This process's resident set size in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

async fn stats(gw: &Gateway) -> Value {
    let (status, body) = gw.get("/stats").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until `/stats` shows `connections` open connections and `channels` channels.
async fn await_settled(gw: &Gateway, connections: u64, channels: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = stats(gw).await;
        if s["connections"] == json!(connections) && s["channels"] == json!(channels) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {connections} connections and {channels} channels, /stats says {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A well-behaved client subscribed to `WIT.trade`, fed one event every 10 ms by its own
/// producer while a test abuses the gateway; [`Witness::finish`] checks it got them all.
struct Witness {
    stop: CancellationToken,
    producer: JoinHandle<u64>,
    reader: JoinHandle<Vec<u64>>,
    target: tokio::sync::watch::Sender<Option<u64>>,
}

impl Witness {
    async fn start(gw: &Gateway) -> Self {
        let broker = testkit::shared();
        let mut client = gw.client().await;
        let reply = client.subscribe(json!({"channels": ["WIT.trade"]})).await;
        assert_eq!(reply["channels"], json!(["WIT.trade"]));
        let stop = CancellationToken::new();
        let names = gw.names.clone();
        let p = producer(broker);
        let producer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                // Bounded: the tests stop it within a minute; the cap is a backstop.
                while !stop.is_cancelled() && n < 20_000 {
                    let env = envelope(EventType::TradeExecuted, "WIT", json!({ "seq": n }));
                    produce(&p, vec![record(&names, &env)]).await;
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                n
            })
        };
        let (target, mut target_rx) = tokio::sync::watch::channel(None::<u64>);
        let reader = tokio::spawn(async move {
            let mut seqs = Vec::new();
            let mut deadline: Option<Instant> = None;
            loop {
                let want = *target_rx.borrow_and_update();
                if let Some(want) = want {
                    if seqs.len() as u64 >= want {
                        return seqs;
                    }
                    let d = *deadline.get_or_insert_with(|| Instant::now() + WAIT);
                    assert!(
                        Instant::now() < d,
                        "witness got {} of {want} events",
                        seqs.len()
                    );
                }
                match client.next(Duration::from_millis(200)).await {
                    Ok(f) => {
                        assert_eq!(f["type"], "event", "witness got {f}");
                        assert_eq!(f["channel"], "WIT.trade");
                        seqs.push(f["data"]["seq"].as_u64().unwrap());
                    }
                    Err(Ended::Error(e)) if e == "timed out" => {}
                    Err(e) => panic!("witness connection ended: {e:?}"),
                }
            }
        });
        Self {
            stop,
            producer,
            reader,
            target,
        }
    }

    /// Stops producing and asserts the witness received every acknowledged event once, in
    /// order; returns how many.
    async fn finish(self, test: &str) -> u64 {
        self.stop.cancel();
        let produced = self.producer.await.unwrap();
        self.target.send(Some(produced)).unwrap();
        let seqs = self.reader.await.unwrap();
        let expected: Vec<u64> = (0..produced).collect();
        assert_eq!(seqs, expected, "the witness missed or reordered events");
        assert!(produced > 0);
        eprintln!("{test}: the witness received all {produced} events in order");
        produced
    }
}

/// A WebSocket client over a socket with a small receive buffer (so a client that stops
/// reading backs up into the gateway quickly).
async fn small_buffer_client(addr: SocketAddr) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (ws, _) =
        tokio_tungstenite::client_async(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    ws
}

/// True once the server has closed `s` (EOF or reset) within `within`.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // The server may answer (e.g. 431) before closing.
            Ok(Ok(_)) => {}
        }
    }
}

/// The close code a client receives next, skipping other frames; `None` when the stream
/// ended without a close frame.
async fn close_code(client: &mut Client) -> Option<CloseCode> {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no close within {WAIT:?}");
        match client.next(WAIT).await {
            Ok(_) => {}
            Err(Ended::Closed(c)) => return c.map(|(code, _)| code),
            Err(Ended::Eof) => return None,
            Err(Ended::Error(e)) => {
                assert_ne!(e, "timed out", "the server did not close the connection");
                return None;
            }
        }
    }
}

#[tokio::test]
async fn slow_handshakes_are_cut_off_and_other_clients_keep_streaming() {
    let _turn = SERIAL.lock().await;
    let gw = Gateway::start(testkit::shared(), &["--handshake-timeout", "1s"]).await;
    let witness = Witness::start(&gw).await;
    let before = rss();

    // 100 silent connections, 100 that stop halfway through the request head, and 50 that
    // drip one byte every 100 ms (slowloris): all must be closed by the handshake timeout.
    let mut silent = Vec::new();
    let mut partial = Vec::new();
    for _ in 0..100 {
        silent.push(TcpStream::connect(gw.addr).await.unwrap());
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
            .await
            .unwrap();
        partial.push(s);
    }
    let dripping: Vec<JoinHandle<bool>> = (0..50)
        .map(|_| {
            let addr = gw.addr;
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let head = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
                for b in head.iter().cycle().take(200) {
                    // Until the server closes it: then writes fail or reads see EOF.
                    if s.write_all(&[*b]).await.is_err() {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                false
            })
        })
        .collect();
    // A head larger than the gateway accepts (8 KiB) is refused with 431, not buffered.
    // Exactly 8 KiB and unfinished, so the gateway has read all of it when it answers (a
    // close with unread bytes would reset the connection and lose the answer).
    let mut huge = TcpStream::connect(gw.addr).await.unwrap();
    let mut big = String::from("GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: ");
    big.push_str(&"b".repeat(8192 - big.len()));
    huge.write_all(big.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, huge.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // A normal client connects while 250 handshakes hang.
    let mut fresh = gw.client().await;
    fresh.subscribe(json!({"channels": ["BTC.trade"]})).await;

    for s in silent.iter_mut().chain(partial.iter_mut()) {
        assert!(
            closed_by_server(s, Duration::from_secs(10)).await,
            "a stalled handshake was not cut off"
        );
    }
    for d in dripping {
        assert!(d.await.unwrap(), "a slowloris handshake was not cut off");
    }
    drop(fresh);
    await_settled(&gw, 1, 1).await;
    witness.finish("slow_handshakes").await;
    let grown = rss().saturating_sub(before);
    eprintln!("slow_handshakes: RSS grew {} KiB", grown / 1024);
    assert!(grown < 64 * MIB, "RSS grew {} MiB", grown / MIB);
    gw.shutdown().await;
}

#[tokio::test]
async fn never_reading_clients_are_disconnected_and_others_get_everything() {
    let _turn = SERIAL.lock().await;
    let broker = testkit::shared();
    let gw = Gateway::start(
        broker,
        &[
            "--client-queue",
            "4096",
            "--slow-client",
            "disconnect",
            "--slow-client-timeout",
            "2s",
        ],
    )
    .await;
    let witness = Witness::start(&gw).await;
    // A reader on the heavy channel that keeps up.
    let mut reader = gw.client().await;
    reader.subscribe(json!({"channels": ["HOG.trade"]})).await;
    // 20 clients subscribe to the heavy channel and then never read again.
    let mut hogs = Vec::new();
    for i in 0..20 {
        let mut ws = small_buffer_client(gw.addr).await;
        let sub = json!({"type": "subscribe", "id": i, "channels": ["HOG.trade"]});
        ws.send(Message::text(sub.to_string())).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert!(reply.to_text().unwrap().contains("subscribed"), "{reply}");
        hogs.push(ws);
    }
    await_settled(&gw, 22, 2).await;
    let before = rss();

    // ~24 MB for each client: far beyond what socket buffers and a 4,096-frame queue hold
    // (frames are shared, so a full queue costs pointers, not copies).
    const N: u64 = 6000;
    let pad = "x".repeat(4000);
    let p = producer(broker);
    let reading = tokio::spawn(async move {
        let mut seqs = Vec::with_capacity(N as usize);
        while (seqs.len() as u64) < N {
            let f = match reader.next(WAIT).await {
                Ok(f) => f,
                Err(e) => panic!(
                    "the reading client lost its stream after {}: {e:?}",
                    seqs.len()
                ),
            };
            seqs.push(f["data"]["seq"].as_u64().unwrap());
        }
        (seqs, reader)
    });
    for chunk in (0..N).collect::<Vec<_>>().chunks(100) {
        let records = chunk
            .iter()
            .map(|n| {
                let env = envelope(
                    EventType::TradeExecuted,
                    "HOG",
                    json!({"seq": n, "pad": pad}),
                );
                record(&gw.names, &env)
            })
            .collect();
        produce(&p, records).await;
    }
    let (seqs, _reader) = tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the reading client got every event in time")
        .unwrap();
    assert_eq!(
        seqs,
        (0..N).collect::<Vec<_>>(),
        "the reading client missed events"
    );

    // Every never-reader was closed; only the witness and the reader remain.
    await_settled(&gw, 2, 2).await;
    let grown = rss().saturating_sub(before);
    eprintln!(
        "never_reading: RSS grew {} KiB while 20 clients stopped reading",
        grown / 1024
    );
    assert!(grown < 128 * MIB, "RSS grew {} MiB", grown / MIB);
    let kicked = metric(gw.addr, "ws_disconnections_total{reason=\"slow_consumer\"}").await;
    assert!(kicked >= 20.0, "slow-consumer disconnections: {kicked}");
    drop(hogs);
    witness.finish("never_reading").await;
    gw.shutdown().await;
}

/// A raw frame (the client masks it on the way out).
fn frame(op: OpCode, payload: &[u8], is_final: bool) -> Message {
    let mut f = Frame::message(payload.to_vec(), OpCode::Data(Data::Text), is_final);
    f.header_mut().opcode = op;
    Message::Frame(f)
}

#[tokio::test]
async fn oversized_fragmented_and_invalid_utf8_frames() {
    let _turn = SERIAL.lock().await;
    let gw = Gateway::start(testkit::shared(), &["--max-frame-bytes", "4096"]).await;
    let witness = Witness::start(&gw).await;
    let text = OpCode::Data(Data::Text);
    let cont = OpCode::Data(Data::Continue);

    // One frame over the limit: 1009.
    let mut c = gw.client().await;
    let _ = c.ws.send(Message::text("x".repeat(5000))).await;
    assert_eq!(close_code(&mut c).await, Some(CloseCode::Size));

    // A message over the limit in fragments each under it: 1009 as well.
    let mut c = gw.client().await;
    let piece = vec![b' '; 2000];
    for i in 0..4 {
        let op = if i == 0 { text } else { cont };
        if c.ws.send(frame(op, &piece, i == 3)).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut c).await, Some(CloseCode::Size));

    // A fragmented subscribe, with a ping between its fragments, is one valid request.
    let mut c = gw.client().await;
    let body = br#"{"type":"subscribe","id":"frag","channels":["WIT.trade"]}"#;
    c.ws.send(frame(text, &body[..10], false)).await.unwrap();
    c.ws.send(Message::Ping(b"between".to_vec().into()))
        .await
        .unwrap();
    c.ws.send(frame(cont, &body[10..30], false)).await.unwrap();
    c.ws.send(frame(cont, &body[30..], true)).await.unwrap();
    let reply = c.recv().await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["id"], "frag");
    drop(c);

    // Invalid UTF-8 in a text frame, whole or split over fragments: closed with 1007
    // (RFC 6455 §8.1), the gateway keeps going.
    for fragments in [
        vec![&b"{\"type\":\"ping\xff\xfe\"}"[..]],
        vec![b"{\"a\":\"", b"\xc3\x28\"}"],
    ] {
        let mut c = gw.client().await;
        let last = fragments.len() - 1;
        for (i, p) in fragments.iter().enumerate() {
            let op = if i == 0 { text } else { cont };
            let _ = c.ws.send(frame(op, p, i == last)).await;
        }
        assert_eq!(close_code(&mut c).await, Some(CloseCode::Invalid));
    }

    // Not JSON, binary, unknown types: error frames, and the connection stays usable.
    let mut c = gw.client().await;
    for bad in [
        "not json",
        "{}",
        "[]",
        r#"{"type":"dance","id":1}"#,
        "\u{0}",
    ] {
        c.send_text(bad).await;
        let e = c.recv().await;
        assert_eq!(e["type"], "error", "{bad}: {e}");
        assert_eq!(e["code"], "bad_request", "{bad}: {e}");
    }
    c.ws.send(Message::binary(vec![0u8, 159, 146, 150]))
        .await
        .unwrap();
    assert_eq!(c.recv().await["code"], "bad_request");
    let (pong, _) = c.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong");
    drop(c);

    // Bytes that are not WebSocket frames at all (reserved opcode, unmasked): closed.
    for junk in [
        &[0x83u8, 0x80, 1, 2, 3, 4][..],
        &[0x81, 0x02, b'h', b'i'][..],
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(gw.url()).await.unwrap();
        let MaybeTlsStream::Plain(s) = ws.get_mut() else {
            unreachable!()
        };
        s.write_all(junk).await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => panic!("junk {junk:?} did not end the connection"),
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    await_settled(&gw, 1, 1).await;
    witness.finish("oversized_frames").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn subscription_floods_are_limited_and_leave_nothing_behind() {
    let _turn = SERIAL.lock().await;
    let gw = Gateway::start(
        testkit::shared(),
        &[
            "--max-client-msgs-per-sec",
            "20",
            "--max-channels-per-conn",
            "100",
        ],
    )
    .await;
    let witness = Witness::start(&gw).await;

    // 500 subscribes in a burst without reading: rate-limited, then closed 1008. The
    // gateway closes with the rest of the burst unread, so the client may see a reset
    // instead of the close frame; the gateway's counters say what it did.
    let policy = "ws_disconnections_total{reason=\"policy\"}";
    let limited = "ws_client_errors_total{code=\"rate_limited\"}";
    let (policy_before, limited_before) = (
        metric(gw.addr, policy).await,
        metric(gw.addr, limited).await,
    );
    let mut c = gw.client().await;
    for i in 0..500 {
        let f = json!({"type": "subscribe", "id": i, "channels": [format!("F{i}.trade")]});
        if c.ws.send(Message::text(f.to_string())).await.is_err() {
            break;
        }
    }
    let ended = loop {
        match c.next(WAIT).await {
            Ok(f) => assert!(
                f["type"] == "subscribed" || f["code"] == "rate_limited",
                "{f}"
            ),
            Err(e) => break e,
        }
    };
    match &ended {
        Ended::Closed(Some((code, _))) => assert_eq!(*code, CloseCode::Policy),
        Ended::Error(e) => assert!(e.contains("reset"), "flood: {e}"),
        other => panic!("flood ended with {other:?}"),
    }
    assert_eq!(metric(gw.addr, policy).await, policy_before + 1.0);
    // Ten strikes are tolerated, the eleventh closes.
    assert_eq!(metric(gw.addr, limited).await, limited_before + 11.0);
    await_settled(&gw, 1, 1).await;

    // One frame naming 3,000 channels, and a bundle over 1,000 tokens: refused whole.
    let mut c = gw.client().await;
    let many: Vec<String> = (0..3000).map(|i| format!("M{i}.trade")).collect();
    c.send(json!({"type": "subscribe", "id": "many", "channels": many}))
        .await;
    let e = c.recv().await;
    assert_eq!(e["code"], "too_many_subscriptions", "{e}");
    let tokens: Vec<String> = (0..1000).map(|i| format!("B{i}")).collect();
    c.send(json!({"type": "subscribe", "id": "b", "bundle": "ALL", "tokens": tokens}))
        .await;
    assert_eq!(c.recv().await["code"], "too_many_subscriptions");
    let (pong, _) = c.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong");
    drop(c);
    await_settled(&gw, 1, 1).await;

    // 50 connections at their 100-channel limit: 5,000 channels, all gone when they close.
    let mut full = Vec::new();
    for k in 0..50 {
        let mut c = gw.client().await;
        let chans: Vec<String> = (0..100).map(|i| format!("K{k}X{i}.trade")).collect();
        c.subscribe(json!({"channels": chans})).await;
        let e = c
            .request(json!({"type": "subscribe", "channels": [format!("K{k}.trade")]}))
            .await
            .0;
        assert_eq!(e["code"], "too_many_subscriptions", "{e}");
        full.push(c);
    }
    await_settled(&gw, 51, 5001).await;
    drop(full);
    await_settled(&gw, 1, 1).await;
    witness.finish("subscription_floods").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn ten_thousand_subscribe_unsubscribe_cycles_on_one_connection() {
    let _turn = SERIAL.lock().await;
    let gw = Gateway::start(testkit::shared(), &["--max-client-msgs-per-sec", "0"]).await;
    let witness = Witness::start(&gw).await;
    let mut c = gw.client().await;
    const CYCLES: usize = 10_000;
    // Requests are pipelined in windows so the run is quick; replies come back in order.
    const WINDOW: usize = 100;
    let mut rss_half = 0;
    for w in 0..CYCLES / WINDOW {
        for i in 0..WINDOW {
            let token = format!("C{}", (w * WINDOW + i) % 97);
            let sub = json!({"type": "subscribe", "bundle": "TRADING", "tokens": [token]});
            let unsub = json!({"type": "unsubscribe", "bundle": "TRADING", "tokens": [token]});
            c.ws.feed(Message::text(sub.to_string())).await.unwrap();
            c.ws.feed(Message::text(unsub.to_string())).await.unwrap();
        }
        c.ws.flush().await.unwrap();
        for i in 0..2 * WINDOW {
            let f = c.recv().await;
            let want = if i % 2 == 0 {
                "subscribed"
            } else {
                "unsubscribed"
            };
            assert_eq!(f["type"], want, "{f}");
        }
        if w == CYCLES / WINDOW / 2 {
            rss_half = rss();
        }
    }
    // Nothing held: only the witness's channel remains, and the connection still works.
    await_settled(&gw, 2, 1).await;
    let (pong, _) = c.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong");
    let grown = rss().saturating_sub(rss_half);
    eprintln!(
        "sub_unsub_cycles: RSS grew {} KiB over the last 5,000 cycles",
        grown / 1024
    );
    assert!(
        grown < 32 * MIB,
        "RSS grew {} MiB over the last 5,000 cycles",
        grown / MIB
    );
    drop(c);
    witness.finish("sub_unsub_cycles").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn connection_churn_at_500_per_second() {
    let _turn = SERIAL.lock().await;
    let gw = Gateway::start(testkit::shared(), &[]).await;
    let witness = Witness::start(&gw).await;
    const TOTAL: usize = 5000;
    let url = Arc::new(gw.url());
    let limit = Arc::new(tokio::sync::Semaphore::new(256));
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let mut rss_half = 0;
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..TOTAL {
        tick.tick().await;
        if i == TOTAL / 2 {
            rss_half = rss();
        }
        let permit = Arc::clone(&limit).acquire_owned().await.unwrap();
        let url = Arc::clone(&url);
        let failures = Arc::clone(&failures);
        tasks.spawn(async move {
            let _permit = permit;
            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            };
            let sub = json!({"type": "subscribe", "bundle": "TRADING", "tokens": [format!("Z{}", i % 300)]});
            if ws.send(Message::text(sub.to_string())).await.is_err() {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            // Half wait for the reply and close politely; half vanish without a close.
            if i % 2 == 0 {
                let ok = matches!(
                    tokio::time::timeout(WAIT, ws.next()).await,
                    Ok(Some(Ok(Message::Text(t)))) if t.contains("subscribed")
                );
                if !ok {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let _ = ws.close(None).await;
            }
        });
        while let Some(r) = tasks.try_join_next() {
            r.unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let rate = TOTAL as f64 / started.elapsed().as_secs_f64();
    assert_eq!(failures.load(std::sync::atomic::Ordering::Relaxed), 0);
    // Every churned connection is gone from the gateway and the registry.
    await_settled(&gw, 1, 1).await;
    let grown = rss().saturating_sub(rss_half);
    eprintln!(
        "churn: {TOTAL} connections at {rate:.0}/s; RSS grew {} KiB over the last {}",
        grown / 1024,
        TOTAL / 2
    );
    assert!(
        grown < 64 * MIB,
        "RSS grew {} MiB over the last {} connections ({rate:.0}/s)",
        grown / MIB,
        TOTAL / 2
    );
    let accepted = metric(gw.addr, "ws_connections_accepted_total").await;
    assert!(accepted >= TOTAL as f64, "accepted {accepted}");
    witness.finish("churn").await;
    gw.shutdown().await;
}
