//! The live console, tested as a user would: a real broker (testkit), the gateway in-process
//! on 127.0.0.1:0, and Debian's chromium driven headless over WebDriver. The page is opened,
//! a bundle is subscribed through the form, events are produced to Kafka, and they must show
//! up in the table; pause, filter, the gateway figures and the reconnect notice are checked
//! through the page too. The browser log must hold no error while the gateway is up. A
//! screenshot is saved to `target/console-e2e.png`.
//!
//! Skips, saying so, when chromium or chromedriver is not installed
//! (`scripts/install-browser.sh` installs them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "console_support/webdriver.rs"]
mod webdriver;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use odin_events::envelope::SOURCE_PUBLISHER;
use odin_events::{
    Category, Classification, Envelope, EventType, Metadata, TopicNames, EVENT_VERSION,
};
use odin_service::{KafkaHealth, OutRecord, Producer, ProducerConfig};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use webdriver::{Browser, Driver, Profile, Session};

/// A token no other test uses, so the table holds only this test's events.
const TOKEN: &str = "CONSOLE";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// The first event type of a category.
fn event_of(category: Category) -> EventType {
    EventType::ALL
        .into_iter()
        .find(|t| t.category() == category)
        .unwrap()
}

fn record(names: &TopicNames, t: EventType, event_id: &str, i: i64) -> OutRecord {
    record_for(
        names,
        t,
        TOKEN,
        Classification::default_for(t),
        None,
        event_id,
        i,
    )
}

fn record_for(
    names: &TopicNames,
    t: EventType,
    token: &str,
    classification: Classification,
    user_id: Option<&str>,
    event_id: &str,
    i: i64,
) -> OutRecord {
    let env = Envelope {
        metadata: Metadata {
            event_id: event_id.to_owned(),
            event_type: t,
            event_version: EVENT_VERSION.into(),
            correlation_id: format!("corr-{event_id}"),
            timestamp: chrono_ms() + i,
            source: SOURCE_PUBLISHER.into(),
            data_classification: classification,
            token_id: token.into(),
            user_id: user_id.map(str::to_owned),
        },
        data: json!({"price": "1.2345", "amount": i, "note": format!("console e2e {event_id}")})
            .as_object()
            .cloned()
            .unwrap(),
    };
    let mut rec = OutRecord::new(
        names.topic_for(t),
        Some(env.key().to_vec()),
        env.to_json(),
        env.metadata.timestamp,
    );
    for (k, v) in env.headers() {
        rec = rec.header(k, v);
    }
    rec
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Gateway {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Gateway {
    async fn start(listener: TcpListener, brokers: &str) -> Result<Gateway> {
        Self::start_with(listener, brokers, &[]).await
    }

    async fn start_with(listener: TcpListener, brokers: &str, extra: &[&str]) -> Result<Gateway> {
        let addr = listener.local_addr()?;
        let mut args = vec![
            "ws-gateway",
            "--kafka-brokers",
            brokers,
            "--fetch-max-wait-ms",
            "25",
            "--shutdown-grace",
            "2s",
        ];
        args.extend_from_slice(extra);
        let config = ws_gateway::Config::try_parse_from(args)?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let r = ws_gateway::run(config, listener, async move { token.cancelled().await }).await;
            if let Err(e) = r {
                eprintln!("gateway failed: {e}");
            }
        });
        let gw = Gateway { addr, stop, task };
        gw.wait_healthy().await?;
        Ok(gw)
    }

    /// `/health` is 200 once every partition has its start position, so records produced
    /// from then on reach subscribers.
    async fn wait_healthy(&self) -> Result<()> {
        let http = reqwest::Client::builder().no_proxy().build()?;
        let url = format!("http://{}/health", self.addr);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("gateway on {} not healthy within 30 s", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Polls `check` until it gives `Some`, or fails after `secs` with `what`.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if tokio::time::Instant::now() >= deadline {
            match last_err {
                Some(e) => bail!("timed out after {secs} s waiting for {what} (last error: {e:#})"),
                None => bail!("timed out after {secs} s waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The table as the user sees it: (eventId, time, channel, event, offset, data) per row.
async fn table(s: &Session) -> Result<Vec<[String; 6]>> {
    let v = s
        .execute(
            "return Array.from(document.querySelectorAll('#event-rows tr')).map(tr =>
               [tr.dataset.eventId || ''].concat(Array.from(tr.children).map(td => td.textContent)));",
            json!([]),
        )
        .await?;
    let rows: Vec<Vec<String>> = serde_json::from_value(v)?;
    Ok(rows
        .into_iter()
        .filter(|r| r.len() == 6)
        .map(|r| {
            [
                r[0].clone(),
                r[1].clone(),
                r[2].clone(),
                r[3].clone(),
                r[4].clone(),
                r[5].clone(),
            ]
        })
        .collect())
}

fn ids(rows: &[[String; 6]]) -> Vec<&str> {
    rows.iter().map(|r| r[0].as_str()).collect()
}

async fn produce(producer: &Producer, records: Vec<OutRecord>) -> Result<()> {
    for r in producer.send_all(records).await {
        r.map_err(|e| anyhow::anyhow!("produce failed: {e}"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_a_subscribed_bundle_live_in_a_real_browser() -> Result<()> {
    let Some(browser) = Browser::find() else {
        println!(
            "SKIPPED console_e2e: chromium and/or chromedriver not found on PATH \
             (run scripts/install-browser.sh, or set CHROMIUM_BIN/CHROMEDRIVER_BIN)"
        );
        return Ok(());
    };
    let out = target_dir();
    std::fs::create_dir_all(&out)?;
    let broker = testkit::shared();
    let names = TopicNames::default();

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let gw = Gateway::start(listener, broker.addr()).await?;

    let profile = Profile::new("odin-console-e2e");
    let driver = Driver::start(
        &browser.chromedriver,
        &out.join("console-e2e-chromedriver.log"),
    )
    .await?;
    let session = driver
        .new_session(&browser.chromium, &profile.0, (1440, 1000))
        .await?;

    let result = drive(&session, &gw, broker, &names, &out).await;

    // Whatever happened: a screenshot for inspection, then everything is stopped.
    if let Ok(png) = session.screenshot().await {
        let _ = std::fs::write(out.join("console-e2e-last.png"), png);
    }
    let _ = session.close().await;
    driver.stop();
    // `drive` stopped this gateway for the reconnect check (and its replacement itself).
    gw.stop().await;
    result
}

async fn drive(
    s: &Session,
    first: &Gateway,
    broker: &'static testkit::Broker,
    names: &TopicNames,
    out: &std::path::Path,
) -> Result<()> {
    let addr = first.addr;
    let producer = Producer::new(
        broker.connector(),
        ProducerConfig::default(),
        KafkaHealth::new("console_e2e_kafka_connected"),
    );

    s.goto(&format!("http://{addr}/")).await?;
    let title = s.execute("return document.title", json!([])).await?;
    assert_eq!(title, json!("Odin Stream console"));
    eventually(15, "the page to connect", || async {
        Ok(s.text("#conn-status")
            .await?
            .starts_with("connected")
            .then_some(()))
    })
    .await?;

    // Subscribe to PRICE_ONLY (trade, analytics) for our token through the form.
    s.click("#bundle option[value='PRICE_ONLY']").await?;
    s.type_into("#tokens", TOKEN).await?;
    s.type_into("#channels", "").await?;
    s.click("#subscribe").await?;
    let want_channels = [format!("{TOKEN}.analytics"), format!("{TOKEN}.trade")];
    eventually(10, "the subscription to be confirmed", || async {
        let subs = s.text("#subs").await?;
        Ok(want_channels
            .iter()
            .all(|c| subs.contains(c.as_str()))
            .then_some(()))
    })
    .await?;
    assert_eq!(s.text("#subs-count").await?, "2");

    // Events in the bundle's categories, and one outside it that must not be shown.
    let trade = event_of(Category::Trade);
    let analytics = event_of(Category::Analytics);
    let social = event_of(Category::Social);
    let mut records = Vec::new();
    let mut expected = Vec::new();
    for i in 0..3 {
        let id = format!("e2e-trade-{i}");
        records.push(record(names, trade, &id, i));
        expected.push(id);
    }
    for i in 0..2 {
        let id = format!("e2e-analytics-{i}");
        records.push(record(names, analytics, &id, i));
        expected.push(id);
    }
    records.push(record(names, social, "e2e-social-0", 0));
    produce(&producer, records).await?;

    let rows = eventually(20, "the produced events in the table", || async {
        let rows = table(s).await?;
        let have = ids(&rows);
        Ok(expected
            .iter()
            .all(|e| have.contains(&e.as_str()))
            .then_some(rows))
    })
    .await?;
    for r in &rows {
        assert!(
            want_channels.contains(&r[2]),
            "row of a channel not subscribed: {r:?}"
        );
        let want_event = if r[2].ends_with(".trade") {
            trade
        } else {
            analytics
        };
        assert_eq!(r[3], want_event.as_str(), "{r:?}");
        assert!(r[5].contains("console e2e"), "data shown compactly: {r:?}");
        assert!(!r[4].is_empty(), "offset shown: {r:?}");
    }
    assert!(!ids(&rows).contains(&"e2e-social-0"));
    // Newest first: within a channel (one partition) offsets descend down the table.
    let trade_offsets: Vec<i64> = rows
        .iter()
        .filter(|r| r[2].ends_with(".trade"))
        .map(|r| r[4].parse().unwrap())
        .collect();
    assert!(
        trade_offsets.windows(2).all(|w| w[0] > w[1]),
        "newest first: {trade_offsets:?}"
    );

    // Filter: only matching rows stay.
    s.type_into("#filter", "e2e-analytics").await?;
    eventually(5, "the filter to apply", || async {
        let rows = table(s).await?;
        Ok((rows.len() == 2 && rows.iter().all(|r| r[2].ends_with(".analytics"))).then_some(()))
    })
    .await?;
    s.type_into("#filter", "").await?;
    eventually(5, "the filter to clear", || async {
        Ok((table(s).await?.len() >= expected.len()).then_some(()))
    })
    .await?;

    // Pause by keyboard ("p"), events keep arriving but the table holds still; resume shows them.
    s.click("#h-events").await?;
    s.press_keys("p").await?;
    eventually(5, "the pause", || async {
        Ok((s.text("#pause").await? == "Resume").then_some(()))
    })
    .await?;
    produce(&producer, vec![record(names, trade, "e2e-paused-0", 9)]).await?;
    eventually(20, "the page to count an event while paused", || async {
        Ok(s.text("#pause-note")
            .await?
            .contains("new while paused")
            .then_some(()))
    })
    .await?;
    assert!(
        !ids(&table(s).await?).contains(&"e2e-paused-0"),
        "paused table must not change"
    );
    s.click("#pause").await?;
    eventually(5, "the held event after resume", || async {
        Ok(ids(&table(s).await?)
            .contains(&"e2e-paused-0")
            .then_some(()))
    })
    .await?;

    // Per-category figures count what arrived (redrawn every second): 4 trade, 2 analytics.
    let cats = eventually(5, "the per-category totals", || async {
        let cats = s
            .execute(
                "return Object.fromEntries(Array.from(document.querySelectorAll('#cat-rows tr'))
                   .map(tr => [tr.children[0].textContent, tr.children[2].textContent]));",
                json!([]),
            )
            .await?;
        Ok((cats["trade"] == json!("4")).then_some(cats))
    })
    .await?;
    assert_eq!(cats["analytics"], json!("2"), "{cats}");
    assert_eq!(cats["social"], json!("0"), "{cats}");

    // Gateway figures from /stats, refreshed every second.
    eventually(10, "the gateway figures", || async {
        let kafka = s.text("#st-kafka").await?;
        let conns = s.text("#st-connections").await?;
        let deliveries = s.text("#st-deliveries").await?;
        Ok((kafka == "connected"
            && conns.parse::<u64>().is_ok_and(|c| c >= 1)
            && deliveries != "–")
            .then_some(()))
    })
    .await?;
    let topics = s
        .execute(
            "return Array.from(document.querySelectorAll('#lag-rows li .topic')).map(td => td.textContent);",
            json!([]),
        )
        .await?;
    assert!(
        topics
            .as_array()
            .is_some_and(|t| t.contains(&json!("odin.trades"))),
        "lag per topic lists the topics: {topics}"
    );

    // A few seconds of steady traffic (paced, not a synchronisation) so the rates, the
    // sparkline and the screenshot have something to show.
    s.click("#lag-details summary").await?;
    for round in 0..12 {
        let recs = (0..3)
            .map(|k| {
                let t = if k == 2 { analytics } else { trade };
                record(names, t, &format!("e2e-steady-{round}-{k}"), 20 + round)
            })
            .collect();
        produce(&producer, recs).await?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eventually(10, "the sparkline to draw", || async {
        let pts = s
            .execute(
                "return document.getElementById('spark-page').getAttribute('points').split(' ').length",
                json!([]),
            )
            .await?;
        Ok((pts.as_u64().unwrap_or(0) >= 3).then_some(()))
    })
    .await?;
    eventually(10, "the steady traffic in the table", || async {
        Ok(ids(&table(s).await?)
            .contains(&"e2e-steady-11-2")
            .then_some(()))
    })
    .await?;

    // No error in the browser log while everything was up (network errors included).
    let log = s.browser_log().await?;
    let errors: Vec<_> = log.iter().filter(|e| e.level == "SEVERE").collect();
    assert!(errors.is_empty(), "browser errors: {errors:#?}");

    let png = s.screenshot().await?;
    assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
    std::fs::write(out.join("console-e2e.png"), &png).context("saving the screenshot")?;
    println!("screenshot: {}", out.join("console-e2e.png").display());

    // The gateway goes away: the page says it is reconnecting. An event is produced while
    // it is away; a gateway on the same address comes back and the page re-subscribes by
    // itself with the last offsets it saw. A gateway with offset recovery replays the missed
    // event; one without refuses `recover` and the page re-subscribes without it, saying so.
    first.stop.cancel();
    eventually(15, "the reconnect notice", || async {
        let note = s.text("#reconnect-note").await?;
        Ok(note.contains("Reconnecting in").then_some(note))
    })
    .await?;
    produce(
        &producer,
        vec![record(names, trade, "e2e-during-outage", 10)],
    )
    .await?;
    // The first gateway releases the port when its accept loop ends; bind it again.
    let listener = eventually(10, "the gateway port to be free", || async {
        Ok(TcpListener::bind(addr).await.ok())
    })
    .await
    .context("re-binding the gateway port")?;
    let second = Gateway::start(listener, broker.addr()).await?;
    let result = async {
        eventually(30, "the page to reconnect", || async {
            Ok(s.text("#conn-status")
                .await?
                .starts_with("connected")
                .then_some(()))
        })
        .await?;
        eventually(10, "the subscription to be restored", || async {
            let active = s
                .execute(
                    "return document.querySelectorAll('#subs li:not(.pending)').length",
                    json!([]),
                )
                .await?;
            Ok((active == json!(2)).then_some(()))
        })
        .await?;
        let notices = s.text("#notices").await?;
        assert!(notices.contains("reconnected"), "{notices}");
        if notices.contains("; recovery:") {
            assert!(notices.contains(&format!("{TOKEN}.trade +1")), "{notices}");
            eventually(
                10,
                "the event missed during the outage (recovered)",
                || async {
                    Ok(ids(&table(s).await?)
                        .contains(&"e2e-during-outage")
                        .then_some(()))
                },
            )
            .await?;
        } else {
            assert!(notices.contains("no offset recovery"), "{notices}");
        }
        produce(
            &producer,
            vec![record(names, analytics, "e2e-after-reconnect", 11)],
        )
        .await?;
        eventually(20, "an event after the reconnect", || async {
            Ok(ids(&table(s).await?)
                .contains(&"e2e-after-reconnect")
                .then_some(()))
        })
        .await?;
        let png = s.screenshot().await?;
        std::fs::write(out.join("console-e2e-reconnected.png"), &png)?;

        // Unsubscribe one channel with its own button: the gateway confirms, the list shrinks.
        s.click(&format!(
            "#subs button[aria-label='Unsubscribe {TOKEN}.analytics']"
        ))
        .await?;
        eventually(10, "the unsubscribe to be confirmed", || async {
            let subs = s.text("#subs").await?;
            Ok((s.text("#subs-count").await? == "1" && !subs.contains(".analytics")).then_some(()))
        })
        .await?;
        assert!(s.text("#notices").await?.contains("unsubscribed [unsub-"));
        Ok::<_, anyhow::Error>(())
    }
    .await;
    second.stop().await;
    result
}

/// An HS256 JWT for `sub`, valid for an hour.
fn jwt(secret: &str, sub: &str) -> String {
    let exp = chrono_ms() / 1000 + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": sub, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_jwt_field_authenticates_and_shows_only_the_users_private_events() -> Result<()> {
    let Some(browser) = Browser::find() else {
        println!(
            "SKIPPED console_e2e: chromium and/or chromedriver not found on PATH \
             (run scripts/install-browser.sh, or set CHROMIUM_BIN/CHROMEDRIVER_BIN)"
        );
        return Ok(());
    };
    const SECRET: &str = "console-e2e-secret";
    const AUTH_TOKEN: &str = "CONSOLE-AUTH";
    let out = target_dir();
    std::fs::create_dir_all(&out)?;
    let broker = testkit::shared();
    let names = TopicNames::default();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let gw = Gateway::start_with(listener, broker.addr(), &["--jwt-secret", SECRET]).await?;
    let profile = Profile::new("odin-console-e2e-auth");
    let driver = Driver::start(
        &browser.chromedriver,
        &out.join("console-e2e-auth-chromedriver.log"),
    )
    .await?;
    let session = driver
        .new_session(&browser.chromium, &profile.0, (1440, 1000))
        .await?;

    let s = &session;
    let result = async {
        let producer = Producer::new(
            broker.connector(),
            ProducerConfig::default(),
            KafkaHealth::new("console_e2e_auth_kafka_connected"),
        );
        let balance = event_of(Category::Balances);
        let private = |user: &str, id: &str, i: i64| {
            record_for(
                &names,
                balance,
                AUTH_TOKEN,
                Classification::Restricted,
                Some(user),
                id,
                i,
            )
        };
        // A public record on the same channel (same topic and key, so same partition, after
        // the private ones): once it is shown, the private ones before it were decided.
        let marker = |id: &str, i: i64| {
            record_for(
                &names,
                balance,
                AUTH_TOKEN,
                Classification::Public,
                None,
                id,
                i,
            )
        };

        // The form is pre-filled from the URL; subscribe anonymously first.
        s.goto(&format!(
            "http://{}/?bundle=PORTFOLIO&tokens={AUTH_TOKEN}",
            gw.addr
        ))
        .await?;
        eventually(15, "the page to connect", || async {
            Ok(s.text("#conn-status")
                .await?
                .starts_with("connected")
                .then_some(()))
        })
        .await?;
        s.click("#subscribe").await?;
        eventually(10, "the PORTFOLIO subscription", || async {
            Ok(s.text("#subs")
                .await?
                .contains(&format!("{AUTH_TOKEN}.balances"))
                .then_some(()))
        })
        .await?;

        produce(
            &producer,
            vec![private("alice", "priv-anonymous", 0), marker("marker-0", 1)],
        )
        .await?;
        eventually(20, "the public marker", || async {
            Ok(ids(&table(s).await?).contains(&"marker-0").then_some(()))
        })
        .await?;
        assert!(
            !ids(&table(s).await?).contains(&"priv-anonymous"),
            "an anonymous page saw a private event"
        );

        // A bad token is refused with an error the page shows; the connection stays anonymous.
        s.type_into("#jwt", "not.a.jwt").await?;
        s.click("#send-auth").await?;
        eventually(10, "the unauthorized notice", || async {
            Ok(s.text("#notices")
                .await?
                .contains("unauthorized")
                .then_some(()))
        })
        .await?;

        // alice's token through the field: the gateway confirms, and alice's events show.
        s.type_into("#jwt", &jwt(SECRET, "alice")).await?;
        s.click("#send-auth").await?;
        eventually(10, "the page to be authenticated as alice", || async {
            Ok(s.text("#conn-status")
                .await?
                .contains("as alice")
                .then_some(()))
        })
        .await?;
        produce(
            &producer,
            vec![
                private("alice", "priv-alice-1", 2),
                private("bob", "priv-bob-1", 3),
                marker("marker-1", 4),
            ],
        )
        .await?;
        let rows = eventually(20, "alice's event and the marker", || async {
            let rows = table(s).await?;
            let have = ids(&rows);
            Ok((have.contains(&"priv-alice-1") && have.contains(&"marker-1")).then_some(rows))
        })
        .await?;
        assert!(
            !ids(&rows).contains(&"priv-bob-1"),
            "alice's page saw bob's event"
        );

        // Only the refused token is an error frame; the browser itself logged no error.
        let errors: Vec<_> = s
            .browser_log()
            .await?
            .into_iter()
            .filter(|e| e.level == "SEVERE")
            .collect();
        assert!(errors.is_empty(), "browser errors: {errors:#?}");
        std::fs::write(out.join("console-e2e-auth.png"), s.screenshot().await?)?;
        Ok::<_, anyhow::Error>(())
    }
    .await;

    if let Ok(png) = session.screenshot().await {
        let _ = std::fs::write(out.join("console-e2e-auth-last.png"), png);
    }
    let _ = session.close().await;
    driver.stop();
    gw.stop().await;
    result
}

/// Without a browser (runs even where chromium is absent): a plain GET of `/` is the page
/// with its assets and a strict CSP, `/stats` is JSON with the figures the page reads, and a
/// WebSocket upgrade of `/` still reaches the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_routes_and_the_stream_share_the_root_path() -> Result<()> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let broker = testkit::shared();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let gw = Gateway::start(listener, broker.addr()).await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let base = format!("http://{}", gw.addr);
    let result = async {
        let page = http.get(format!("{base}/")).send().await?;
        assert_eq!(page.status(), 200);
        let csp = page.headers()["content-security-policy"]
            .to_str()?
            .to_owned();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(page.headers()["content-type"]
            .to_str()?
            .starts_with("text/html"));
        let html = page.text().await?;
        assert!(html.contains("<title>Odin Stream console</title>"));
        for (path, kind) in [
            ("/console.js", "text/javascript"),
            ("/console.css", "text/css"),
            ("/odin-client.js", "text/javascript"),
        ] {
            let r = http.get(format!("{base}{path}")).send().await?;
            assert_eq!(r.status(), 200, "{path}");
            assert!(
                r.headers()["content-type"].to_str()?.starts_with(kind),
                "{path}"
            );
        }
        assert_eq!(
            http.get(format!("{base}/console.map"))
                .send()
                .await?
                .status(),
            404
        );

        let stats: serde_json::Value = http
            .get(format!("{base}/stats"))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(stats["kafka"]["connected"], json!(true), "{stats}");
        assert!(
            stats["kafka"]["partitions"]
                .as_u64()
                .is_some_and(|p| p >= 8),
            "{stats}"
        );
        for field in [
            "connections",
            "deliveriesTotal",
            "recordsTotal",
            "dropsTotal",
            "lagTotal",
        ] {
            assert!(stats[field].is_number(), "{field} in {stats}");
        }
        assert!(
            stats["lag"].is_object() && stats["drops"].is_object(),
            "{stats}"
        );

        // An upgrade of `/` is the stream, not the page.
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", gw.addr)).await?;
        ws.send(Message::text(r#"{"type":"ping","id":"root"}"#))
            .await?;
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await?
            .context("stream ended")??;
        let v: serde_json::Value = serde_json::from_str(reply.to_text()?)?;
        assert_eq!(v["type"], json!("pong"), "{v}");
        assert_eq!(v["id"], json!("root"), "{v}");
        let stats: serde_json::Value = http
            .get(format!("{base}/stats"))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(stats["connections"], json!(1), "{stats}");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    gw.stop().await;
    result
}
