//! Property tests of the client protocol (issue 10): no text a client can send panics the
//! frame parser, every well-formed request parses to exactly what was sent with its id
//! echoed verbatim, every refusal is an error the gateway can answer, and every server
//! frame built from client-controlled text is valid JSON that carries that text unchanged.
//!
//! Cases per property: `PROPTEST_CASES` (default 256); e.g. a longer run:
//! `PROPTEST_CASES=100000 cargo test --release -p ws-gateway --test properties`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use ws_gateway::protocol::{self, ClientError, Command, ErrorCode};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Any JSON value a client could put in `id`.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("\\PC{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn names() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("\\PC{0,12}", 0..6)
}

/// One of the frame shapes a client sends, with arbitrary field values.
fn near_frame() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        Just(json!("subscribe")),
        Just(json!("unsubscribe")),
        Just(json!("ping")),
        Just(json!("auth")),
        json_value(),
    ];
    let field = prop_oneof![
        Just("bundle"),
        Just("tokens"),
        Just("channels"),
        Just("recover"),
        Just("token"),
        Just("id"),
        Just("extra"),
    ];
    (kind, proptest::collection::vec((field, json_value()), 0..5)).prop_map(|(kind, fields)| {
        let mut o = serde_json::Map::new();
        o.insert("type".into(), kind);
        for (k, v) in fields {
            o.insert(k.into(), v);
        }
        Value::Object(o).to_string()
    })
}

fn assert_refusal_is_answerable(text: &str) {
    if let Err((id, e)) = protocol::parse_client_frame(text) {
        // The error frame the gateway would send is JSON with the client's id verbatim.
        let frame = protocol::error(id.as_deref(), &e);
        let v: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], e.code.as_str());
        assert_eq!(v["message"], e.message.as_str());
        if let Some(id) = id {
            assert!(
                frame.contains(&format!(",\"id\":{},", id.get())),
                "{}",
                frame.as_str()
            );
        }
    }
}

/// Found by the `client_frame` fuzz target: an id that is a number beyond f64's range is
/// echoed verbatim. The error frame is valid JSON (numbers have no range), which strict
/// parsers such as serde_json without `arbitrary_precision` refuse to read as a value.
#[test]
fn out_of_range_numeric_ids_are_echoed_verbatim() {
    let text = "\r{\"id\"\t:-7666666666666666666666666666666666666e66666466666666664666666}\t";
    let (id, e) = protocol::parse_client_frame(text).unwrap_err();
    let frame = protocol::error(id.as_deref(), &e);
    assert!(
        serde_json::from_str::<Box<RawValue>>(&frame).is_ok(),
        "{}",
        frame.as_str()
    );
    assert!(
        frame.contains("\"id\":-7666666666666666666666666666666666666e66666466666666664666666,")
    );
    assert!(serde_json::from_str::<Value>(&frame).is_err());
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics_the_parser(text in "\\PC{0,300}") {
        assert_refusal_is_answerable(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        // Text frames are UTF-8 by the time they reach the parser; lossy conversion keeps
        // every other byte pattern.
        assert_refusal_is_answerable(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn near_frames_never_panic_and_refusals_are_answerable(text in near_frame()) {
        assert_refusal_is_answerable(&text);
    }

    #[test]
    fn mutated_frames_never_panic(
        text in near_frame(),
        cut in any::<prop::sample::Index>(),
        insert in "\\PC{0,4}",
    ) {
        let at = cut.index(text.len() + 1);
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let mutated = format!("{}{}{}", &text[..at], insert, &text[at..]);
        assert_refusal_is_answerable(&mutated);
        assert_refusal_is_answerable(&text[..at]);
    }

    #[test]
    fn well_formed_subscriptions_parse_to_what_was_sent(
        subscribe in any::<bool>(),
        id in proptest::option::of(json_value()),
        bundle in proptest::option::of("\\PC{0,12}"),
        tokens in names(),
        channels in names(),
        recover in proptest::collection::btree_map("\\PC{0,12}", -1i64..i64::MAX, 0..4),
    ) {
        let kind = if subscribe { "subscribe" } else { "unsubscribe" };
        let mut o = json!({"type": kind, "tokens": tokens, "channels": channels});
        if let Some(b) = &bundle { o["bundle"] = json!(b); }
        if let Some(i) = &id { o["id"] = i.clone(); }
        // Longer ids are refused (`bad_request`, issue 15); that is tested in `protocol`.
        prop_assume!(id.as_ref().is_none_or(|v| v.to_string().len() <= protocol::MAX_ID_BYTES));
        if subscribe && !recover.is_empty() { o["recover"] = json!(recover); }
        let f = protocol::parse_client_frame(&o.to_string()).unwrap();
        // `"id":null` counts as no id; any other id is kept as the client wrote it (compared
        // as text: serde_json's float parsing does not round-trip every f64 exactly).
        let want_id = id.filter(|v| !v.is_null()).map(|v| v.to_string());
        prop_assert_eq!(f.id.as_deref().map(|r| r.get().to_owned()), want_id);
        let req = match f.command {
            Command::Subscribe(r) if subscribe => r,
            Command::Unsubscribe(r) if !subscribe => r,
            other => panic!("{kind} parsed as {other:?}"),
        };
        prop_assert_eq!(req.bundle, bundle);
        prop_assert_eq!(req.tokens, tokens);
        prop_assert_eq!(req.channels, channels);
        if subscribe { prop_assert_eq!(req.recover, recover); }
    }

    #[test]
    fn auth_and_ping_parse(token in "\\PC{0,64}", id in proptest::option::of(any::<u32>())) {
        let mut o = json!({"type": "auth", "token": token});
        if let Some(i) = id { o["id"] = json!(i); }
        let f = protocol::parse_client_frame(&o.to_string()).unwrap();
        prop_assert_eq!(f.command, Command::Auth { token });
        let f = protocol::parse_client_frame(r#"{"type":"ping","id":1}"#).unwrap();
        prop_assert_eq!(f.command, Command::Ping);
    }

    #[test]
    fn unknown_fields_are_refused_as_bad_requests(field in "[a-z]{1,10}", v in json_value()) {
        prop_assume!(!["type", "id", "bundle", "tokens", "channels", "recover"].contains(&field.as_str()));
        let mut o = json!({"type": "subscribe", "channels": ["BTC.trade"]});
        o[field.as_str()] = v;
        let (_, e) = protocol::parse_client_frame(&o.to_string()).unwrap_err();
        prop_assert_eq!(e.code, ErrorCode::BadRequest);
    }

    #[test]
    fn server_frames_with_client_text_are_valid_json(
        message in "\\PC{0,64}",
        channels in names(),
        user in "\\PC{0,32}",
        id in proptest::option::of(json_value()),
        ts in any::<i64>(),
    ) {
        let raw = id.as_ref().map(|v| RawValue::from_string(v.to_string()).unwrap());
        let raw = raw.as_deref();
        let e = ClientError::new(ErrorCode::InvalidChannel, message.clone());
        let v: Value = serde_json::from_str(&protocol::error(raw, &e)).unwrap();
        prop_assert_eq!(&v["message"], &json!(message));
        let reply = protocol::subscription_reply(true, raw, channels.iter().map(String::as_str));
        let v: Value = serde_json::from_str(&reply).unwrap();
        prop_assert_eq!(&v["channels"], &json!(channels));
        if let Some(id) = &id {
            let echoed = format!(",\"id\":{id},");
            prop_assert!(reply.contains(&echoed), "{} lacks {}", reply.as_str(), echoed);
        }
        let v: Value = serde_json::from_str(&protocol::authenticated(raw, &user, ts)).unwrap();
        prop_assert_eq!(&v["userId"], &json!(user));
        let v: Value = serde_json::from_str(&protocol::pong(raw, ts)).unwrap();
        prop_assert_eq!(&v["timestamp"], &json!(ts));
    }
}
