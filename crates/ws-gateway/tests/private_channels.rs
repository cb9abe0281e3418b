//! Private data stays private (issue 7): JWT at the upgrade (header or query) or in an
//! `auth` frame, per-user delivery of confidential/restricted events, internal events never
//! leave, bad tokens refused with 401, Origin allow-list with 403, token expiry.
//!
//! Absence is proven with a public marker produced after the private records on the same
//! single-partition topic: once a client holds the marker, the fan-out has already handled
//! every record before it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use odin_events::{Classification, EventType, TopicMode};
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const SECRET: &str = "private-channels-test-secret";

fn now_s() -> i64 {
    now_ms() / 1000
}

fn token_for(user: &str, exp: i64, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": user, "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn token(user: &str) -> String {
    token_for(user, now_s() + 600, SECRET)
}

/// Connects with optional headers; `Err(status)` when the upgrade is refused.
async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Client, u16> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(http_name(k), v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(Client::connect_with(ws).await),
        Err(e) => Err(ws_error_status(&e).unwrap_or_else(|| panic!("not an HTTP refusal: {e}"))),
    }
}

fn http_name(k: &str) -> tokio_tungstenite::tungstenite::http::HeaderName {
    k.parse().unwrap()
}

fn private(
    t: EventType,
    token: &str,
    class: Classification,
    user: Option<&str>,
    n: &str,
) -> odin_events::Envelope {
    let mut e = envelope(t, token, json!({ "n": n }));
    e.metadata.data_classification = class;
    e.metadata.user_id = user.map(str::to_owned);
    e.metadata.event_id = n.to_owned();
    e
}

fn public(t: EventType, token: &str, n: &str) -> odin_events::Envelope {
    let mut e = envelope(t, token, json!({ "n": n }));
    e.metadata.event_id = n.to_owned();
    e
}

fn ids(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn a_user_never_sees_another_users_private_events() {
    let broker = testkit::shared();
    let gw = Gateway::start(broker, &["--jwt-secret", SECRET]).await;
    let url = gw.url();

    // alice by header, bob by query, carol by auth frame, and an anonymous client; each
    // subscribes through a bundle, an explicit channel and a wildcard.
    let mut alice = connect(
        &url,
        &[("authorization", &format!("Bearer {}", token("alice")))],
    )
    .await
    .unwrap();
    let mut bob = connect(&format!("{url}?token={}", token("bob")), &[])
        .await
        .unwrap();
    let mut carol = gw.client().await;
    let (reply, _) = carol
        .request(json!({"type": "auth", "token": token("carol")}))
        .await;
    assert_eq!(reply["type"], "authenticated", "{reply}");
    assert_eq!(reply["userId"], "carol");
    let mut anon = gw.client().await;

    alice
        .subscribe(json!({"bundle": "PORTFOLIO", "tokens": ["BTC"]}))
        .await;
    bob.subscribe(json!({"channels": ["BTC.balances", "ETH.balances", "MARK.balances", "MARK.trade", "BTC.trade"]}))
        .await;
    carol
        .subscribe(json!({"channels": ["*.balances", "*.trade"]}))
        .await;
    anon.subscribe(json!({"channels": ["*.balances", "*.trade", "BTC.balances"]}))
        .await;
    alice
        .subscribe(json!({"channels": ["MARK.balances", "MARK.trade", "*.balances"]}))
        .await;

    use Classification::*;
    let p = producer(broker);
    let records = vec![
        private(
            EventType::BalanceUpdated,
            "BTC",
            Restricted,
            Some("alice"),
            "a-btc",
        ),
        private(
            EventType::BalanceUpdated,
            "ETH",
            Restricted,
            Some("alice"),
            "a-eth",
        ),
        private(
            EventType::TransferCompleted,
            "BTC",
            Confidential,
            Some("bob"),
            "b-btc",
        ),
        private(
            EventType::BalanceUpdated,
            "BTC",
            Restricted,
            Some("carol"),
            "c-btc",
        ),
        // Private without a user: nobody.
        private(EventType::BalanceUpdated, "BTC", Restricted, None, "nobody"),
        // Internal: never leaves the gateway, whoever it names.
        private(
            EventType::BalanceUpdated,
            "BTC",
            Internal,
            Some("alice"),
            "internal-bal",
        ),
        private(
            EventType::TradeExecuted,
            "BTC",
            Internal,
            None,
            "internal-trade",
        ),
        // A private trade for alice, and a public one for everyone.
        private(
            EventType::TradeExecuted,
            "BTC",
            Confidential,
            Some("alice"),
            "a-trade",
        ),
        public(EventType::TradeExecuted, "BTC", "pub-trade"),
        // Balance records default to restricted: without a userId, nobody.
        {
            let mut e = public(EventType::BalanceUpdated, "BTC", "default-restricted");
            e.metadata.data_classification = Classification::default_for(EventType::BalanceUpdated);
            e
        },
        public(EventType::BalanceUpdated, "MARK", "mark-bal"),
        public(EventType::TradeExecuted, "MARK", "mark-trade"),
    ];
    produce(&p, records.iter().map(|e| record(&gw.names, e)).collect()).await;

    // Balances then trades: each topic has one partition, the marker comes last on each.
    let a = until_marker_of(&mut alice, &["mark-bal", "mark-trade"]).await;
    assert_eq!(a, ids(&["a-btc", "a-eth", "a-trade", "pub-trade"]), "alice");
    let b = until_marker_of(&mut bob, &["mark-bal", "mark-trade"]).await;
    assert_eq!(b, ids(&["b-btc", "pub-trade"]), "bob");
    let c = until_marker_of(&mut carol, &["mark-bal", "mark-trade"]).await;
    assert_eq!(c, ids(&["c-btc", "pub-trade"]), "carol");
    let n = until_marker_of(&mut anon, &["mark-bal", "mark-trade"]).await;
    assert_eq!(n, ids(&["pub-trade"]), "anonymous");

    assert!(metric(gw.addr, "ws_records_withheld_total{reason=\"internal\"}").await >= 2.0);
    assert!(
        metric(
            gw.addr,
            "ws_records_withheld_total{reason=\"private_without_user\"}"
        )
        .await
            >= 2.0
    );
    gw.shutdown().await;
}

/// Event ids received until every marker arrived (markers excluded).
async fn until_marker_of(c: &mut Client, markers: &[&str]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut left: BTreeSet<&str> = markers.iter().copied().collect();
    while !left.is_empty() {
        let f = c.recv().await;
        assert_eq!(f["type"], "event", "{f}");
        let id = f["eventId"].as_str().unwrap().to_owned();
        if left.remove(id.as_str()) {
            continue;
        }
        assert!(seen.insert(id.clone()), "duplicate {id}");
    }
    seen
}

#[tokio::test]
async fn bad_tokens_are_refused_at_the_upgrade_and_in_auth_frames() {
    let broker = testkit::shared();
    let gw = Gateway::start(broker, &["--jwt-secret", SECRET]).await;
    let url = gw.url();
    let bearer = |t: &str| format!("Bearer {t}");
    let expired = token_for("alice", now_s() - 10, SECRET);
    let wrong_key = token_for("alice", now_s() + 600, "another-secret");
    for bad in [expired.as_str(), wrong_key.as_str(), "not-a-jwt", "a.b.c"] {
        assert_eq!(
            connect(&url, &[("authorization", &bearer(bad))])
                .await
                .err(),
            Some(401),
            "header {bad}"
        );
        assert_eq!(
            connect(&format!("{url}?token={bad}"), &[]).await.err(),
            Some(401),
            "query {bad}"
        );
    }
    assert_eq!(
        connect(&url, &[("authorization", "Basic YWxpY2U6cHc=")])
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        metric(
            gw.addr,
            "ws_auth_failures_total{stage=\"upgrade\",reason=\"expired\"}"
        )
        .await,
        2.0
    );

    // Anonymous is allowed when auth is optional; a bad auth frame gets `unauthorized` and
    // the connection stays anonymous.
    let mut c = gw.client().await;
    for bad in [expired.as_str(), wrong_key.as_str(), "junk"] {
        let (reply, _) = c.request(json!({"type": "auth", "token": bad})).await;
        assert_eq!(reply["type"], "error");
        assert_eq!(reply["code"], "unauthorized", "{reply}");
    }
    let (reply, _) = c.request(json!({"type": "auth"})).await;
    assert_eq!(reply["code"], "bad_request", "{reply}");
    c.subscribe(json!({"channels": ["BTC.balances", "MARK.balances"]}))
        .await;
    let p = producer(broker);
    produce(
        &p,
        vec![
            record(
                &gw.names,
                &private(
                    EventType::BalanceUpdated,
                    "BTC",
                    Classification::Restricted,
                    Some("alice"),
                    "a1",
                ),
            ),
            record(
                &gw.names,
                &public(EventType::BalanceUpdated, "MARK", "mark"),
            ),
        ],
    )
    .await;
    assert!(until_marker_of(&mut c, &["mark"]).await.is_empty());

    // A connection cannot switch user.
    let (ok, _) = c
        .request(json!({"type": "auth", "token": token("alice")}))
        .await;
    assert_eq!(ok["type"], "authenticated");
    let (no, _) = c
        .request(json!({"type": "auth", "token": token("bob")}))
        .await;
    assert_eq!(no["code"], "unauthorized", "{no}");
    gw.shutdown().await;
}

#[tokio::test]
async fn auth_required_and_origin_allow_list() {
    let broker = testkit::shared();
    let gw = Gateway::start(
        broker,
        &[
            "--jwt-secret",
            SECRET,
            "--auth-required",
            "--allowed-origins",
            "https://app.example.com,http://localhost:5173",
        ],
    )
    .await;
    let url = gw.url();
    let good = format!("Bearer {}", token("alice"));
    assert_eq!(connect(&url, &[]).await.err(), Some(401), "anonymous");
    connect(&url, &[("authorization", &good)]).await.unwrap();
    connect(&format!("{url}?token={}", token("alice")), &[])
        .await
        .unwrap();
    // Origin: allowed, missing (non-browser) and refused.
    connect(
        &url,
        &[
            ("authorization", &good),
            ("origin", "https://app.example.com"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        connect(
            &url,
            &[("authorization", &good), ("origin", "https://evil.example")]
        )
        .await
        .err(),
        Some(403)
    );
    // The Origin check comes first: no token needed to be refused for it.
    assert_eq!(
        connect(&url, &[("origin", "http://localhost:5174")])
            .await
            .err(),
        Some(403)
    );
    assert!(metric(gw.addr, "ws_connections_rejected_total{reason=\"origin\"}").await >= 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_is_told_then_closed_unless_refreshed() {
    let broker = testkit::shared();
    let gw = Gateway::start(broker, &["--jwt-secret", SECRET]).await;
    let url = gw.url();
    // Expires in ~2 s (exp has one-second resolution).
    let short = token_for("alice", now_s() + 2, SECRET);

    let mut stays = connect(&url, &[("authorization", &format!("Bearer {short}"))])
        .await
        .unwrap();
    let mut goes = connect(&format!("{url}?token={short}"), &[]).await.unwrap();
    for c in [&mut stays, &mut goes] {
        let f = c.next(Duration::from_secs(10)).await.unwrap();
        assert_eq!(f["type"], "error", "{f}");
        assert_eq!(f["code"], "token_expired", "{f}");
    }
    // While expired, private events stop.
    stays
        .subscribe(json!({"channels": ["BTC.balances", "MARK.balances"]}))
        .await;
    let p = producer(broker);
    produce(
        &p,
        vec![
            record(
                &gw.names,
                &private(
                    EventType::BalanceUpdated,
                    "BTC",
                    Classification::Restricted,
                    Some("alice"),
                    "while-expired",
                ),
            ),
            record(
                &gw.names,
                &public(EventType::BalanceUpdated, "MARK", "mark"),
            ),
        ],
    )
    .await;
    assert!(until_marker_of(&mut stays, &["mark"]).await.is_empty());
    let (ok, _) = stays
        .request(json!({"type": "auth", "token": token("alice")}))
        .await;
    assert_eq!(ok["type"], "authenticated", "{ok}");

    // Closed with 1008 after the grace period.
    let (_, end) = goes.until_end().await;
    match end {
        Ended::Closed(Some((code, reason))) => {
            assert_eq!(code, CloseCode::Policy);
            assert!(reason.contains("expired"), "{reason}");
        }
        other => panic!("expected a 1008 close, got {other:?}"),
    }
    // The refreshed one is still served, and gets private events again.
    produce(
        &p,
        vec![
            record(
                &gw.names,
                &private(
                    EventType::BalanceUpdated,
                    "BTC",
                    Classification::Restricted,
                    Some("alice"),
                    "after-refresh",
                ),
            ),
            record(
                &gw.names,
                &public(EventType::BalanceUpdated, "MARK", "mark2"),
            ),
        ],
    )
    .await;
    assert_eq!(
        until_marker_of(&mut stays, &["mark2"]).await,
        ids(&["after-refresh"])
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn without_a_secret_no_private_event_is_delivered() {
    let broker = testkit::shared();
    let gw = Gateway::start_with(broker, TopicMode::PerCategory, 1, &[]).await;
    // A token is ignored (nothing to check it with); the client is anonymous.
    let mut c = connect(&format!("{}?token={}", gw.url(), token("alice")), &[])
        .await
        .unwrap();
    let (reply, _) = c
        .request(json!({"type": "auth", "token": token("alice")}))
        .await;
    assert_eq!(reply["code"], "unauthorized", "{reply}");
    c.subscribe(json!({"channels": ["*.balances"]})).await;
    let p = producer(broker);
    produce(
        &p,
        vec![
            record(
                &gw.names,
                &private(
                    EventType::BalanceUpdated,
                    "BTC",
                    Classification::Restricted,
                    Some("alice"),
                    "a1",
                ),
            ),
            record(
                &gw.names,
                &public(EventType::BalanceUpdated, "MARK", "mark"),
            ),
        ],
    )
    .await;
    assert!(until_marker_of(&mut c, &["mark"]).await.is_empty());
    assert!(
        metric(
            gw.addr,
            "ws_records_withheld_total{reason=\"auth_disabled\"}"
        )
        .await
            >= 1.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn rs256_tokens_from_a_public_key_file() {
    let broker = testkit::shared();
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
    let public = format!("{keys}/rsa_public.pem");
    let gw = Gateway::start(
        broker,
        &["--jwt-public-key-file", &public, "--auth-required"],
    )
    .await;
    let private = std::fs::read(format!("{keys}/rsa_private.pem")).unwrap();
    let claims = json!({"sub": "alice", "exp": now_s() + 600});
    let rs = encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&private).unwrap(),
    )
    .unwrap();
    let mut c = connect(&format!("{}?token={rs}", gw.url()), &[])
        .await
        .unwrap();
    let (reply, _) = c.request(json!({"type": "auth", "token": rs})).await;
    assert_eq!(reply["userId"], "alice", "{reply}");
    // HS256 "signed" with the public key text (algorithm confusion) is refused.
    let pem = std::fs::read_to_string(&public).unwrap();
    let confused = token_for("alice", now_s() + 600, &pem);
    assert_eq!(
        connect(&format!("{}?token={confused}", gw.url()), &[])
            .await
            .err(),
        Some(401)
    );
    gw.shutdown().await;
}
