//! The HTTP API: routes, handlers, the API-key check and size limits. Every answer is
//! JSON except `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use odin_events::TokenId;
use odin_service::http::json_error;
use serde::Deserialize;
use serde_json::{json, Value};
use tower_http::cors::CorsLayer;
use tracing::{info, warn};
use utoipa::OpenApi;

#[allow(unused_imports)] // used by the OpenAPI annotations
use crate::openapi::{
    AckedEvent, BadEventBody, ControlIn, ErrorBody, EventBatch, EventIn, FailedEvent, HealthBody,
    Published, RateIn, Refused, SimAnswer, StartIn, StatsBody, StatusBody, Unavailable,
};

use crate::ingest::{self, IngestError};
use crate::publish::Sink;
use crate::simulator::{Params, Simulator};
use crate::stats::{Source, Stats};

/// Most tokens one simulator start may name.
const MAX_SIM_TOKENS: usize = 1_000;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub sink: Sink,
    pub stats: Stats,
    pub sim: Simulator,
    pub max_batch: usize,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub max_rate: f64,
    pub default_tokens: Vec<String>,
    pub api_key: Option<Arc<str>>,
    /// Shown by `/health`.
    pub brokers: Vec<String>,
    /// Longest `/health` waits for the broker.
    pub health_timeout: Duration,
}

/// The publisher's router.
pub fn app(state: AppState) -> Router {
    let mutating = Router::new()
        .route("/events", post(post_events))
        .route("/start", post(post_start))
        .route("/stop", post(post_stop))
        .route("/rate", post(post_rate))
        .route("/control", post(post_control))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    Router::new()
        .route("/health", get(get_health))
        .route("/status", get(get_status))
        .route("/stats", get(get_stats))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .merge(mutating)
        .fallback(odin_service::http::not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limit_header_bytes,
        ))
        .layer(CorsLayer::permissive())
        .with_state(state)
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
))]
async fn metrics() -> Response {
    odin_service::http::metrics().await
}

/// The OpenAPI 3 document of this API.
#[utoipa::path(get, path = "/openapi.json", responses(
    (status = 200, description = "OpenAPI 3 document", body = Object),
))]
async fn openapi_json() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// The OpenAPI document of this API, generated from the handlers' annotations.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Odin Stream publisher",
        description = "Ingestion API for the backend and an event simulator."
    ),
    paths(
        post_events,
        post_start,
        post_stop,
        post_rate,
        post_control,
        get_status,
        get_stats,
        get_health,
        metrics,
        openapi_json
    ),
    components(schemas(
        ErrorBody,
        EventIn,
        EventBatch,
        Published,
        BadEventBody,
        Refused,
        AckedEvent,
        FailedEvent,
        Unavailable,
        StartIn,
        RateIn,
        ControlIn,
        SimAnswer,
        StatusBody,
        StatsBody,
        HealthBody
    ))
)]
pub struct ApiDoc;

async fn method_not_allowed(req: Request) -> Response {
    json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// 431 when the request's headers are larger than the configured limit.
async fn limit_header_bytes(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(r) = odin_service::http::headers_too_large(req.headers(), state.max_header_bytes) {
        return r;
    }
    next.run(req).await
}

/// Compares without stopping at the first difference, so timing does not tell how much of
/// a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        // Walk all of `a` even when `b` is shorter.
        let y = b.get(i).copied().unwrap_or(!x);
        diff |= x ^ y;
    }
    diff == 0
}

fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get("x-api-key") {
        return Some(v.as_bytes());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
}

async fn require_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let ok = presented_key(req.headers()).is_some_and(|k| constant_time_eq(key.as_bytes(), k));
        if !ok {
            metrics::counter!("publisher_unauthorized_total").increment(1);
            return json_error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API key (send it in x-api-key or Authorization: Bearer)",
            );
        }
    }
    next.run(req).await
}

/// An error answer, rendered as `{"error": …, "status": …}`.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_error(self.0, self.1)
    }
}

/// Turns a body that could not be read (too large, broken) into a JSON error.
fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            metrics::counter!("publisher_ingest_rejected_total", "reason" => "too_large")
                .increment(1);
        }
        ApiError(r.status(), r.body_text())
    })
}

/// Parses a JSON control body; an empty body is `{}`.
fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(text).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("body is not valid JSON of the expected shape: {e}"),
        )
    })
}

/// Validates, produces and acknowledges one event or a batch.
#[utoipa::path(post, path = "/events",
    request_body(content = EventBatch, description = "one EventIn, or {\"events\": [EventIn]}", content_type = "application/json"),
    responses(
        (status = 200, description = "every record acknowledged", body = Published),
        (status = 400, description = "invalid body or events; nothing produced", body = Refused),
        (status = 401, description = "API key missing or wrong (when PUBLISHER_API_KEY is set)", body = ErrorBody),
        (status = 413, description = "body over PUBLISHER_MAX_BODY_BYTES", body = ErrorBody),
        (status = 431, description = "headers over PUBLISHER_MAX_HEADER_BYTES", body = ErrorBody),
        (status = 503, description = "broker unavailable, topic missing or produce failed", body = Unavailable),
    ))]
async fn post_events(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let body = match body_or_error(body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let events = match ingest::parse_body(&body, state.max_batch) {
        Ok(e) => e,
        Err(e) => {
            metrics::counter!("publisher_ingest_rejected_total", "reason" => "invalid")
                .increment(1);
            let errors = match &e {
                IngestError::Invalid(bad) => json!(bad),
                _ => json!([]),
            };
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": e.to_string(), "status": 400, "errors": errors })),
            )
                .into_response();
        }
    };
    // Fail the whole batch before producing anything when a topic is missing or the
    // broker cannot be reached.
    if let Err(e) = state.sink.check_topics(&events).await {
        for _ in &events {
            state.stats.failed(Source::Api);
        }
        warn!(error = %e, events = events.len(), "batch refused: broker or topic unavailable");
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("nothing was published: {e}"),
        );
    }
    let n = events.len();
    let mut queued = Vec::with_capacity(n);
    for ev in events {
        let id = ev.envelope.metadata.event_id.clone();
        queued.push((id, state.sink.enqueue(ev).await));
    }
    let mut event_ids = Vec::with_capacity(n);
    let mut offsets = Vec::with_capacity(n);
    let mut partitions = Vec::with_capacity(n);
    let mut acknowledged = Vec::new();
    let mut failed = Vec::new();
    for (index, (id, q)) in queued.into_iter().enumerate() {
        let result = match q {
            Ok(p) => p.settle(&state.stats, Source::Api).await,
            Err(e) => {
                state.stats.failed(Source::Api);
                Err(e)
            }
        };
        match result {
            Ok(d) => {
                acknowledged.push(json!({"index": index, "eventId": id, "partition": d.partition, "offset": d.offset}));
                offsets.push(d.offset);
                partitions.push(d.partition);
                event_ids.push(id);
            }
            Err(e) => failed.push(json!({"index": index, "eventId": id, "reason": e.to_string()})),
        }
    }
    metrics::histogram!("publisher_ingest_seconds").record(started.elapsed().as_secs_f64());
    if failed.is_empty() {
        (
            StatusCode::OK,
            Json(json!({ "eventIds": event_ids, "offsets": offsets, "partitions": partitions })),
        )
            .into_response()
    } else {
        let reason = failed
            .first()
            .and_then(|f| f.get("reason"))
            .and_then(Value::as_str)
            .unwrap_or("produce failed")
            .to_owned();
        warn!(failed = failed.len(), acknowledged = acknowledged.len(), %reason, "batch partly or wholly not acknowledged");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "error": format!("{} of {n} event(s) not acknowledged by the broker: {reason}", failed.len()),
                "status": 503,
                "failed": failed,
                "acknowledged": acknowledged,
            })),
        )
            .into_response()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StartBody {
    rate: Option<f64>,
    token_ids: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateBody {
    rate: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ControlBody {
    action: String,
    messages_per_second: Option<f64>,
    token_ids: Option<Vec<String>>,
}

fn check_rate(rate: f64, max: f64, field: &str) -> Result<f64, ApiError> {
    if rate.is_finite() && rate > 0.0 && rate <= max {
        Ok(rate)
    } else {
        Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{field} must be a number > 0 and <= {max} (PUBLISHER_MAX_RATE), got {rate}"),
        ))
    }
}

fn check_tokens(tokens: Option<Vec<String>>, default: &[String]) -> Result<Vec<String>, ApiError> {
    let Some(tokens) = tokens else {
        return Ok(default.to_vec());
    };
    if tokens.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "tokenIds is empty".into(),
        ));
    }
    if tokens.len() > MAX_SIM_TOKENS {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "tokenIds has {} entries, over the limit of {MAX_SIM_TOKENS}",
                tokens.len()
            ),
        ));
    }
    for t in &tokens {
        TokenId::validate(t)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("tokenIds: {e}")))?;
    }
    Ok(tokens)
}

async fn start(
    state: &AppState,
    rate: Option<f64>,
    tokens: Option<Vec<String>>,
    rate_field: &str,
) -> Response {
    let current = state.sim.status().await;
    let rate = match check_rate(
        rate.unwrap_or(current.current_rate),
        state.max_rate,
        rate_field,
    ) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let tokens = match check_tokens(tokens, &state.default_tokens) {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
    state.sim.start(Params { rate, tokens }).await;
    let s = state.sim.status().await;
    Json(json!({
        "message": "simulator started",
        "isRunning": s.is_running,
        "currentRate": s.current_rate,
        "tokenIds": s.token_ids,
    }))
    .into_response()
}

async fn stop(state: &AppState) -> Response {
    let was = state.sim.stop().await;
    Json(json!({
        "message": if was { "simulator stopped" } else { "simulator was not running" },
        "isRunning": false,
        "messagesPublished": state.stats.published_total(),
    }))
    .into_response()
}

/// Starts (or retargets) the simulator.
#[utoipa::path(post, path = "/start", request_body(content = StartIn, content_type = "application/json"), responses(
        (status = 200, description = "done", body = SimAnswer),
        (status = 400, description = "invalid parameters", body = ErrorBody),
        (status = 401, description = "API key missing or wrong (when PUBLISHER_API_KEY is set)", body = ErrorBody),
        (status = 413, description = "body over PUBLISHER_MAX_BODY_BYTES", body = ErrorBody),
        (status = 431, description = "headers over PUBLISHER_MAX_HEADER_BYTES", body = ErrorBody),
))]
async fn post_start(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: StartBody = match body_or_error(body).and_then(|b| parse_json(&b)) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    start(&state, req.rate, req.token_ids, "rate").await
}

/// Stops the simulator once what it queued is settled.
#[utoipa::path(post, path = "/stop", responses(
        (status = 200, description = "done", body = SimAnswer),
        (status = 400, description = "invalid parameters", body = ErrorBody),
        (status = 401, description = "API key missing or wrong (when PUBLISHER_API_KEY is set)", body = ErrorBody),
        (status = 413, description = "body over PUBLISHER_MAX_BODY_BYTES", body = ErrorBody),
        (status = 431, description = "headers over PUBLISHER_MAX_HEADER_BYTES", body = ErrorBody),
))]
async fn post_stop(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    if let Err(r) = body_or_error(body) {
        return r.into_response();
    }
    stop(&state).await
}

/// Changes the simulator rate.
#[utoipa::path(post, path = "/rate", request_body(content = RateIn, content_type = "application/json"), responses(
        (status = 200, description = "done", body = SimAnswer),
        (status = 400, description = "invalid parameters", body = ErrorBody),
        (status = 401, description = "API key missing or wrong (when PUBLISHER_API_KEY is set)", body = ErrorBody),
        (status = 413, description = "body over PUBLISHER_MAX_BODY_BYTES", body = ErrorBody),
        (status = 431, description = "headers over PUBLISHER_MAX_HEADER_BYTES", body = ErrorBody),
))]
async fn post_rate(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let req: RateBody = match body_or_error(body).and_then(|b| parse_json(&b)) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let Some(rate) = req.rate else {
        return json_error(StatusCode::BAD_REQUEST, "rate is required");
    };
    let rate = match check_rate(rate, state.max_rate, "rate") {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    state.sim.set_rate(rate);
    info!(rate, "simulator rate changed");
    let s = state.sim.status().await;
    Json(json!({"message": "rate updated", "currentRate": s.current_rate, "isRunning": s.is_running}))
        .into_response()
}

/// The older start/stop control.
#[utoipa::path(post, path = "/control", request_body(content = ControlIn, content_type = "application/json"), responses(
        (status = 200, description = "done", body = SimAnswer),
        (status = 400, description = "invalid parameters", body = ErrorBody),
        (status = 401, description = "API key missing or wrong (when PUBLISHER_API_KEY is set)", body = ErrorBody),
        (status = 413, description = "body over PUBLISHER_MAX_BODY_BYTES", body = ErrorBody),
        (status = 431, description = "headers over PUBLISHER_MAX_HEADER_BYTES", body = ErrorBody),
))]
async fn post_control(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: ControlBody = match body_or_error(body).and_then(|b| parse_json(&b)) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    match req.action.as_str() {
        "start" => {
            start(
                &state,
                req.messages_per_second,
                req.token_ids,
                "messagesPerSecond",
            )
            .await
        }
        "stop" => stop(&state).await,
        other => json_error(
            StatusCode::BAD_REQUEST,
            format!("action must be \"start\" or \"stop\", got {other:?}"),
        ),
    }
}

/// Simulator state and counters.
#[utoipa::path(get, path = "/status", responses((status = 200, description = "status", body = StatusBody)))]
async fn get_status(State(state): State<AppState>) -> Response {
    let s = state.sim.status().await;
    Json(json!({
        "isRunning": s.is_running,
        "currentRate": s.current_rate,
        "tokenIds": s.token_ids,
        "publisherHealthy": state.sink.producer().health().is_connected(),
        "messagesPublished": state.stats.published_total(),
        "messagesFailed": state.stats.failed_total(),
        "messagesSimulated": state.stats.simulated_total(),
        "uptime": state.stats.uptime().as_secs_f64(),
    }))
    .into_response()
}

/// Publishing counters.
#[utoipa::path(get, path = "/stats", responses((status = 200, description = "counters", body = StatsBody)))]
async fn get_stats(State(state): State<AppState>) -> Response {
    Json(state.stats.snapshot()).into_response()
}

/// 200 when the broker answers, else 503 with the reason.
#[utoipa::path(get, path = "/health", responses(
    (status = 200, description = "broker reachable", body = HealthBody),
    (status = 503, description = "broker unreachable", body = HealthBody),
))]
async fn get_health(State(state): State<AppState>) -> Response {
    let ping = tokio::time::timeout(state.health_timeout, state.sink.producer().ping()).await;
    let reason = match ping {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => {
            let r = format!("broker did not answer within {:?}", state.health_timeout);
            state.sink.producer().health().set_disconnected(r.clone());
            Some(r)
        }
    };
    let brokers = &state.brokers;
    match reason {
        None => Json(json!({"status": "ok", "kafka": "connected", "brokers": brokers})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "kafka": "disconnected", "error": reason, "brokers": brokers})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_lists_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for path in [
            "/events",
            "/start",
            "/stop",
            "/rate",
            "/control",
            "/status",
            "/stats",
            "/health",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
        assert!(doc["components"]["schemas"].get("EventIn").is_some());
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b""));
    }

    #[test]
    fn keys_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer k1".parse().unwrap());
        assert_eq!(presented_key(&h), Some(&b"k1"[..]));
        h.insert("x-api-key", "k2".parse().unwrap());
        assert_eq!(presented_key(&h), Some(&b"k2"[..]));
    }
}
