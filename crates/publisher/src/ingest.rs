//! Validation of `POST /events` bodies: one event or `{"events":[…]}`, every event checked
//! before anything is produced, each refusal naming the event's index and the reason.

use odin_events::{Classification, EventType, TokenId};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::publish::{NewEvent, ReadyEvent};
use crate::schema;

/// One refused event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadEvent {
    pub index: usize,
    pub reason: String,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    #[error("body is not valid JSON: {reason}")]
    NotJson { reason: String },
    #[error("body must be an event object or {{\"events\": [...]}}")]
    NotAnObject,
    #[error("\"events\" must be an array of events")]
    EventsNotArray,
    #[error("\"events\" is empty")]
    Empty,
    #[error("batch of {count} events is over the limit of {max}")]
    TooMany { count: usize, max: usize },
    #[error("{} invalid event(s); nothing was published", .0.len())]
    Invalid(Vec<BadEvent>),
}

/// Parses and validates a body; `Ok` only when every event is valid.
pub fn parse_body(body: &[u8], max_batch: usize) -> Result<Vec<ReadyEvent>, IngestError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| IngestError::NotJson {
        reason: e.to_string(),
    })?;
    let Value::Object(mut obj) = value else {
        return Err(IngestError::NotAnObject);
    };
    let items = match obj.remove("events") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(IngestError::EventsNotArray),
        None => vec![Value::Object(obj)],
    };
    if items.is_empty() {
        return Err(IngestError::Empty);
    }
    if items.len() > max_batch {
        return Err(IngestError::TooMany {
            count: items.len(),
            max: max_batch,
        });
    }
    let mut ready = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match parse_event(item).and_then(NewEvent::into_ready) {
            Ok(r) => ready.push(r),
            Err(reason) => bad.push(BadEvent { index, reason }),
        }
    }
    if bad.is_empty() {
        Ok(ready)
    } else {
        Err(IngestError::Invalid(bad))
    }
}

fn opt_string(obj: &mut Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 256 => Ok(Some(s)),
        Some(Value::String(_)) => Err(format!("{field} is longer than 256 bytes")),
        Some(other) => Err(format!(
            "{field} must be a string, got {}",
            schema::short(&other)
        )),
    }
}

/// Validates one event of the body.
pub fn parse_event(item: Value) -> Result<NewEvent, String> {
    let Value::Object(mut obj) = item else {
        return Err(format!(
            "event must be an object, got {}",
            schema::short(&item)
        ));
    };
    let event_type: EventType = match obj.remove("eventType") {
        Some(Value::String(s)) => s.parse().map_err(|e| format!("{e}"))?,
        Some(other) => {
            return Err(format!(
                "eventType must be a string, got {}",
                schema::short(&other)
            ))
        }
        None => return Err("eventType is required".into()),
    };
    let token_id = match obj.remove("tokenId") {
        Some(Value::String(s)) => TokenId::new(s).map_err(|e| e.to_string())?.into_string(),
        Some(other) => {
            return Err(format!(
                "tokenId must be a string, got {}",
                schema::short(&other)
            ))
        }
        None => return Err("tokenId is required".into()),
    };
    let data = match obj.remove("data") {
        Some(Value::Object(d)) => d,
        Some(other) => {
            return Err(format!(
                "data must be an object, got {}",
                schema::short(&other)
            ))
        }
        None => return Err("data is required (an object)".into()),
    };
    schema::check(event_type, &data)?;
    let user_id = opt_string(&mut obj, "userId")?;
    let correlation_id = opt_string(&mut obj, "correlationId")?;
    let classification = opt_string(&mut obj, "dataClassification")?
        .map(|s| Classification::parse(&s).map_err(|e| e.to_string()))
        .transpose()?;
    let timestamp = match obj.remove("timestamp") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().filter(|t| *t >= 0).ok_or_else(|| {
            format!(
                "timestamp must be epoch milliseconds (a non-negative integer), got {}",
                schema::short(&v)
            )
        })?),
    };
    Ok(NewEvent {
        event_type,
        token_id,
        data,
        user_id,
        correlation_id,
        classification,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use odin_events::Classification;

    fn bad(body: &str) -> IngestError {
        parse_body(body.as_bytes(), 3).unwrap_err()
    }

    #[test]
    fn single_and_batch() {
        let one = r#"{"eventType":"TRADE_EXECUTED","tokenId":"BTC","data":{"price":1,"amount":2,"side":"buy"},"userId":"u1","correlationId":"c1","dataClassification":"internal"}"#;
        let r = parse_body(one.as_bytes(), 3).unwrap();
        assert_eq!(r.len(), 1);
        let m = &r[0].envelope.metadata;
        assert_eq!(m.user_id.as_deref(), Some("u1"));
        assert_eq!(m.correlation_id, "c1");
        assert_eq!(m.data_classification, Classification::Internal);
        assert!(r[0].trade.is_some());

        let batch = r#"{"events":[{"eventType":"HOLDER_COUNT_UPDATED","tokenId":"ETH","data":{"holderCount":5}},{"eventType":"BALANCE_UPDATED","tokenId":"ETH","data":{"address":"0x1","balance":"3"}}]}"#;
        let r = parse_body(batch.as_bytes(), 3).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[1].envelope.metadata.data_classification,
            Classification::Restricted
        );
    }

    #[test]
    fn refusals_name_index_and_reason() {
        assert!(matches!(bad("{"), IngestError::NotJson { .. }));
        assert_eq!(bad("[1]"), IngestError::NotAnObject);
        assert_eq!(bad(r#"{"events":{}}"#), IngestError::EventsNotArray);
        assert_eq!(bad(r#"{"events":[]}"#), IngestError::Empty);
        assert_eq!(
            bad(r#"{"events":[{},{},{},{}]}"#),
            IngestError::TooMany { count: 4, max: 3 }
        );
        let IngestError::Invalid(errs) = bad(r#"{"events":[
                {"eventType":"NOPE","tokenId":"BTC","data":{}},
                {"eventType":"TRENDING_UPDATED","tokenId":"B C","data":{"rank":1}},
                {"eventType":"TRENDING_UPDATED","tokenId":"BTC","data":[]}
            ]}"#)
        else {
            panic!("expected Invalid")
        };
        assert_eq!(errs.len(), 3);
        assert_eq!(errs[0].index, 0);
        assert!(errs[0].reason.contains("unknown event type"), "{errs:?}");
        assert!(errs[1].reason.contains("B C"), "{errs:?}");
        assert!(
            errs[2].reason.contains("data must be an object"),
            "{errs:?}"
        );

        let IngestError::Invalid(errs) = bad(
            r#"{"events":[{"eventType":"TRENDING_UPDATED","tokenId":"BTC","data":{"rank":1}},
            {"eventType":"TRADE_EXECUTED","tokenId":"BTC","data":{"price":"x","amount":1,"side":"buy"}},
            {"eventType":"TRENDING_UPDATED","tokenId":"BTC","data":{"rank":1},"timestamp":-5}]}"#,
        ) else {
            panic!("expected Invalid")
        };
        assert_eq!(errs.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1, 2]);
        assert!(errs[0].reason.contains("data.price"));
        assert!(errs[1].reason.contains("timestamp"));
        assert!(matches!(
            bad(
                r#"{"eventType":"TRENDING_UPDATED","tokenId":"BTC","data":{"rank":1},"dataClassification":"secret"}"#
            ),
            IngestError::Invalid(_)
        ));
    }
}
