//! The wire protocol: client frames in, server frames out (JSON text frames), error codes,
//! and the event frame, serialised once per record and shared by every subscriber.

use std::collections::BTreeMap;

use odin_events::{Category, EventType};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Error codes of `{"type":"error",…}` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    UnknownBundle,
    InvalidChannel,
    TooManySubscriptions,
    RateLimited,
    /// Reserved for authentication (issue 7).
    Unauthorized,
    /// Reserved for authentication (issue 7).
    TokenExpired,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownBundle => "unknown_bundle",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
        }
    }
}

/// A protocol error to send back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: ErrorCode,
    pub message: String,
}

impl ClientError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

impl From<bundles::BundleError> for ClientError {
    fn from(e: bundles::BundleError) -> Self {
        use bundles::BundleError as B;
        let code = match &e {
            B::UnknownBundle { .. } => ErrorCode::UnknownBundle,
            B::InvalidToken { .. } | B::InvalidChannel(_) => ErrorCode::InvalidChannel,
            B::TooManyChannels { .. } => ErrorCode::TooManySubscriptions,
            _ => ErrorCode::BadRequest,
        };
        Self::new(code, e.to_string())
    }
}

/// A subscription request (`subscribe` and `unsubscribe` share it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRequest {
    #[serde(default)]
    pub bundle: Option<String>,
    #[serde(default)]
    pub tokens: Vec<String>,
    #[serde(default)]
    pub channels: Vec<String>,
    /// `"recover":{"BTC.trade":<last offset seen>,…}` (subscribe only): replay what was
    /// missed after each offset before going live.
    #[serde(default)]
    pub recover: BTreeMap<String, i64>,
}

impl SubscriptionRequest {
    pub fn as_request(&self) -> bundles::Request<'_> {
        bundles::Request {
            bundle: self.bundle.as_deref(),
            tokens: &self.tokens,
            channels: &self.channels,
        }
    }
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Subscribe(SubscriptionRequest),
    Unsubscribe(SubscriptionRequest),
    Ping,
    /// `{"type":"auth","token":"<jwt>"}`.
    Auth {
        token: String,
    },
}

/// Longest request `id` (its JSON text) echoed back: every reply carries it, so a long one
/// would multiply what a client can make the gateway write.
pub const MAX_ID_BYTES: usize = 256;

/// A parsed client frame: the command and the client's correlation id (echoed verbatim).
#[derive(Debug, Clone)]
pub struct ClientFrame {
    pub id: Option<Box<RawValue>>,
    pub command: Command,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    id: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // fields are read by serde only: they make `deny_unknown_fields` accept them
struct SubscribeFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<Box<RawValue>>,
    #[serde(default)]
    bundle: Option<String>,
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    recover: Option<BTreeMap<String, i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // `kind` and `id` are read by serde only (see `SubscribeFrame`)
struct AuthFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<Box<RawValue>>,
    token: String,
}

/// Parses a client text frame. On failure the error carries whatever id could be read, so
/// the error frame can still be correlated.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, (Option<Box<RawValue>>, ClientError)> {
    let head: Head = serde_json::from_str(text).map_err(|e| {
        (
            None,
            ClientError::bad_request(format!("not a JSON object: {e}")),
        )
    })?;
    let id = head.id.filter(|v| v.get() != "null");
    if id.as_ref().is_some_and(|v| v.get().len() > MAX_ID_BYTES) {
        // Not echoed: that is what the limit is for.
        return Err((
            None,
            ClientError::bad_request(format!("\"id\" longer than {MAX_ID_BYTES} bytes")),
        ));
    }
    let kind = match head.kind {
        Some(k) => k,
        None => return Err((id, ClientError::bad_request("missing field \"type\""))),
    };
    let command = match kind.as_str() {
        "subscribe" | "unsubscribe" => {
            let f: SubscribeFrame = serde_json::from_str(text).map_err(|e| {
                (
                    id.clone(),
                    ClientError::bad_request(format!("bad {kind} frame: {e}")),
                )
            })?;
            if kind == "unsubscribe" && f.recover.is_some() {
                return Err((
                    id,
                    ClientError::bad_request("\"recover\" is only valid on subscribe"),
                ));
            }
            let recover = f.recover.unwrap_or_default();
            if let Some((c, o)) = recover.iter().find(|(_, o)| **o < -1) {
                return Err((
                    id,
                    ClientError::bad_request(format!(
                        "recover offset {o} of {c:?} is not an offset (the last one seen, or -1)"
                    )),
                ));
            }
            let req = SubscriptionRequest {
                bundle: f.bundle,
                tokens: f.tokens,
                channels: f.channels,
                recover,
            };
            if kind == "subscribe" {
                Command::Subscribe(req)
            } else {
                Command::Unsubscribe(req)
            }
        }
        "ping" => Command::Ping,
        "auth" => {
            let f: AuthFrame = serde_json::from_str(text).map_err(|e| {
                (
                    id.clone(),
                    ClientError::bad_request(format!("bad auth frame: {e}")),
                )
            })?;
            Command::Auth { token: f.token }
        }
        other => {
            return Err((
                id,
                ClientError::bad_request(format!(
                    "unknown message type {other:?} (subscribe, unsubscribe, ping, auth)"
                )),
            ))
        }
    };
    Ok(ClientFrame { id, command })
}

fn push_id(out: &mut String, id: Option<&RawValue>) {
    if let Some(id) = id {
        out.push_str(",\"id\":");
        out.push_str(id.get());
    }
}

fn push_str(out: &mut String, s: &str) {
    // Serialising a &str to JSON cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn push_channels<'a>(out: &mut String, channels: impl Iterator<Item = &'a str>) {
    out.push_str(",\"channels\":[");
    for (i, c) in channels.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, c);
    }
    out.push(']');
}

/// `{"type":"subscribed","id":…,"channels":[…]}` (or `unsubscribed`).
pub fn subscription_reply<'a>(
    subscribed: bool,
    id: Option<&RawValue>,
    channels: impl Iterator<Item = &'a str>,
) -> Utf8Bytes {
    let mut out = String::with_capacity(64);
    out.push_str(if subscribed {
        "{\"type\":\"subscribed\""
    } else {
        "{\"type\":\"unsubscribed\""
    });
    push_id(&mut out, id);
    push_channels(&mut out, channels);
    out.push('}');
    out.into()
}

/// `{"type":"subscribed","id":…,"channels":[…],"recovery":{"BTC.trade":{"recovered":true,"replayed":12},…}}`.
pub fn subscribed_with_recovery<'a>(
    id: Option<&RawValue>,
    channels: impl Iterator<Item = &'a str>,
    recovery: &[(String, crate::recovery::Outcome)],
) -> Utf8Bytes {
    let mut out = String::with_capacity(64 + 48 * recovery.len());
    out.push_str("{\"type\":\"subscribed\"");
    push_id(&mut out, id);
    push_channels(&mut out, channels);
    out.push_str(",\"recovery\":{");
    for (i, (channel, outcome)) in recovery.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, channel);
        out.push(':');
        // A struct of a bool, a number and an optional enum serialises without error.
        out.push_str(&serde_json::to_string(outcome).unwrap_or_default());
    }
    out.push_str("}}");
    out.into()
}

/// `{"type":"authenticated","id":…,"userId":"…","expiresAt":<epoch ms>}`.
pub fn authenticated(id: Option<&RawValue>, user_id: &str, expires_at_ms: i64) -> Utf8Bytes {
    let mut out = String::with_capacity(80 + user_id.len());
    out.push_str("{\"type\":\"authenticated\"");
    push_id(&mut out, id);
    out.push_str(",\"userId\":");
    push_str(&mut out, user_id);
    out.push_str(",\"expiresAt\":");
    out.push_str(&expires_at_ms.to_string());
    out.push('}');
    out.into()
}

/// `{"type":"pong","id":…,"timestamp":<server ms>}`.
pub fn pong(id: Option<&RawValue>, now_ms: i64) -> Utf8Bytes {
    let mut out = String::with_capacity(48);
    out.push_str("{\"type\":\"pong\"");
    push_id(&mut out, id);
    out.push_str(",\"timestamp\":");
    out.push_str(&now_ms.to_string());
    out.push('}');
    out.into()
}

/// `{"type":"error","id":…,"code":"…","message":"…"}`.
pub fn error(id: Option<&RawValue>, e: &ClientError) -> Utf8Bytes {
    let mut out = String::with_capacity(64 + e.message.len());
    out.push_str("{\"type\":\"error\"");
    push_id(&mut out, id);
    out.push_str(",\"code\":\"");
    out.push_str(e.code.as_str());
    out.push_str("\",\"message\":");
    push_str(&mut out, &e.message);
    out.push('}');
    out.into()
}

/// `{"type":"gap","channel":"BTC.trade","fromOffset":1200,"toOffset":1290,"dropped":37}`:
/// frames of the channel were dropped for this client (offsets of the first and last
/// dropped record); sent before the channel's next event.
pub fn gap_frame(token: &str, category: Category, gap: crate::fanout::Gap) -> Utf8Bytes {
    let mut out = String::with_capacity(96 + token.len());
    out.push_str("{\"type\":\"gap\",\"channel\":");
    push_str(&mut out, &format!("{token}.{}", category.as_str()));
    out.push_str(",\"fromOffset\":");
    out.push_str(&gap.from.to_string());
    out.push_str(",\"toOffset\":");
    out.push_str(&gap.to.to_string());
    out.push_str(",\"dropped\":");
    out.push_str(&gap.dropped.to_string());
    out.push('}');
    out.into()
}

/// The fields of one event frame.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    /// A validated token id (or anything of `[A-Za-z0-9_:-]`), so it needs no escaping.
    pub token: &'a str,
    pub category: Category,
    pub event_type: EventType,
    pub timestamp_ms: i64,
    pub event_id: Option<&'a str>,
    pub offset: i64,
    /// The data object's JSON text, copied byte-for-byte.
    pub data: &'a str,
}

/// `{"type":"event","channel":"BTC.trade","event":"TRADE_EXECUTED","timestamp":…,"eventId":"…","offset":…,"data":{…}}`,
/// built once per record; cloning the result only bumps a reference count.
pub fn event_frame(f: &EventFields<'_>) -> Utf8Bytes {
    let mut out = String::with_capacity(128 + f.data.len() + f.event_id.map_or(0, str::len));
    out.push_str("{\"type\":\"event\",\"channel\":\"");
    out.push_str(f.token);
    out.push('.');
    out.push_str(f.category.as_str());
    out.push_str("\",\"event\":\"");
    out.push_str(f.event_type.as_str());
    out.push_str("\",\"timestamp\":");
    out.push_str(&f.timestamp_ms.to_string());
    if let Some(id) = f.event_id {
        out.push_str(",\"eventId\":");
        push_str(&mut out, id);
    }
    out.push_str(",\"offset\":");
    out.push_str(&f.offset.to_string());
    out.push_str(",\"data\":");
    out.push_str(f.data);
    out.push('}');
    out.into()
}

/// The event frame of a parsed record read from `offset`, as live delivery and replays both
/// build it (the record's own event time, else the Kafka timestamp).
pub fn record_frame(
    p: &odin_events::ParsedRecord<'_>,
    category: Category,
    offset: i64,
    record_ms: i64,
) -> Utf8Bytes {
    event_frame(&EventFields {
        token: &p.token_id,
        category,
        event_type: p.event_type,
        timestamp_ms: p.timestamp.unwrap_or(record_ms),
        event_id: p.event_id.as_deref(),
        offset,
        data: &p.data,
    })
}

/// For tests and tools: a frame as a JSON value.
pub fn to_value(frame: &str) -> Option<Value> {
    serde_json::from_str(frame).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_code(text: &str) -> ErrorCode {
        parse_client_frame(text).unwrap_err().1.code
    }

    #[test]
    fn parses_client_frames() {
        let f = parse_client_frame(
            r#"{"type":"subscribe","id":"opt","bundle":"TRADING","tokens":["BTC","ETH"]}"#,
        )
        .unwrap();
        assert_eq!(f.id.as_deref().map(RawValue::get), Some("\"opt\""));
        match f.command {
            Command::Subscribe(r) => {
                assert_eq!(r.bundle.as_deref(), Some("TRADING"));
                assert_eq!(r.tokens, ["BTC", "ETH"]);
            }
            other => panic!("{other:?}"),
        }
        let f = parse_client_frame(r#"{"type":"unsubscribe","channels":["BTC.trade"],"id":7}"#)
            .unwrap();
        assert_eq!(f.id.as_deref().map(RawValue::get), Some("7"));
        assert!(matches!(f.command, Command::Unsubscribe(_)));
        assert_eq!(
            parse_client_frame(r#"{"type":"ping"}"#).unwrap().command,
            Command::Ping
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"auth","token":"a.b.c","id":1}"#)
                .unwrap()
                .command,
            Command::Auth {
                token: "a.b.c".into()
            }
        );
        match parse_client_frame(
            r#"{"type":"subscribe","channels":["BTC.trade"],"recover":{"BTC.trade":41,"ETH.trade":-1}}"#,
        )
        .unwrap()
        .command
        {
            Command::Subscribe(r) => {
                assert_eq!(r.recover.get("BTC.trade"), Some(&41));
                assert_eq!(r.recover.get("ETH.trade"), Some(&-1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_frames_are_bad_requests() {
        for bad in [
            "not json",
            "[1,2]",
            r#"{"id":"x"}"#,
            r#"{"type":"dance"}"#,
            r#"{"type":"subscribe","tokens":"BTC"}"#,
            r#"{"type":"subscribe","chanels":["BTC.trade"]}"#,
            r#"{"type":"auth"}"#,
            r#"{"type":"auth","token":5}"#,
            r#"{"type":"subscribe","channels":["BTC.trade"],"recover":{"BTC.trade":"x"}}"#,
            r#"{"type":"subscribe","channels":["BTC.trade"],"recover":{"BTC.trade":-2}}"#,
            r#"{"type":"subscribe","channels":["BTC.trade"],"recover":[1]}"#,
            r#"{"type":"unsubscribe","channels":["BTC.trade"],"recover":{"BTC.trade":1}}"#,
        ] {
            assert_eq!(err_code(bad), ErrorCode::BadRequest, "{bad}");
        }
        // An id of at most 256 bytes is echoed; a longer one is refused and not echoed.
        let at_limit = format!(r#"{{"type":"ping","id":"{}"}}"#, "i".repeat(254));
        assert!(parse_client_frame(&at_limit).is_ok());
        let over = format!(r#"{{"type":"ping","id":"{}"}}"#, "i".repeat(255));
        let (id, e) = parse_client_frame(&over).unwrap_err();
        assert_eq!((id.is_none(), e.code), (true, ErrorCode::BadRequest));
        // The id survives a bad frame so the client can correlate the error.
        let (id, _) = parse_client_frame(r#"{"type":"dance","id":"q1"}"#).unwrap_err();
        assert_eq!(id.as_deref().map(RawValue::get), Some("\"q1\""));
    }

    #[test]
    fn bundle_errors_map_to_codes() {
        let code = |b: Option<&str>, t: &[&str], c: &[&str]| {
            let tokens: Vec<String> = t.iter().map(|s| s.to_string()).collect();
            let channels: Vec<String> = c.iter().map(|s| s.to_string()).collect();
            let req = bundles::Request {
                bundle: b,
                tokens: &tokens,
                channels: &channels,
            };
            ClientError::from(bundles::expand(&req, 3).unwrap_err()).code
        };
        assert_eq!(code(Some("NOPE"), &["BTC"], &[]), ErrorCode::UnknownBundle);
        assert_eq!(code(None, &[], &["BTC"]), ErrorCode::InvalidChannel);
        assert_eq!(
            code(Some("TRADING"), &["B C"], &[]),
            ErrorCode::InvalidChannel
        );
        assert_eq!(
            code(Some("ALL"), &["BTC"], &[]),
            ErrorCode::TooManySubscriptions
        );
        assert_eq!(code(None, &[], &[]), ErrorCode::BadRequest);
        assert_eq!(code(Some("TRADING"), &[], &[]), ErrorCode::BadRequest);
    }

    #[test]
    fn server_frames_are_json() {
        let id: Box<RawValue> = serde_json::from_str("\"a\"").unwrap();
        let v = to_value(&subscription_reply(
            true,
            Some(&id),
            ["BTC.trade", "*.creation"].into_iter(),
        ))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"subscribed","id":"a","channels":["BTC.trade","*.creation"]})
        );
        let v = to_value(&error(
            None,
            &ClientError::new(ErrorCode::RateLimited, "slow \"down\""),
        ))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","code":"rate_limited","message":"slow \"down\""})
        );
        let recovery = [
            (
                "BTC.trade".to_owned(),
                crate::recovery::Outcome::complete(12),
            ),
            (
                "ETH.trade".to_owned(),
                crate::recovery::Outcome::incomplete(crate::recovery::Incomplete::Retention),
            ),
        ];
        let v = to_value(&subscribed_with_recovery(
            Some(&id),
            ["BTC.trade", "ETH.trade"].into_iter(),
            &recovery,
        ))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"subscribed","id":"a","channels":["BTC.trade","ETH.trade"],
                "recovery":{"BTC.trade":{"recovered":true,"replayed":12},
                            "ETH.trade":{"recovered":false,"replayed":0,"reason":"retention"}}})
        );
        let v = to_value(&authenticated(None, "al\"ice", 7)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"authenticated","userId":"al\"ice","expiresAt":7})
        );
        let v = to_value(&pong(Some(&id), 5)).unwrap();
        assert_eq!(v, serde_json::json!({"type":"pong","id":"a","timestamp":5}));
        let gap = crate::fanout::Gap {
            from: 1200,
            to: 1290,
            dropped: 37,
        };
        let v = to_value(&gap_frame("BTC", Category::Trade, gap)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"gap","channel":"BTC.trade","fromOffset":1200,"toOffset":1290,"dropped":37})
        );
    }

    #[test]
    fn event_frame_keeps_data_bytes() {
        let data = r#"{"price": "1.50",  "x":[1,2]}"#;
        let frame = event_frame(&EventFields {
            token: "BTC",
            category: Category::Trade,
            event_type: EventType::TradeExecuted,
            timestamp_ms: 1_700_000_000_000,
            event_id: Some("e\"1"),
            offset: 42,
            data,
        });
        assert!(frame.as_str().ends_with(&format!(",\"data\":{data}}}")));
        let v = to_value(&frame).unwrap();
        assert_eq!(v["channel"], "BTC.trade");
        assert_eq!(v["event"], "TRADE_EXECUTED");
        assert_eq!(v["eventId"], "e\"1");
        assert_eq!(v["offset"], 42);
        let no_id = event_frame(&EventFields {
            event_id: None,
            ..EventFields {
                token: "X",
                category: Category::Creation,
                event_type: EventType::TokenCreated,
                timestamp_ms: 1,
                event_id: None,
                offset: 0,
                data: "{}",
            }
        });
        assert!(to_value(&no_id).unwrap().get("eventId").is_none());
    }
}
