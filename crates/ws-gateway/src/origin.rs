//! The `Origin` allow-list (`WS_ALLOWED_ORIGINS`), checked before the upgrade so that a page
//! on another site cannot open a WebSocket with a user's cookies or token (HTTP 403).
//! Requests without an `Origin` header come from non-browser clients and are allowed.

/// Which origins may open a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OriginPolicy {
    /// Normalised origins; empty = any origin.
    allowed: Vec<String>,
    any: bool,
}

/// Why an allow-list entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WS_ALLOWED_ORIGINS entry {entry:?} is not an origin like https://app.example.com")]
pub struct OriginListError {
    pub entry: String,
}

/// `scheme://host[:port]`, lower-cased, without a trailing slash or the scheme's default port,
/// as browsers send it.
fn normalise(origin: &str) -> Option<String> {
    let o = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = o.split_once("://")?;
    if scheme.is_empty() || rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return None;
    }
    let rest = match (scheme, rest.rsplit_once(':')) {
        ("https" | "wss", Some((host, "443"))) | ("http" | "ws", Some((host, "80"))) => host,
        _ => rest,
    };
    Some(format!("{scheme}://{rest}"))
}

impl OriginPolicy {
    /// Any origin.
    pub fn any() -> Self {
        Self {
            allowed: Vec::new(),
            any: true,
        }
    }

    /// Parses a comma-separated list; empty (or `*`) allows any origin.
    pub fn parse(list: &str) -> Result<Self, OriginListError> {
        let mut allowed = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                return Ok(Self::any());
            }
            allowed.push(normalise(entry).ok_or_else(|| OriginListError {
                entry: entry.to_owned(),
            })?);
        }
        if allowed.is_empty() {
            return Ok(Self::any());
        }
        Ok(Self {
            allowed,
            any: false,
        })
    }

    /// Whether every origin is allowed.
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Whether a request with this `Origin` header (or none) may upgrade.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.any {
            return true;
        }
        // "null" (sandboxed frames, file://) and anything unparsable are refused.
        match normalise(origin) {
            Some(o) => self.allowed.contains(&o),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_star_allows_any() {
        for list in ["", " , ", "*", "https://a.example,*"] {
            let p = OriginPolicy::parse(list).unwrap();
            assert!(p.allows_any(), "{list:?}");
            assert!(p.allows(Some("https://evil.example")));
        }
    }

    #[test]
    fn allow_list_is_enforced() {
        let p = OriginPolicy::parse("https://app.example.com, http://localhost:5173/").unwrap();
        assert!(!p.allows_any());
        assert!(p.allows(None), "non-browser clients send no Origin");
        assert!(p.allows(Some("https://app.example.com")));
        assert!(p.allows(Some("HTTPS://App.Example.com")));
        assert!(p.allows(Some("https://app.example.com:443")));
        assert!(p.allows(Some("http://localhost:5173")));
        assert!(!p.allows(Some("http://localhost:5174")));
        assert!(!p.allows(Some("http://app.example.com")));
        assert!(!p.allows(Some("https://app.example.com.evil.io")));
        assert!(!p.allows(Some("https://evil.io")));
        assert!(!p.allows(Some("null")));
        assert!(!p.allows(Some("")));
    }

    #[test]
    fn bad_entries_are_refused() {
        assert_eq!(
            OriginPolicy::parse("app.example.com"),
            Err(OriginListError {
                entry: "app.example.com".into()
            })
        );
        assert!(OriginPolicy::parse("https://a.example/path").is_err());
    }
}
