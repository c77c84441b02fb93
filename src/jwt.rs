//! Reading a JWT's `exp` claim without verifying the token: the gateway
//! passes Cognito's tokens through and only needs to know when they expire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The `exp` claim of a JWT, or `None` when the token is not a JWT or has no
/// numeric `exp`.
pub fn expiry(token: &str) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: f64,
    }
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    // Some encoders pad; the JWT spec says not to, so accept both.
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    if !claims.exp.is_finite() || claims.exp < 0.0 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs_f64(claims.exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS512"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn reads_exp() {
        let t = token(r#"{"sub":"x","exp":1700000900,"iat":1700000000}"#);
        assert_eq!(
            expiry(&t),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_900))
        );
    }

    #[test]
    fn not_a_jwt_or_no_exp_gives_none() {
        assert_eq!(expiry("ABCDEF"), None);
        assert_eq!(expiry("a.b"), None);
        assert_eq!(expiry("a.b.c.d"), None);
        assert_eq!(expiry(&token(r#"{"sub":"x"}"#)), None);
        assert_eq!(expiry(&token(r#"{"exp":"soon"}"#)), None);
        assert_eq!(expiry(&token(r#"{"exp":-1}"#)), None);
        assert_eq!(expiry("a.!!!.c"), None);
    }
}
