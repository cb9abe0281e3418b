//! Schemas of the OpenAPI document served at `/openapi.json`: the shapes the handlers in
//! [`crate::http`] read and write (the handlers build their answers with `json!`, so these
//! types exist for the document and tests check the answers against them).

#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub status: u16,
}

/// One event of `POST /events` (or `{"events": [EventIn, …]}`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventIn {
    /// One of the 23 event types, e.g. `TRADE_EXECUTED`.
    pub event_type: String,
    /// `[A-Za-z0-9_:-]{1,64}`.
    pub token_id: String,
    /// The fields the event type requires (see docs/publisher.md).
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
    pub user_id: Option<String>,
    pub correlation_id: Option<String>,
    /// public, internal, confidential or restricted.
    pub data_classification: Option<String>,
    /// Epoch milliseconds; now when absent.
    pub timestamp: Option<i64>,
}

/// A batch for `POST /events`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventBatch {
    pub events: Vec<EventIn>,
}

/// 200 of `POST /events`: every record was acknowledged.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    pub event_ids: Vec<String>,
    pub offsets: Vec<i64>,
    pub partitions: Vec<i32>,
}

/// A refused event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BadEventBody {
    pub index: usize,
    pub reason: String,
}

/// 400 of `POST /events`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Refused {
    pub error: String,
    pub status: u16,
    pub errors: Vec<BadEventBody>,
}

/// An acknowledged event of a batch that failed as a whole.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AckedEvent {
    pub index: usize,
    pub event_id: String,
    pub partition: i32,
    pub offset: i64,
}

/// An event that was not acknowledged.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedEvent {
    pub index: usize,
    pub event_id: String,
    pub reason: String,
}

/// 503 of `POST /events`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Unavailable {
    pub error: String,
    pub status: u16,
    #[serde(default)]
    pub failed: Vec<FailedEvent>,
    #[serde(default)]
    pub acknowledged: Vec<AckedEvent>,
}

/// Body of `POST /start`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartIn {
    /// Events per second, > 0 and ≤ PUBLISHER_MAX_RATE.
    pub rate: Option<f64>,
    pub token_ids: Option<Vec<String>>,
}

/// Body of `POST /rate`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RateIn {
    pub rate: f64,
}

/// Body of `POST /control`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlIn {
    /// `start` or `stop`.
    pub action: String,
    pub messages_per_second: Option<f64>,
    pub token_ids: Option<Vec<String>>,
}

/// Answer of the simulator controls.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SimAnswer {
    pub message: String,
    pub is_running: bool,
    pub current_rate: Option<f64>,
    pub token_ids: Option<Vec<String>>,
    pub messages_published: Option<u64>,
}

/// `GET /status`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusBody {
    pub is_running: bool,
    pub current_rate: f64,
    pub token_ids: Vec<String>,
    pub publisher_healthy: bool,
    pub messages_published: u64,
    pub messages_failed: u64,
    pub messages_simulated: u64,
    pub uptime: f64,
}

/// `GET /stats`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsBody {
    pub messages_published: u64,
    pub messages_failed: u64,
    pub messages_simulated: u64,
    pub by_topic: std::collections::BTreeMap<String, u64>,
    pub by_event_type: std::collections::BTreeMap<String, u64>,
    pub messages_per_second: f64,
    pub uptime: f64,
}

/// `GET /health`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthBody {
    /// `ok` or `unavailable`.
    pub status: String,
    pub kafka: String,
    pub brokers: Vec<String>,
    pub error: Option<String>,
}
