//! Small axum pieces every service's HTTP side shares.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A JSON error body: `{"error": "...", "status": 404}`.
pub fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message.into(), "status": status.as_u16() })),
    )
        .into_response()
}

/// The 431 JSON response when `headers` take more than `limit` bytes on the wire (`name: value\r\n`
/// each). hyper bounds its raw buffer; this makes the limit explicit and configurable.
pub fn headers_too_large(headers: &axum::http::HeaderMap, limit: usize) -> Option<Response> {
    let size: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > limit {
        return Some(json_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request headers are {size} bytes, over the limit of {limit}"),
        ));
    }
    None
}

/// Fallback for unknown routes: 404 as JSON.
pub async fn not_found(uri: axum::http::Uri) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        format!("no route for {}", uri.path()),
    )
}

/// `/metrics`: the Prometheus text exposition.
pub async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::prometheus().render(),
    )
        .into_response()
}

/// Serves `router` on `listener` until `shutdown` fires, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}
