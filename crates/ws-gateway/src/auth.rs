//! Who a connection is: JWT validation (HS256 with a shared secret, RS256/ES256 with a public
//! key file), token extraction from the upgrade request, and the per-connection identity the
//! fan-out reads to decide whether a private event may go to that connection.
//!
//! Expiry is checked here with millisecond precision (not by `jsonwebtoken`, whose check has
//! one-second granularity), so "accepted at the upgrade" and "expired on the connection's
//! clock" always agree.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::Args;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// How long a connection whose token expired may stay open waiting for a fresh `auth` frame.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(5);

/// Refused tokens, by `stage` (`upgrade`, `frame`) and `reason` ([`AuthError::label`]).
pub const AUTH_FAILURES: &str = "ws_auth_failures_total";
/// Accepted tokens, by `stage`.
pub const AUTH_SUCCESS: &str = "ws_auth_success_total";
/// Token expiries on open connections, by `outcome` (`notified`, `closed`).
pub const TOKEN_EXPIRED: &str = "ws_token_expired_total";

/// Longest token accepted (a JWT of a few claims is well under 2 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A secret that never shows up in logs or `Debug` output of the config.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Authentication and Origin settings; flattened into the gateway's `Config`.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// HS256 secret for client JWTs. Without it (and without a public key file) the gateway
    /// authenticates nobody and delivers no private (confidential/restricted) event.
    #[arg(long, env = "WS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// PEM public key (RSA for RS256 or EC P-256 for ES256) that client JWTs are signed with.
    #[arg(long, env = "WS_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// Seconds a token is still accepted after its `exp` (clock skew allowance).
    #[arg(long, env = "WS_JWT_LEEWAY_SECS", default_value_t = 0)]
    pub jwt_leeway_secs: u64,

    /// Refuse upgrades without a valid token (HTTP 401).
    #[arg(long, env = "WS_AUTH_REQUIRED", default_value_t = false)]
    pub auth_required: bool,

    /// Comma-separated `Origin`s allowed to open a WebSocket (e.g.
    /// `https://app.example.com`); empty = any. Requests without `Origin` (non-browser
    /// clients) are always allowed.
    #[arg(long, env = "WS_ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: String,
}

/// Why the authentication settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    #[error("WS_JWT_SECRET is set but empty")]
    EmptySecret,
    #[error("cannot read WS_JWT_PUBLIC_KEY_FILE {path:?}: {source}")]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("WS_JWT_PUBLIC_KEY_FILE {path:?} is neither an RSA nor an EC (P-256) PEM public key")]
    BadKey { path: PathBuf },
    #[error("WS_AUTH_REQUIRED=true needs WS_JWT_SECRET or WS_JWT_PUBLIC_KEY_FILE")]
    RequiredWithoutKey,
    #[error("WS_JWT_LEEWAY_SECS={0} is more than a day")]
    Leeway(u64),
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("authentication is not configured on this gateway")]
    NotConfigured,
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("token algorithm {alg} is not accepted")]
    Algorithm { alg: String },
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token has no {claim:?} claim")]
    MissingClaim { claim: String },
    #[error("token claim {claim:?} is invalid")]
    BadClaim { claim: String },
    #[error("connection is authenticated as another user; reconnect to change user")]
    UserMismatch,
    #[error("token rejected: {reason}")]
    Other { reason: String },
}

impl AuthError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::NotConfigured => "not_configured",
            AuthError::Malformed | AuthError::TooLong => "malformed",
            AuthError::Algorithm { .. } => "algorithm",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::MissingClaim { .. } | AuthError::BadClaim { .. } => "claims",
            AuthError::UserMismatch => "user_mismatch",
            AuthError::Other { .. } => "other",
        }
    }
}

/// A verified token: who, and until when (epoch ms, leeway included, exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: Arc<str>,
    pub valid_until_ms: i64,
}

#[derive(Deserialize)]
struct Claims {
    /// Optional here so that a missing claim is reported as such by the validation,
    /// not as malformed JSON.
    #[serde(default)]
    sub: Option<String>,
    /// NumericDate: seconds, possibly fractional.
    #[serde(default)]
    exp: Option<f64>,
}

/// Verifies client tokens with the configured keys.
#[derive(Clone)]
pub struct Verifier {
    hmac: Option<DecodingKey>,
    rsa: Option<DecodingKey>,
    ec: Option<DecodingKey>,
    leeway_ms: i64,
    required: bool,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.hmac.is_some())
            .field("rs256", &self.rsa.is_some())
            .field("es256", &self.ec.is_some())
            .field("leeway_ms", &self.leeway_ms)
            .field("required", &self.required)
            .finish()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Verifier {
    /// Builds the verifier from the settings, reading the public key file if one is named.
    pub fn from_args(args: &AuthArgs) -> Result<Self, AuthConfigError> {
        if args.jwt_leeway_secs > 86_400 {
            return Err(AuthConfigError::Leeway(args.jwt_leeway_secs));
        }
        let hmac = match &args.jwt_secret {
            Some(s) if s.0.is_empty() => return Err(AuthConfigError::EmptySecret),
            Some(s) => Some(DecodingKey::from_secret(s.0.as_bytes())),
            None => None,
        };
        let (mut rsa, mut ec) = (None, None);
        if let Some(path) = &args.jwt_public_key_file {
            let pem = std::fs::read(path).map_err(|source| AuthConfigError::ReadKey {
                path: path.clone(),
                source,
            })?;
            rsa = DecodingKey::from_rsa_pem(&pem).ok();
            if rsa.is_none() {
                ec = DecodingKey::from_ec_pem(&pem).ok();
            }
            if rsa.is_none() && ec.is_none() {
                return Err(AuthConfigError::BadKey { path: path.clone() });
            }
        }
        let v = Self {
            hmac,
            rsa,
            ec,
            leeway_ms: args.jwt_leeway_secs as i64 * 1000,
            required: args.auth_required,
        };
        if v.required && !v.is_configured() {
            return Err(AuthConfigError::RequiredWithoutKey);
        }
        Ok(v)
    }

    /// A verifier with only an HS256 secret (tests, tools).
    pub fn hs256(secret: &[u8], leeway_secs: u64) -> Self {
        Self {
            hmac: Some(DecodingKey::from_secret(secret)),
            rsa: None,
            ec: None,
            leeway_ms: leeway_secs as i64 * 1000,
            required: false,
        }
    }

    /// A verifier that authenticates nobody.
    pub fn disabled() -> Self {
        Self {
            hmac: None,
            rsa: None,
            ec: None,
            leeway_ms: 0,
            required: false,
        }
    }

    pub fn with_required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// Whether any key is configured (if not, no private event is ever delivered).
    pub fn is_configured(&self) -> bool {
        self.hmac.is_some() || self.rsa.is_some() || self.ec.is_some()
    }

    /// Whether anonymous upgrades are refused.
    pub fn is_required(&self) -> bool {
        self.required
    }

    /// Verifies `token` now.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.verify_at(token, now_ms())
    }

    /// Verifies `token` as of `now_ms` (epoch ms) for the expiry check.
    pub fn verify_at(&self, token: &str, now_ms: i64) -> Result<Identity, AuthError> {
        if !self.is_configured() {
            return Err(AuthError::NotConfigured);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLong);
        }
        let header = jsonwebtoken::decode_header(token).map_err(map_error)?;
        // The key is chosen by the header's algorithm and each key only serves its own
        // family, so an HS256 token "signed" with the public key text is refused.
        let key = match header.alg {
            Algorithm::HS256 => self.hmac.as_ref(),
            Algorithm::RS256 => self.rsa.as_ref(),
            Algorithm::ES256 => self.ec.as_ref(),
            _ => None,
        }
        .ok_or_else(|| AuthError::Algorithm {
            alg: format!("{:?}", header.alg),
        })?;
        let mut validation = Validation::new(header.alg);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Expiry is checked below in milliseconds; nbf with the same leeway.
        validation.validate_exp = false;
        validation.validate_nbf = true;
        validation.leeway = (self.leeway_ms / 1000) as u64;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(map_error)?;
        let missing = |claim: &str| AuthError::MissingClaim {
            claim: claim.into(),
        };
        let sub = data.claims.sub.ok_or_else(|| missing("sub"))?;
        let exp = data.claims.exp.ok_or_else(|| missing("exp"))?;
        if sub.is_empty() || sub.len() > 256 {
            return Err(AuthError::BadClaim {
                claim: "sub".into(),
            });
        }
        if !exp.is_finite() {
            return Err(AuthError::BadClaim {
                claim: "exp".into(),
            });
        }
        let valid_until_ms = ((exp * 1000.0) as i64).saturating_add(self.leeway_ms);
        if now_ms >= valid_until_ms {
            return Err(AuthError::Expired);
        }
        Ok(Identity {
            user_id: sub.into(),
            valid_until_ms,
        })
    }
}

fn map_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.into_kind() {
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::MissingAlgorithm => AuthError::Malformed,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::Algorithm {
            alg: "(not accepted)".into(),
        },
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim { claim },
        ErrorKind::InvalidClaimFormat(claim) => AuthError::BadClaim { claim },
        other => AuthError::Other {
            reason: format!("{other:?}"),
        },
    }
}

/// The token of an upgrade request: `Authorization: Bearer <t>` first, else `?token=<t>`.
/// `Ok(None)` when there is none; a malformed `Authorization` header is an error so that a
/// client that meant to authenticate is told, rather than silently treated as anonymous.
pub fn token_from_request(
    authorization: Option<&str>,
    query: Option<&str>,
) -> Result<Option<String>, AuthError> {
    if let Some(h) = authorization {
        let h = h.trim();
        let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || rest.trim().is_empty() {
            return Err(AuthError::Malformed);
        }
        return Ok(Some(rest.trim().to_owned()));
    }
    Ok(query
        .and_then(|q| query_param(q, "token"))
        .filter(|t| !t.is_empty()))
}

/// The percent-decoded value of `name` in a query string (`a=1&token=x`), if present.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    let query = query.strip_prefix('?').unwrap_or(query);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The identity of one connection as the fan-out sees it, readable without a lock.
///
/// A connection starts anonymous and may authenticate once; later `auth` frames may only
/// refresh the same user's expiry. Changing user on a live connection would need the
/// fan-out to forget what it already queued for the old user, so it is refused
/// ([`AuthError::UserMismatch`]): reconnect instead.
#[derive(Debug, Default)]
pub struct ConnIdentity {
    user: OnceLock<Arc<str>>,
    /// Epoch ms (exclusive) until which `user` is authenticated; 0 = not authenticated.
    valid_until_ms: AtomicI64,
}

impl ConnIdentity {
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Applies a verified token to the connection.
    pub fn authenticate(&self, id: &Identity) -> Result<(), AuthError> {
        let user = self.user.get_or_init(|| Arc::clone(&id.user_id));
        if **user != *id.user_id {
            return Err(AuthError::UserMismatch);
        }
        self.valid_until_ms
            .store(id.valid_until_ms, Ordering::Release);
        Ok(())
    }

    /// The user the connection authenticated as, expired or not.
    pub fn user(&self) -> Option<&str> {
        self.user.get().map(|u| &**u)
    }

    /// Epoch ms until which the connection is authenticated, if it ever was.
    pub fn valid_until_ms(&self) -> Option<i64> {
        match self.valid_until_ms.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    /// Whether the connection is currently authenticated as `user`. This is the check on
    /// the fan-out's path: one atomic load and a string compare, no lock.
    pub fn is(&self, user: &str, now_ms: i64) -> bool {
        match self.user.get() {
            Some(u) => **u == *user && now_ms < self.valid_until_ms.load(Ordering::Acquire),
            None => false,
        }
    }
}

/// What a connection's expiry clock asks the connection to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryAction {
    /// Tell the client its token expired (`token_expired`); the grace period starts.
    Notify,
    /// The grace period passed without a fresh token: close with 1008.
    Close,
}

/// The expiry clock of one connection: at the token's expiry the client is told, and after
/// [`EXPIRY_GRACE`] without a fresh `auth` frame the connection is closed. Pure: the
/// connection loop sleeps until [`ExpiryClock::deadline`] and calls [`ExpiryClock::fire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpiryClock {
    /// Anonymous: nothing to do.
    #[default]
    Idle,
    /// Authenticated until the given epoch ms.
    Valid { until_ms: i64 },
    /// Told at expiry; closes at the given epoch ms.
    Grace { close_at_ms: i64 },
}

impl ExpiryClock {
    /// A (fresh) token was accepted.
    pub fn authenticated(&mut self, id: &Identity) {
        *self = ExpiryClock::Valid {
            until_ms: id.valid_until_ms,
        };
    }

    /// Epoch ms at which [`Self::fire`] should be called next, if ever.
    pub fn deadline(&self) -> Option<i64> {
        match *self {
            ExpiryClock::Idle => None,
            ExpiryClock::Valid { until_ms } => Some(until_ms),
            ExpiryClock::Grace { close_at_ms } => Some(close_at_ms),
        }
    }

    /// What to do at `now_ms`, advancing the clock.
    pub fn fire(&mut self, now_ms: i64) -> Option<ExpiryAction> {
        match *self {
            ExpiryClock::Valid { until_ms } if now_ms >= until_ms => {
                *self = ExpiryClock::Grace {
                    close_at_ms: until_ms + EXPIRY_GRACE.as_millis() as i64,
                };
                Some(ExpiryAction::Notify)
            }
            ExpiryClock::Grace { close_at_ms } if now_ms >= close_at_ms => {
                Some(ExpiryAction::Close)
            }
            _ => None,
        }
    }
}

/// The current time in epoch ms, as the expiry checks use it.
pub fn epoch_ms() -> i64 {
    now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &[u8] = b"test-secret";

    fn hs(claims: serde_json::Value, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn now_s() -> i64 {
        now_ms() / 1000
    }

    #[test]
    fn hs256_valid_token_gives_the_user() {
        let v = Verifier::hs256(SECRET, 0);
        let exp = now_s() + 60;
        let id = v
            .verify(&hs(serde_json::json!({"sub":"alice","exp":exp}), SECRET))
            .unwrap();
        assert_eq!(&*id.user_id, "alice");
        assert_eq!(id.valid_until_ms, exp * 1000);
    }

    #[test]
    fn refuses_bad_tokens_with_typed_errors() {
        let v = Verifier::hs256(SECRET, 0);
        let exp = now_s() + 60;
        assert_eq!(
            v.verify(&hs(serde_json::json!({"sub":"a","exp":exp}), b"other")),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            v.verify(&hs(
                serde_json::json!({"sub":"a","exp":now_s() - 1}),
                SECRET
            )),
            Err(AuthError::Expired)
        );
        assert_eq!(
            v.verify(&hs(serde_json::json!({"sub":"a"}), SECRET)),
            Err(AuthError::MissingClaim {
                claim: "exp".into()
            })
        );
        assert_eq!(
            v.verify(&hs(serde_json::json!({"exp":exp}), SECRET)),
            Err(AuthError::MissingClaim {
                claim: "sub".into()
            })
        );
        assert_eq!(
            v.verify(&hs(serde_json::json!({"sub":"","exp":exp}), SECRET)),
            Err(AuthError::BadClaim {
                claim: "sub".into()
            })
        );
        assert_eq!(v.verify("not.a.jwt"), Err(AuthError::Malformed));
        assert_eq!(v.verify("garbage"), Err(AuthError::Malformed));
        assert_eq!(v.verify(""), Err(AuthError::Missing));
        assert_eq!(
            v.verify(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(AuthError::TooLong)
        );
        // A tampered payload breaks the signature.
        let t = hs(serde_json::json!({"sub":"a","exp":exp}), SECRET);
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = base64_url(&serde_json::json!({"sub":"b","exp":exp}).to_string());
        parts[1] = &forged;
        assert_eq!(v.verify(&parts.join(".")), Err(AuthError::BadSignature));
        // alg=none is never accepted.
        let none = format!(
            "{}.{}.",
            base64_url(r#"{"alg":"none","typ":"JWT"}"#),
            base64_url(&serde_json::json!({"sub":"a","exp":exp}).to_string())
        );
        assert!(v.verify(&none).is_err());
        // An RS256 token when only HS256 is configured.
        let rs = format!(
            "{}.{}.c2ln",
            base64_url(r#"{"alg":"RS256","typ":"JWT"}"#),
            base64_url(&serde_json::json!({"sub":"a","exp":exp}).to_string())
        );
        assert!(matches!(v.verify(&rs), Err(AuthError::Algorithm { .. })));
    }

    fn base64_url(s: &str) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..=c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn leeway_extends_expiry() {
        let exp = now_s() - 5;
        let t = hs(serde_json::json!({"sub":"a","exp":exp}), SECRET);
        assert_eq!(
            Verifier::hs256(SECRET, 0).verify(&t),
            Err(AuthError::Expired)
        );
        let id = Verifier::hs256(SECRET, 30).verify(&t).unwrap();
        assert_eq!(id.valid_until_ms, (exp + 30) * 1000);
        // Millisecond precision at the boundary.
        let v = Verifier::hs256(SECRET, 0);
        let t = hs(serde_json::json!({"sub":"a","exp":now_s() + 100}), SECRET);
        let until = (now_s() + 100) * 1000;
        assert!(v.verify_at(&t, until - 1).is_ok());
        assert_eq!(v.verify_at(&t, until), Err(AuthError::Expired));
    }

    #[test]
    fn not_configured_refuses_everything() {
        let v = Verifier::disabled();
        assert!(!v.is_configured());
        let t = hs(serde_json::json!({"sub":"a","exp":now_s() + 60}), SECRET);
        assert_eq!(v.verify(&t), Err(AuthError::NotConfigured));
    }

    const RSA_PRIVATE: &str = include_str!("../tests/keys/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("../tests/keys/rsa_public.pem");
    const EC_PRIVATE: &str = include_str!("../tests/keys/ec_private.pem");
    const EC_PUBLIC: &str = include_str!("../tests/keys/ec_public.pem");

    fn key_file(name: &str, pem: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("ws-gateway-auth-{}-{name}.pem", std::process::id()));
        std::fs::write(&p, pem).unwrap();
        p
    }

    #[test]
    fn rs256_and_es256_from_a_public_key_file() {
        let exp = now_s() + 60;
        let claims = serde_json::json!({"sub":"bob","exp":exp});
        let args = |path: PathBuf| AuthArgs {
            jwt_public_key_file: Some(path),
            ..AuthArgs::default()
        };

        let rsa = Verifier::from_args(&args(key_file("rsa", RSA_PUBLIC))).unwrap();
        let t = encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(&*rsa.verify(&t).unwrap().user_id, "bob");
        // Same claims, HS256 "signed" with the public key text: refused (no HMAC key).
        let confused = hs(claims.clone(), RSA_PUBLIC.as_bytes());
        assert!(matches!(
            rsa.verify(&confused),
            Err(AuthError::Algorithm { .. })
        ));

        let ec = Verifier::from_args(&args(key_file("ec", EC_PUBLIC))).unwrap();
        let t = encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(&*ec.verify(&t).unwrap().user_id, "bob");
        // An ES256 token signed by another key pair: bad signature.
        assert!(rsa.verify(&t).is_err());

        assert!(matches!(
            Verifier::from_args(&args(key_file("junk", "not a key"))),
            Err(AuthConfigError::BadKey { .. })
        ));
        assert!(matches!(
            Verifier::from_args(&args(PathBuf::from("/nonexistent/key.pem"))),
            Err(AuthConfigError::ReadKey { .. })
        ));
    }

    #[test]
    fn config_validation() {
        let required = AuthArgs {
            auth_required: true,
            ..AuthArgs::default()
        };
        assert!(matches!(
            Verifier::from_args(&required),
            Err(AuthConfigError::RequiredWithoutKey)
        ));
        let empty = AuthArgs {
            jwt_secret: Some(Secret(String::new())),
            ..AuthArgs::default()
        };
        assert!(matches!(
            Verifier::from_args(&empty),
            Err(AuthConfigError::EmptySecret)
        ));
        let ok = AuthArgs {
            jwt_secret: Some(Secret("s".into())),
            auth_required: true,
            ..AuthArgs::default()
        };
        let v = Verifier::from_args(&ok).unwrap();
        assert!(v.is_configured() && v.is_required());
        assert!(!format!("{ok:?}").contains("\"s\""));
        assert!(format!("{ok:?}").contains("***"));
    }

    #[test]
    fn token_extraction() {
        assert_eq!(
            token_from_request(Some("Bearer abc.def.ghi"), Some("token=zzz")),
            Ok(Some("abc.def.ghi".into()))
        );
        assert_eq!(
            token_from_request(Some("bearer  x "), None),
            Ok(Some("x".into()))
        );
        assert_eq!(
            token_from_request(Some("Basic xyz"), None),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            token_from_request(Some("Bearer"), None),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            token_from_request(None, Some("a=1&token=t%2Ek&b")),
            Ok(Some("t.k".into()))
        );
        assert_eq!(token_from_request(None, Some("a=1")), Ok(None));
        assert_eq!(token_from_request(None, Some("token=")), Ok(None));
        assert_eq!(token_from_request(None, None), Ok(None));
        assert_eq!(query_param("?x=%zz%4", "x").as_deref(), Some("%zz%4"));
    }

    #[test]
    fn connection_identity() {
        let c = ConnIdentity::anonymous();
        assert!(!c.is("alice", 0));
        let id = Identity {
            user_id: "alice".into(),
            valid_until_ms: 1_000,
        };
        c.authenticate(&id).unwrap();
        assert!(c.is("alice", 999));
        assert!(!c.is("alice", 1_000));
        assert!(!c.is("bob", 10));
        assert!(!c.is("alic", 10));
        c.authenticate(&Identity {
            valid_until_ms: 5_000,
            ..id.clone()
        })
        .unwrap();
        assert!(c.is("alice", 4_999));
        assert_eq!(
            c.authenticate(&Identity {
                user_id: "bob".into(),
                valid_until_ms: 9_000
            }),
            Err(AuthError::UserMismatch)
        );
        assert!(!c.is("bob", 10));
        assert_eq!(c.user(), Some("alice"));
    }

    #[test]
    fn expiry_clock_notifies_then_closes() {
        let mut clock = ExpiryClock::default();
        assert_eq!(clock.deadline(), None);
        let id = Identity {
            user_id: "a".into(),
            valid_until_ms: 10_000,
        };
        clock.authenticated(&id);
        assert_eq!(clock.deadline(), Some(10_000));
        assert_eq!(clock.fire(9_999), None);
        assert_eq!(clock.fire(10_000), Some(ExpiryAction::Notify));
        assert_eq!(clock.deadline(), Some(15_000));
        assert_eq!(clock.fire(14_999), None);
        assert_eq!(clock.fire(15_000), Some(ExpiryAction::Close));
        // A fresh token during the grace period keeps the connection.
        let mut clock = ExpiryClock::default();
        clock.authenticated(&id);
        clock.fire(10_000);
        clock.authenticated(&Identity {
            valid_until_ms: 60_000,
            ..id
        });
        assert_eq!(clock.fire(15_000), None);
        assert_eq!(clock.deadline(), Some(60_000));
    }
}
