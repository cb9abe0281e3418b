//! The HTTP side: `/health`, `/stats`, `/metrics`, `POST /publish` and `/openapi.json` (the
//! OpenAPI 3 document generated from these handlers and types), with body and header size
//! limits; every error is a JSON body.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use odin_events::TokenId;
use odin_service::http::{json_error, not_found};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::publish::{Failed, PublishStatsView};
use crate::state::Core;
use crate::window::rfc3339;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest accepted total of header names and values.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most tokens one `POST /publish` may name.
pub const MAX_PUBLISH_TOKENS: usize = 10_000;

/// The OpenAPI document of this API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Odin Stream aggregator",
        description = "Per-token rolling-window aggregates of trades."
    ),
    paths(health, stats, metrics, publish, openapi_json),
    components(schemas(
        Health,
        KafkaStatus,
        Instance,
        Stats,
        PartitionRef,
        PublishStatsView,
        PublishRequest,
        PublishResponse,
        Failed,
        ErrorBody
    ))
)]
pub struct ApiDoc;

/// The router over the shared state.
pub fn app(core: Arc<Core>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/publish", post(publish))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(limit_headers))
        .with_state(core)
}

/// Every error response: `{"error": "...", "status": 400}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub status: u16,
}

async fn limit_headers(req: Request, next: Next) -> Response {
    if let Some(r) = odin_service::http::headers_too_large(req.headers(), MAX_HEADER_BYTES) {
        return r;
    }
    next.run(req).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KafkaStatus {
    pub connected: bool,
    /// Why not, when not connected.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Instance {
    pub index: u32,
    pub count: u32,
}

/// Service health.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `replaying` (reading the input before the first tick) or `degraded` (no Kafka).
    pub status: String,
    pub kafka: KafkaStatus,
    pub replay_complete: bool,
    pub instance: Instance,
}

/// 200 while Kafka is reachable, else 503.
#[utoipa::path(get, path = "/health", responses(
    (status = 200, description = "Kafka reachable", body = Health),
    (status = 503, description = "Kafka unreachable", body = Health),
))]
async fn health(State(core): State<Arc<Core>>) -> Response {
    let connected = core.health.is_connected();
    let replayed = core.is_replay_complete();
    let status = match (connected, replayed) {
        (true, true) => "ok",
        (true, false) => "replaying",
        (false, _) => "degraded",
    };
    let code = if connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: status.into(),
        kafka: KafkaStatus {
            connected,
            reason: core.health.reason(),
        },
        replay_complete: replayed,
        instance: Instance {
            index: core.settings.instance_index,
            count: core.settings.instance_count,
        },
    };
    (code, Json(body)).into_response()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionRef {
    pub topic: String,
    pub partition: i32,
}

/// Counters of this instance since start.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub producer: PublishStatsView,
    pub trades_ingested: u64,
    /// Trades that arrived at or below the horizon (older than any future tick can use).
    pub trades_late: u64,
    /// Old trades skipped while replaying at start.
    pub replay_skipped: u64,
    /// Records sent to the dead-letter topic.
    pub records_invalid: u64,
    /// Valid Odin events that are not trades.
    pub records_not_trades: u64,
    pub dead_letter_errors: u64,
    pub ticks: u64,
    pub ticks_skipped: u64,
    pub barrier_timeouts: u64,
    /// End of the last scheduled tick, RFC 3339.
    pub last_tick: Option<String>,
    pub replay_complete: bool,
    pub tokens_held: usize,
    pub buckets_held: usize,
    /// Trades at or before this time are dropped.
    pub horizon: String,
    pub partitions: Vec<PartitionRef>,
    pub interval_ms: i64,
    pub windows: Vec<String>,
}

#[utoipa::path(get, path = "/stats", responses((status = 200, body = Stats)))]
async fn stats(State(core): State<Arc<Core>>) -> Json<Stats> {
    let c = &core.counters;
    let last_tick = core.last_tick.load(Ordering::Acquire);
    let (tokens_held, buckets_held, horizon) = {
        let w = core.windows().await;
        (w.token_count(), w.bucket_count(), w.horizon())
    };
    Json(Stats {
        producer: core.publisher.stats(),
        trades_ingested: c.trades.get(),
        trades_late: c.late.get(),
        replay_skipped: c.replay_skipped.get(),
        records_invalid: c.invalid.get(),
        records_not_trades: c.not_trades.get(),
        dead_letter_errors: c.dlq_errors.get(),
        ticks: c.ticks.get(),
        ticks_skipped: c.ticks_skipped.get(),
        barrier_timeouts: c.barrier_timeouts.get(),
        last_tick: (last_tick > 0).then(|| rfc3339(last_tick)),
        replay_complete: core.is_replay_complete(),
        tokens_held,
        buckets_held,
        horizon: rfc3339(horizon),
        partitions: core
            .assigned()
            .into_iter()
            .map(|(topic, partition)| PartitionRef { topic, partition })
            .collect(),
        interval_ms: core.settings.interval_ms,
        windows: core
            .settings
            .windows
            .iter()
            .map(|w| w.name.clone())
            .collect(),
    })
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

/// Body of `POST /publish`; empty body = every active token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Tokens to publish (`[A-Za-z0-9_:-]{1,64}`); absent = every active token.
    #[serde(default)]
    pub tokens: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublishResponse {
    /// The `end` the records carry, RFC 3339.
    pub timestamp: String,
    pub published: usize,
    /// Tokens published (named tokens without trades in any window are left out).
    pub tokens: Vec<String>,
    pub failed: Vec<Failed>,
}

/// Publishes now: end = the clock rounded down to the bucket granularity (1 s by default).
#[utoipa::path(post, path = "/publish",
    request_body(content = PublishRequest, description = "optional", content_type = "application/json"),
    responses(
        (status = 200, description = "published", body = PublishResponse),
        (status = 400, description = "bad body or token", body = ErrorBody),
        (status = 413, description = "body above 64 KiB", body = ErrorBody),
        (status = 431, description = "headers above 16 KiB", body = ErrorBody),
        (status = 502, description = "a record was not acknowledged", body = PublishResponse),
        (status = 503, description = "still replaying the input", body = ErrorBody),
    ))]
async fn publish(State(core): State<Arc<Core>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rej) => return json_error(rej.status(), rej.body_text()),
    };
    let tokens = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<PublishRequest>(&body) {
            Ok(r) => r.tokens,
            Err(e) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    format!("body must be {{\"tokens\":[\"TOKEN\",…]}} (tokens optional): {e}"),
                )
            }
        }
    };
    if let Some(list) = &tokens {
        if list.len() > MAX_PUBLISH_TOKENS {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("{} tokens named; at most {MAX_PUBLISH_TOKENS}", list.len()),
            );
        }
        if let Some((t, e)) = list
            .iter()
            .find_map(|t| TokenId::validate(t).err().map(|e| (t, e)))
        {
            return json_error(StatusCode::BAD_REQUEST, format!("token {t:?}: {e}"));
        }
    }
    if !core.is_replay_complete() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "still replaying the input; aggregates would be incomplete",
        );
    }
    let generated_at = rfc3339(chrono::Utc::now().timestamp_millis());
    let end = core.windows().await.align_down(core.clock.now_ms());
    let (data, _) = core.snapshot(end, tokens, false, generated_at).await;
    let out = core.publisher.publish(data, end).await;
    let code = if out.failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    let body = PublishResponse {
        timestamp: rfc3339(end),
        published: out.tokens.len(),
        tokens: out.tokens,
        failed: out.failed,
    };
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_lists_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for path in ["/health", "/stats", "/metrics", "/publish", "/openapi.json"] {
            assert!(doc["paths"].get(path).is_some(), "{path}");
        }
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["Stats"]["properties"].get("trades_late").is_some());
        assert!(schemas["PublishRequest"]["properties"]
            .get("tokens")
            .is_some());
    }
}
