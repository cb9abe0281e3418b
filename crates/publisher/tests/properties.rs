//! Property tests of `POST /events` validation (issue 10): no body panics the parser, every
//! valid event (any type, any extra data) is accepted with its data unchanged, and a batch
//! with one bad event is refused whole, naming that event's index.
//!
//! Cases per property: `PROPTEST_CASES` (default 256); e.g. a longer run:
//! `PROPTEST_CASES=100000 cargo test --release -p publisher --test properties`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use odin_events::EventType;
use proptest::prelude::*;
use publisher::ingest::{parse_body, IngestError};
use publisher::schema::{required_fields, Kind};
use serde_json::{json, Map, Value};

const MAX_BATCH: usize = 50;

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

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("\\PC{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value `kind` accepts.
fn valid(kind: Kind) -> BoxedStrategy<Value> {
    match kind {
        Kind::Numeric => prop_oneof![
            // Positive: a trade's price and amount must map to a trade-info record.
            (1i64..1_000_000_000).prop_map(Value::from),
            (1u64..1_000_000_000, 0u32..9)
                .prop_map(|(m, s)| Value::from(rust_decimal_string(m, s))),
        ]
        .boxed(),
        Kind::Count => (0u64..u64::MAX).prop_map(Value::from).boxed(),
        Kind::Text => "[A-Za-z0-9][\\PC]{0,20}".prop_map(Value::from).boxed(),
        Kind::Side => prop_oneof![Just("buy"), Just("SELL"), Just("Sell")]
            .prop_map(Value::from)
            .boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::from).boxed(),
        Kind::Object => Just(json!({"a": 1})).boxed(),
    }
}

fn rust_decimal_string(mantissa: u64, scale: u32) -> String {
    let s = mantissa.to_string();
    if scale == 0 || (scale as usize) >= s.len() {
        return s;
    }
    let (i, f) = s.split_at(s.len() - scale as usize);
    format!("{i}.{f}")
}

/// A valid event of any type: its required fields plus arbitrary extra data.
fn valid_event() -> impl Strategy<Value = Value> {
    (0..EventType::ALL.len(), "[A-Za-z0-9_:-]{1,32}").prop_flat_map(|(t, token)| {
        let t = EventType::ALL[t];
        let fields: Vec<BoxedStrategy<(String, Value)>> = required_fields(t)
            .iter()
            .map(|(name, kind)| {
                valid(*kind)
                    .prop_map(move |v| (name.to_string(), v))
                    .boxed()
            })
            .collect();
        let extra = proptest::collection::btree_map("x[a-z]{1,6}", any_json(), 0..3);
        (fields, extra).prop_map(move |(fields, extra)| {
            let mut data: Map<String, Value> = extra.into_iter().collect();
            data.extend(fields);
            json!({"eventType": t.as_str(), "tokenId": token, "data": data})
        })
    })
}

/// A way to break a valid event.
fn breakage() -> impl Strategy<Value = (usize, Value)> {
    (
        0usize..6,
        prop_oneof![
            Just(json!(5)),
            Just(json!("NOT_A_TYPE")),
            Just(json!("bad token!")),
            Just(json!([])),
            Just(json!(null))
        ],
    )
}

fn break_event(mut e: Value, (how, v): (usize, Value)) -> Value {
    let obj = e.as_object_mut().unwrap();
    match how {
        0 => {
            obj.remove("eventType");
        }
        1 => {
            obj.insert("eventType".into(), v);
        }
        2 => {
            obj.insert("tokenId".into(), json!("has space"));
        }
        3 => {
            obj.insert("data".into(), json!("not an object"));
        }
        4 => {
            obj.insert("timestamp".into(), json!(-1));
        }
        _ => {
            // Drop every required field: every type requires at least one.
            obj.insert("data".into(), json!({}));
        }
    }
    e
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_body(&body, MAX_BATCH);
    }

    #[test]
    fn arbitrary_json_never_panics(v in any_json(), wrap in any::<bool>()) {
        let body = if wrap { json!({"events": [v]}) } else { v };
        let _ = parse_body(body.to_string().as_bytes(), MAX_BATCH);
    }

    #[test]
    fn valid_events_are_accepted_with_their_data(events in proptest::collection::vec(valid_event(), 1..8), single in any::<bool>()) {
        let body = if single { events[0].clone() } else { json!({"events": events}) };
        let ready = parse_body(body.to_string().as_bytes(), MAX_BATCH).unwrap();
        let sent = if single { &events[..1] } else { &events[..] };
        prop_assert_eq!(ready.len(), sent.len());
        for (r, e) in ready.iter().zip(sent) {
            prop_assert_eq!(r.envelope.metadata.event_type.as_str(), e["eventType"].as_str().unwrap());
            prop_assert_eq!(r.envelope.metadata.token_id.as_str(), e["tokenId"].as_str().unwrap());
            prop_assert_eq!(&Value::Object(r.envelope.data.clone()), &e["data"]);
            let is_trade = r.envelope.metadata.event_type.is_trade();
            prop_assert_eq!(r.trade.is_some(), is_trade);
        }
    }

    #[test]
    fn one_bad_event_refuses_the_whole_batch(events in proptest::collection::vec(valid_event(), 1..8), at in any::<prop::sample::Index>(), how in breakage()) {
        let mut events = events;
        let i = at.index(events.len());
        events[i] = break_event(events[i].take(), how);
        match parse_body(json!({"events": events}).to_string().as_bytes(), MAX_BATCH) {
            Err(IngestError::Invalid(bad)) => {
                prop_assert_eq!(bad.len(), 1);
                prop_assert_eq!(bad[0].index, i);
                prop_assert!(!bad[0].reason.is_empty());
            }
            other => prop_assert!(false, "expected Invalid at {}, got {:?}", i, other.map(|r| r.len())),
        }
    }

    #[test]
    fn batches_over_the_limit_are_refused(extra in 1usize..20) {
        let e = json!({"eventType": "TOKEN_LISTED", "tokenId": "BTC", "data": {"price": 1}});
        let events = vec![e; MAX_BATCH + extra];
        let r = parse_body(json!({"events": events}).to_string().as_bytes(), MAX_BATCH);
        let refused = matches!(r, Err(IngestError::TooMany { count, max }) if count == MAX_BATCH + extra && max == MAX_BATCH);
        prop_assert!(refused);
    }
}
