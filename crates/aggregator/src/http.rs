//! The HTTP side: `/health`, `/stats`, `/metrics` and `POST /publish`, with body and header
//! size limits; every error is a JSON body.

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
use odin_service::http::{json_error, metrics, not_found};
use serde::Deserialize;
use serde_json::json;

use crate::state::Core;
use crate::window::rfc3339;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest accepted total of header names and values.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most tokens one `POST /publish` may name.
pub const MAX_PUBLISH_TOKENS: usize = 10_000;

/// The router over the shared state.
pub fn app(core: Arc<Core>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/publish", post(publish))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(limit_headers))
        .with_state(core)
}

async fn limit_headers(req: Request, next: Next) -> Response {
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if size > MAX_HEADER_BYTES {
        return json_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request headers are {size} bytes; the limit is {MAX_HEADER_BYTES}"),
        );
    }
    next.run(req).await
}

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
    (
        code,
        Json(json!({
            "status": status,
            "kafka": { "connected": connected, "reason": core.health.reason() },
            "replay_complete": replayed,
            "instance": { "index": core.settings.instance_index, "count": core.settings.instance_count },
        })),
    )
        .into_response()
}

async fn stats(State(core): State<Arc<Core>>) -> Response {
    let c = &core.counters;
    let last_tick = core.last_tick.load(Ordering::Acquire);
    let (tokens, buckets, horizon) = {
        let w = core.windows().await;
        (w.token_count(), w.bucket_count(), w.horizon())
    };
    let partitions: Vec<_> = core
        .assigned()
        .into_iter()
        .map(|(t, p)| json!({"topic": t, "partition": p}))
        .collect();
    Json(json!({
        "producer": core.publisher.stats(),
        "trades_ingested": c.trades.get(),
        "trades_late": c.late.get(),
        "replay_skipped": c.replay_skipped.get(),
        "records_invalid": c.invalid.get(),
        "records_not_trades": c.not_trades.get(),
        "dead_letter_errors": c.dlq_errors.get(),
        "ticks": c.ticks.get(),
        "ticks_skipped": c.ticks_skipped.get(),
        "barrier_timeouts": c.barrier_timeouts.get(),
        "last_tick": (last_tick > 0).then(|| rfc3339(last_tick)),
        "replay_complete": core.is_replay_complete(),
        "tokens_held": tokens,
        "buckets_held": buckets,
        "horizon": rfc3339(horizon),
        "partitions": partitions,
        "interval_ms": core.settings.interval_ms,
        "windows": core.settings.windows.iter().map(|w| w.name.clone()).collect::<Vec<_>>(),
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    #[serde(default)]
    tokens: Option<Vec<String>>,
}

/// `POST /publish {"tokens":[…]}`: publishes now (end = the clock rounded down to the
/// bucket granularity, 1 s by default) for the named tokens, or every active one.
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
    (
        code,
        Json(json!({
            "timestamp": rfc3339(end),
            "published": out.tokens.len(),
            "tokens": out.tokens,
            "failed": out.failed,
        })),
    )
        .into_response()
}
