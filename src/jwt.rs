//! Reading a JWT's claims without verifying the token: the gateway passes
//! Cognito's tokens through and only needs to know when they expire (`exp`)
//! and, for a caller policy, which pool they were made for (`aud`; Cognito
//! verifies the token itself).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The payload of a JWT, decoded into `T`; `None` when the token is not a
/// JWT or its payload does not hold a `T`.
fn claims<T: serde::de::DeserializeOwned>(token: &str) -> Option<T> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    // Some encoders pad; the JWT spec says not to, so accept both.
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `aud` claim of a JWT when it names one audience (a string, or a list
/// of one), or `None`.
pub fn audience(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Audience {
        One(String),
        Many(Vec<String>),
    }
    #[derive(serde::Deserialize)]
    struct Claims {
        aud: Audience,
    }
    match claims::<Claims>(token)?.aud {
        Audience::One(aud) => Some(aud),
        Audience::Many(mut auds) if auds.len() == 1 => auds.pop(),
        Audience::Many(_) => None,
    }
}

/// The `exp` claim of a JWT, or `None` when the token is not a JWT or has no
/// numeric `exp`.
pub fn expiry(token: &str) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: f64,
    }
    let exp = claims::<Claims>(token)?.exp;
    if !exp.is_finite() || exp < 0.0 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs_f64(exp))
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
    fn reads_a_single_audience() {
        assert_eq!(
            audience(&token(r#"{"aud":"us-east-1:pool"}"#)).as_deref(),
            Some("us-east-1:pool")
        );
        assert_eq!(
            audience(&token(r#"{"aud":["us-east-1:pool"]}"#)).as_deref(),
            Some("us-east-1:pool")
        );
        assert_eq!(audience(&token(r#"{"aud":["a","b"]}"#)), None);
        assert_eq!(audience(&token(r#"{"sub":"x"}"#)), None);
        assert_eq!(audience("not-a-jwt"), None);
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
