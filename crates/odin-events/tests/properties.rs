//! Property tests for everything in the event model that reads outside input: arbitrary
//! bytes never panic a parser, and what this project writes it reads back unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use odin_events::envelope::{parse_record, EVENT_VERSION, SOURCE_PUBLISHER};
use odin_events::{Channel, Classification, Envelope, EventType, Metadata, TokenId, TradeRecord};
use proptest::prelude::*;

/// `PROPTEST_CASES` for longer runs (e.g. 100000 with `--release`), else 512.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_:-]{1,64}"
}

fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "\\PC{0,20}".prop_map(serde_json::Value::from),
    ]
}

fn data() -> impl Strategy<Value = serde_json::Map<String, serde_json::Value>> {
    proptest::collection::btree_map("\\PC{1,12}", json_leaf(), 0..8)
        .prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn parse_record_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16))) {
        let _ = parse_record(&bytes, key.as_deref());
    }

    #[test]
    fn parse_record_never_panics_on_near_json(s in r#"\{("(type|tokenId|metadata|data|timestamp)"|"[a-z]{1,4}"):("TRADE_EXECUTED"|"BTC"|[0-9]{1,4}|\{\}|\[\]|null|"x")(,"[a-zA-Z]{1,8}":("[a-z]*"|[0-9]+|\{"eventType":"BUY_COMPLETED"\}))*\}"#) {
        let _ = parse_record(s.as_bytes(), Some(b"BTC"));
    }

    #[test]
    fn envelopes_round_trip(t in 0usize..23, tok in token(), d in data(), ts in 0i64..4_000_000_000_000, user in proptest::option::of("[a-z0-9]{1,10}")) {
        let event_type = EventType::ALL[t];
        let env = Envelope {
            metadata: Metadata {
                event_id: "id".into(),
                event_type,
                event_version: EVENT_VERSION.into(),
                correlation_id: "c".into(),
                timestamp: ts,
                source: SOURCE_PUBLISHER.into(),
                data_classification: Classification::default_for(event_type),
                token_id: tok.clone(),
                user_id: user.clone(),
            },
            data: d.clone(),
        };
        let bytes = env.to_json();
        let p = parse_record(&bytes, Some(tok.as_bytes())).unwrap();
        prop_assert_eq!(p.event_type, event_type);
        prop_assert_eq!(p.token_id.as_ref(), tok.as_str());
        prop_assert_eq!(p.timestamp, Some(ts));
        prop_assert_eq!(p.user_id.as_deref(), user.as_deref());
        let back: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&p.data).unwrap();
        prop_assert_eq!(back, d);
    }

    #[test]
    fn flat_records_keep_their_other_fields(t in 0usize..23, tok in token(), d in data()) {
        let mut obj = d.clone();
        obj.retain(|k, _| !matches!(k.as_str(), "type" | "tokenId" | "timestamp" | "data" | "metadata" | "userId" | "eventId" | "dataClassification"));
        let mut rec = obj.clone();
        rec.insert("type".into(), EventType::ALL[t].as_str().into());
        rec.insert("tokenId".into(), tok.clone().into());
        let bytes = serde_json::to_vec(&rec).unwrap();
        let p = parse_record(&bytes, None).unwrap();
        let back: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&p.data).unwrap();
        prop_assert_eq!(back, obj);
    }

    #[test]
    fn trade_parse_never_panics(s in "\\PC{0,200}") {
        let _ = TradeRecord::parse(s.as_bytes());
    }

    #[test]
    fn trades_round_trip(tok in token(), buy in any::<bool>(), p in 0u64..10_000_000_000, pscale in 0u32..12, a in 0u64..10_000_000_000, ascale in 0u32..12, ts in 0i64..4_000_000_000_000) {
        let price = rust_decimal::Decimal::new(p as i64, pscale);
        let amount = rust_decimal::Decimal::new(a as i64, ascale);
        let json = serde_json::json!({"token": tok, "side": if buy {"buy"} else {"sell"}, "price": price.to_string(), "amount": amount.to_string(), "timestamp": ts, "tx_hash": "0xab"});
        let t = TradeRecord::parse(json.to_string().as_bytes()).unwrap();
        prop_assert_eq!(t.price, price);
        prop_assert_eq!(t.amount, amount);
        prop_assert_eq!(t.volume_usd(), price * amount);
        let again = TradeRecord::parse(&t.to_json()).unwrap();
        prop_assert_eq!(again, t);
    }

    #[test]
    fn channel_parse_never_panics_and_round_trips(s in "\\PC{0,80}") {
        if let Ok(c) = Channel::parse(&s) {
            prop_assert_eq!(Channel::parse(&c.to_string()).unwrap(), c);
        }
        let _ = TokenId::new(s);
    }
}
