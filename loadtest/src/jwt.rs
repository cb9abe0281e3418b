//! HS256 JSON Web Tokens for the gateway's authentication: one per client, `sub` = a user id.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `{"alg":"HS256","typ":"JWT"}`, the header every minted token carries.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Signs `claims` (a JSON object's text) with `secret`: `header.claims.signature`.
pub fn sign(claims: &str, secret: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(claims)
    );
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return signing_input,
    };
    mac.update(signing_input.as_bytes());
    let sig = mac.finalize().into_bytes();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// A token for `user` issued at `now_secs`, valid for `ttl_secs`.
pub fn mint(user: &str, secret: &[u8], now_secs: u64, ttl_secs: u64) -> String {
    let claims = serde_json::json!({
        "sub": user,
        "iat": now_secs,
        "exp": now_secs + ttl_secs,
    });
    sign(&claims.to_string(), secret)
}

/// The user id of client `i`.
pub fn user_of(client: usize) -> String {
    format!("loadtest-user-{client}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc_7519_style_reference_token() {
        // The widely published HS256 example token (header as above, secret
        // "your-256-bit-secret").
        let token = sign(
            r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#,
            b"your-256-bit-secret",
        );
        assert_eq!(
            token,
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
             eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
             SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
    }

    #[test]
    fn minted_tokens_carry_sub_and_exp_and_verify() {
        let t = mint(&user_of(7), b"s3cret", 1_700_000_000, 600);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "loadtest-user-7");
        assert_eq!(claims["exp"], 1_700_000_600u64);
        // Verifies with the same secret, not with another.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .unwrap();
        let mut other = Hmac::<Sha256>::new_from_slice(b"other").unwrap();
        other.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert!(other
            .verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .is_err());
    }
}
