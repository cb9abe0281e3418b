//! The record envelope this project produces, and the tolerant parser that also reads the
//! two older formats still produced by existing services.
//!
//! Formats, told apart by their top-level fields:
//! - envelope: `{"metadata":{…},"data":{…}}`
//! - nested:   `{"type":"…","timestamp":<ms>,"data":{…}}` (token from the record key)
//! - flat:     `{"type":"…","tokenId":"…","timestamp":<ms>, …data fields}`

use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::event::{EventType, UnknownName};
use crate::token::{TokenId, TokenIdError};

/// Version of the envelope format.
pub const EVENT_VERSION: &str = "1.0";
/// `source` of events produced by the publisher.
pub const SOURCE_PUBLISHER: &str = "odin-publisher";
pub const HEADER_CONTENT_TYPE: &str = "content-type";
pub const HEADER_EVENT_TYPE: &str = "event-type";
pub const HEADER_EVENT_VERSION: &str = "event-version";
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// Who may see an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    Public,
    Internal,
    Confidential,
    Restricted,
}

impl Classification {
    /// The default of a type: balances are `restricted`, everything else `public`.
    pub fn default_for(t: EventType) -> Self {
        if t.category() == crate::Category::Balances {
            Classification::Restricted
        } else {
            Classification::Public
        }
    }

    /// Delivered only to the user the event belongs to.
    pub fn is_private(self) -> bool {
        matches!(
            self,
            Classification::Confidential | Classification::Restricted
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Public => "public",
            Classification::Internal => "internal",
            Classification::Confidential => "confidential",
            Classification::Restricted => "restricted",
        }
    }

    pub fn parse(s: &str) -> Result<Self, UnknownName> {
        match s.to_ascii_lowercase().as_str() {
            "public" => Ok(Classification::Public),
            "internal" => Ok(Classification::Internal),
            "confidential" => Ok(Classification::Confidential),
            "restricted" => Ok(Classification::Restricted),
            _ => Err(UnknownName {
                kind: "data classification",
                name: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `metadata` object of the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub event_id: String,
    pub event_type: EventType,
    pub event_version: String,
    pub correlation_id: String,
    /// Event time, epoch milliseconds.
    pub timestamp: i64,
    pub source: String,
    pub data_classification: Classification,
    pub token_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// The record value this project produces: `{"metadata":{…},"data":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub metadata: Metadata,
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl Envelope {
    /// The record value.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a struct of strings, numbers and a JSON map cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record key: the token id.
    pub fn key(&self) -> &[u8] {
        self.metadata.token_id.as_bytes()
    }

    /// The record headers.
    pub fn headers(&self) -> [(&'static str, Vec<u8>); 3] {
        [
            (HEADER_CONTENT_TYPE, CONTENT_TYPE_JSON.as_bytes().to_vec()),
            (
                HEADER_EVENT_TYPE,
                self.metadata.event_type.as_str().as_bytes().to_vec(),
            ),
            (
                HEADER_EVENT_VERSION,
                self.metadata.event_version.as_bytes().to_vec(),
            ),
        ]
    }
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    #[error("record value is empty")]
    Empty,
    #[error("record is not valid JSON: {reason}")]
    NotJson { reason: String },
    #[error("record is not a JSON object")]
    NotAnObject,
    #[error("record has no event type (neither metadata.eventType nor type)")]
    MissingEventType,
    #[error(transparent)]
    UnknownEventType(#[from] UnknownName),
    #[error("record has no token (no record key and no tokenId)")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(#[from] TokenIdError),
    #[error("field {field:?}: {reason}")]
    BadField { field: &'static str, reason: String },
}

/// Which of the three formats a record was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    Envelope,
    Nested,
    Flat,
}

/// A record read in any of the three formats, borrowing from the record where it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRecord<'a> {
    pub format: RecordFormat,
    pub event_type: EventType,
    /// The record key when it has one, else the `tokenId` field.
    pub token_id: Cow<'a, str>,
    pub event_id: Option<Cow<'a, str>>,
    pub correlation_id: Option<Cow<'a, str>>,
    /// Event time (epoch ms) when the record carries one.
    pub timestamp: Option<i64>,
    pub classification: Classification,
    pub user_id: Option<Cow<'a, str>>,
    pub source: Option<Cow<'a, str>>,
    /// The JSON text of the data object: the record's own bytes for the envelope and nested
    /// formats; for the flat format, the object without `type`, `tokenId` and `timestamp`.
    pub data: Cow<'a, str>,
}

impl ParsedRecord<'_> {
    /// The data object as a JSON value.
    pub fn data_value(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(&self.data).unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

/// A JSON object's members in order, values left unparsed.
struct RawObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Key(k)) = map.next_key()? {
                    let v: &'de RawValue = map.next_value()?;
                    members.push((k, v));
                }
                Ok(RawObject(members))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> RawObject<'a> {
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetadataRef<'a> {
    #[serde(borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    correlation_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data_classification: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    token_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
}

fn is_object(v: &RawValue) -> bool {
    v.get().trim_start().starts_with('{')
}

fn str_field<'a>(v: &'a RawValue, field: &'static str) -> Result<Cow<'a, str>, EnvelopeError> {
    serde_json::from_str::<Key<'a>>(v.get())
        .map(|k| k.0)
        .map_err(|_| EnvelopeError::BadField {
            field,
            reason: format!("expected a string, got {}", v.get()),
        })
}

/// Reads an event time: epoch milliseconds as a number, or an RFC 3339 string.
pub fn parse_timestamp(v: &RawValue) -> Result<i64, EnvelopeError> {
    let mut de = serde_json::Deserializer::from_str(v.get());
    serde::Deserializer::deserialize_any(&mut de, TimestampVisitor).map_err(|_| {
        EnvelopeError::BadField {
            field: "timestamp",
            reason: format!("expected epoch milliseconds or RFC 3339, got {}", v.get()),
        }
    })
}

/// Epoch milliseconds from a JSON number (fractions truncated, out of range saturated) or a
/// string holding RFC 3339 or an integer; read straight from the deserializer because every
/// trade passes through it.
pub(crate) struct TimestampVisitor;

impl serde::de::Visitor<'_> for TimestampVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("epoch milliseconds or RFC 3339")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
        Ok(i64::try_from(v).unwrap_or(i64::MAX))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    #[allow(clippy::cast_possible_truncation)] // saturating float → int is the rule
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
        if v.is_finite() {
            Ok(v as i64)
        } else {
            Err(E::custom("timestamp is not finite"))
        }
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<i64, E> {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .or_else(|_| s.parse::<i64>())
            .map_err(|_| {
                E::custom(format!(
                    "field \"timestamp\": expected epoch milliseconds or RFC 3339, got {s:?}"
                ))
            })
    }
}

fn resolve_token<'a>(
    key: Option<&'a [u8]>,
    field: Option<Cow<'a, str>>,
) -> Result<Cow<'a, str>, EnvelopeError> {
    let from_key = key
        .filter(|k| !k.is_empty())
        .and_then(|k| std::str::from_utf8(k).ok())
        .map(Cow::Borrowed);
    let token = from_key
        .or(field.filter(|f| !f.is_empty()))
        .ok_or(EnvelopeError::MissingToken)?;
    TokenId::validate(&token)?;
    Ok(token)
}

/// Reads a record value in any of the three formats. `key` is the record key (the token).
pub fn parse_record<'a>(
    value: &'a [u8],
    key: Option<&'a [u8]>,
) -> Result<ParsedRecord<'a>, EnvelopeError> {
    if value.iter().all(u8::is_ascii_whitespace) {
        return Err(EnvelopeError::Empty);
    }
    let text = std::str::from_utf8(value).map_err(|e| EnvelopeError::NotJson {
        reason: e.to_string(),
    })?;
    if !text.trim_start().starts_with('{') {
        return Err(EnvelopeError::NotAnObject);
    }
    let obj: RawObject<'a> = serde_json::from_str(text).map_err(|e| EnvelopeError::NotJson {
        reason: e.to_string(),
    })?;

    if let Some(meta) = obj.get("metadata") {
        let m: MetadataRef<'a> =
            serde_json::from_str(meta.get()).map_err(|e| EnvelopeError::BadField {
                field: "metadata",
                reason: e.to_string(),
            })?;
        let event_type: EventType = m
            .event_type
            .as_deref()
            .ok_or(EnvelopeError::MissingEventType)?
            .parse()?;
        let data = obj.get("data").ok_or(EnvelopeError::BadField {
            field: "data",
            reason: "missing".into(),
        })?;
        if !is_object(data) {
            return Err(EnvelopeError::BadField {
                field: "data",
                reason: "expected an object".into(),
            });
        }
        let classification = match m.data_classification.as_deref() {
            Some(c) => Classification::parse(c).map_err(|e| EnvelopeError::BadField {
                field: "dataClassification",
                reason: e.to_string(),
            })?,
            None => Classification::default_for(event_type),
        };
        return Ok(ParsedRecord {
            format: RecordFormat::Envelope,
            event_type,
            token_id: resolve_token(key, m.token_id)?,
            event_id: m.event_id,
            correlation_id: m.correlation_id,
            timestamp: m.timestamp.map(parse_timestamp).transpose()?,
            classification,
            user_id: m.user_id,
            source: m.source,
            data: Cow::Borrowed(data.get()),
        });
    }

    let event_type: EventType = str_field(
        obj.get("type").ok_or(EnvelopeError::MissingEventType)?,
        "type",
    )?
    .parse()?;
    let timestamp = obj.get("timestamp").map(parse_timestamp).transpose()?;
    let optional = |name: &'static str| obj.get(name).map(|v| str_field(v, name)).transpose();
    let token_field = optional("tokenId")?;
    let user_id = optional("userId")?;
    let event_id = optional("eventId")?;
    let classification = match optional("dataClassification")? {
        Some(c) => Classification::parse(&c).map_err(|e| EnvelopeError::BadField {
            field: "dataClassification",
            reason: e.to_string(),
        })?,
        None => Classification::default_for(event_type),
    };

    match obj.get("data").filter(|d| is_object(d)) {
        Some(data) => Ok(ParsedRecord {
            format: RecordFormat::Nested,
            event_type,
            token_id: resolve_token(key, token_field)?,
            event_id,
            correlation_id: None,
            timestamp,
            classification,
            user_id,
            source: None,
            data: Cow::Borrowed(data.get()),
        }),
        None => {
            let mut data = String::with_capacity(text.len());
            data.push('{');
            for (k, v) in obj
                .0
                .iter()
                .filter(|(k, _)| !matches!(k.as_ref(), "type" | "tokenId" | "timestamp"))
            {
                if data.len() > 1 {
                    data.push(',');
                }
                // A key that was valid JSON re-serialises without error.
                data.push_str(&serde_json::to_string(k.as_ref()).unwrap_or_default());
                data.push(':');
                data.push_str(v.get());
            }
            data.push('}');
            Ok(ParsedRecord {
                format: RecordFormat::Flat,
                event_type,
                token_id: resolve_token(key, token_field)?,
                event_id,
                correlation_id: None,
                timestamp,
                classification,
                user_id,
                source: None,
                data: Cow::Owned(data),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        let data = serde_json::json!({"price": 1.5, "amount": 2, "side": "buy"});
        Envelope {
            metadata: Metadata {
                event_id: "e1".into(),
                event_type: EventType::TradeExecuted,
                event_version: EVENT_VERSION.into(),
                correlation_id: "c1".into(),
                timestamp: 1_700_000_000_000,
                source: SOURCE_PUBLISHER.into(),
                data_classification: Classification::Public,
                token_id: "BTC".into(),
                user_id: None,
            },
            data: data.as_object().cloned().unwrap(),
        }
    }

    #[test]
    fn envelope_round_trips_with_data_byte_for_byte() {
        let env = envelope();
        let bytes = env.to_json();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"metadata":{"eventId":"e1","eventType":"TRADE_EXECUTED","eventVersion":"1.0","correlationId":"c1","timestamp":1700000000000,"source":"odin-publisher","dataClassification":"public","tokenId":"BTC"}"#));
        assert!(!text.contains("userId"));
        let p = parse_record(&bytes, Some(b"BTC")).unwrap();
        assert_eq!(p.format, RecordFormat::Envelope);
        assert_eq!(p.event_type, EventType::TradeExecuted);
        assert_eq!(p.token_id, "BTC");
        assert_eq!(p.event_id.as_deref(), Some("e1"));
        assert_eq!(p.timestamp, Some(1_700_000_000_000));
        assert_eq!(p.data, serde_json::to_string(&env.data).unwrap());
        assert_eq!(serde_json::from_slice::<Envelope>(&bytes).unwrap(), env);
        let h = env.headers();
        assert_eq!(h[1], ("event-type", b"TRADE_EXECUTED".to_vec()));
    }

    #[test]
    fn data_is_kept_byte_for_byte() {
        let raw = br#"{"metadata":{"eventType":"BALANCE_UPDATED","tokenId":"ETH","userId":"u1","timestamp":5},"data":{ "b" : 1,"a":[1, 2] }}"#;
        let p = parse_record(raw, None).unwrap();
        assert_eq!(p.data, r#"{ "b" : 1,"a":[1, 2] }"#);
        assert_eq!(p.classification, Classification::Restricted);
        assert_eq!(p.user_id.as_deref(), Some("u1"));
        assert_eq!(p.token_id, "ETH");
        assert!(p.event_id.is_none());
    }

    #[test]
    fn nested_format_takes_token_from_key() {
        let raw = br#"{"type":"COMMENT_POSTED","timestamp":42,"data":{"text":"hi"}}"#;
        let p = parse_record(raw, Some(b"SOL")).unwrap();
        assert_eq!(p.format, RecordFormat::Nested);
        assert_eq!((p.token_id.as_ref(), p.timestamp), ("SOL", Some(42)));
        assert_eq!(p.data, r#"{"text":"hi"}"#);
        assert_eq!(p.classification, Classification::Public);
        assert_eq!(parse_record(raw, None), Err(EnvelopeError::MissingToken));
    }

    #[test]
    fn flat_format_strips_routing_fields() {
        let raw = br#"{"type":"TRADE_EXECUTED","tokenId":"BTC","timestamp":7,"price":"1.5","side":"sell","note":"a\"b"}"#;
        let p = parse_record(raw, None).unwrap();
        assert_eq!(p.format, RecordFormat::Flat);
        assert_eq!(p.token_id, "BTC");
        assert_eq!(p.data, r#"{"price":"1.5","side":"sell","note":"a\"b"}"#);
        assert!(serde_json::from_str::<serde_json::Value>(&p.data).is_ok());
        let empty = parse_record(br#"{"type":"TOKEN_LISTED","tokenId":"X"}"#, None).unwrap();
        assert_eq!(empty.data, "{}");
    }

    #[test]
    fn malformed_records_are_typed_errors() {
        assert_eq!(parse_record(b"", None), Err(EnvelopeError::Empty));
        assert_eq!(parse_record(b"[1]", None), Err(EnvelopeError::NotAnObject));
        assert!(matches!(
            parse_record(b"{\"type\":", None),
            Err(EnvelopeError::NotJson { .. })
        ));
        assert_eq!(
            parse_record(b"{\"a\":1}", Some(b"X")),
            Err(EnvelopeError::MissingEventType)
        );
        assert!(matches!(
            parse_record(br#"{"type":"NOPE","tokenId":"X"}"#, None),
            Err(EnvelopeError::UnknownEventType(_))
        ));
        assert!(matches!(
            parse_record(br#"{"type":"TOKEN_LISTED","tokenId":"a b"}"#, None),
            Err(EnvelopeError::InvalidToken(_))
        ));
        assert!(matches!(
            parse_record(
                br#"{"metadata":{"eventType":"TOKEN_LISTED"},"data":[1]}"#,
                Some(b"X")
            ),
            Err(EnvelopeError::BadField { field: "data", .. })
        ));
        assert!(matches!(
            parse_record(
                br#"{"type":"TOKEN_LISTED","tokenId":"X","timestamp":"soon"}"#,
                None
            ),
            Err(EnvelopeError::BadField {
                field: "timestamp",
                ..
            })
        ));
        assert!(matches!(
            parse_record(br#"{"type":1,"tokenId":"X"}"#, None),
            Err(EnvelopeError::BadField { field: "type", .. })
        ));
        assert!(parse_record(&[0xff, 0xfe], None).is_err());
    }
}
