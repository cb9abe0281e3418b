//! Driving the publisher's simulator over its HTTP API (`POST /start`, `/rate`, `/stop`)
//! with a minimal HTTP/1.1 client: one request per connection, loopback only.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a publisher request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublisherError {
    #[error("publisher URL {url:?} is not http://HOST:PORT")]
    BadUrl { url: String },
    #[error("publisher {url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("publisher {url}{path} did not answer within {timeout:?}")]
    Timeout {
        url: String,
        path: String,
        timeout: Duration,
    },
    #[error("publisher {url}{path} answered {status}: {body}")]
    Status {
        url: String,
        path: String,
        status: u16,
        body: String,
    },
    #[error("publisher {url} answered something that is not HTTP: {head:?}")]
    NotHttp { url: String, head: String },
}

/// `http://host:port[/]` → (`host:port`, host header).
pub fn parse_base(url: &str) -> Result<String, PublisherError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| PublisherError::BadUrl { url: url.into() })?;
    let hostport = rest.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains('/') || !hostport.contains(':') {
        return Err(PublisherError::BadUrl { url: url.into() });
    }
    Ok(hostport.to_owned())
}

/// The status code and body of a raw HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let status_line = text.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// The publisher's API.
#[derive(Debug, Clone)]
pub struct Publisher {
    url: String,
    addr: SocketAddr,
    host: String,
}

const TIMEOUT: Duration = Duration::from_secs(5);

impl Publisher {
    /// Resolves the URL; refuses addresses that are not loopback.
    pub async fn new(url: &str) -> Result<Self, PublisherError> {
        let host = parse_base(url)?;
        let addr = tokio::net::lookup_host(&host)
            .await
            .map_err(|source| PublisherError::Io {
                url: url.into(),
                source,
            })?
            .find(|a| a.ip().is_loopback())
            .ok_or_else(|| PublisherError::BadUrl { url: url.into() })?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            addr,
            host,
        })
    }

    /// POSTs a JSON body; a non-2xx answer is an error.
    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<String, PublisherError> {
        let body = body.to_string();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host,
            body.len()
        );
        let io = |source| PublisherError::Io {
            url: self.url.clone(),
            source,
        };
        let exchange = async {
            let mut s = TcpStream::connect(self.addr).await.map_err(io)?;
            s.write_all(req.as_bytes()).await.map_err(io)?;
            let mut raw = Vec::new();
            // Bounded: a publisher answer is small; more than 1 MiB is not one.
            (&mut s)
                .take(1 << 20)
                .read_to_end(&mut raw)
                .await
                .map_err(io)?;
            Ok::<_, PublisherError>(raw)
        };
        let raw = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| PublisherError::Timeout {
                url: self.url.clone(),
                path: path.into(),
                timeout: TIMEOUT,
            })??;
        let (status, body) = parse_response(&raw).ok_or_else(|| PublisherError::NotHttp {
            url: self.url.clone(),
            head: String::from_utf8_lossy(&raw[..raw.len().min(80)]).into_owned(),
        })?;
        if !(200..300).contains(&status) {
            return Err(PublisherError::Status {
                url: self.url.clone(),
                path: path.into(),
                status,
                body,
            });
        }
        Ok(body)
    }

    pub async fn start(&self, rate: f64, tokens: &[String]) -> Result<String, PublisherError> {
        self.post(
            "/start",
            &serde_json::json!({"rate": rate, "tokenIds": tokens}),
        )
        .await
    }

    pub async fn set_rate(&self, rate: f64) -> Result<String, PublisherError> {
        self.post("/rate", &serde_json::json!({"rate": rate})).await
    }

    pub async fn stop(&self) -> Result<String, PublisherError> {
        self.post("/stop", &serde_json::json!({})).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base("http://127.0.0.1:3001").unwrap(),
            "127.0.0.1:3001"
        );
        assert_eq!(
            parse_base("http://localhost:3001/").unwrap(),
            "localhost:3001"
        );
        assert!(parse_base("https://x:1").is_err());
        assert!(parse_base("http://x:1/api").is_err());
        assert!(parse_base("http://x").is_err());
    }

    #[test]
    fn responses() {
        let (s, b) =
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ok\":true}").unwrap();
        assert_eq!((s, b.as_str()), (200, "{\"ok\":true}"));
        assert_eq!(
            parse_response(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                .unwrap()
                .0,
            400
        );
        assert!(parse_response(b"SSH-2.0").is_none());
    }

    #[tokio::test]
    async fn posts_json_to_a_real_socket_and_reports_errors() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for status in ["200 OK", "409 Conflict"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                // Read until the whole body (Content-Length) is in.
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .unwrap()
                            .parse()
                            .unwrap();
                        if body.len() >= len {
                            seen.push(text);
                            break;
                        }
                    }
                }
                let body = r#"{"ok":true}"#;
                s.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await
                .unwrap();
            }
            seen
        });
        let p = Publisher::new(&format!("http://{addr}")).await.unwrap();
        let body = p.start(500.0, &["BTC".into()]).await.unwrap();
        assert_eq!(body, r#"{"ok":true}"#);
        let err = p.set_rate(1000.0).await.unwrap_err();
        assert!(
            matches!(err, PublisherError::Status { status: 409, .. }),
            "{err}"
        );
        let seen = server.await.unwrap();
        assert!(seen[0].starts_with("POST /start HTTP/1.1"));
        assert!(seen[0].ends_with(r#"{"rate":500.0,"tokenIds":["BTC"]}"#));
        assert!(seen[1].starts_with("POST /rate HTTP/1.1"));
    }
}
