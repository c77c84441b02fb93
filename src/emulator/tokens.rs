//! The emulator's OpenID tokens: JWTs signed RS256 with a key made at start
//! or loaded from a PEM file, and the key set that verifies them.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The issuer Cognito puts in its tokens; the emulator's say the same, so
/// that client code checking `iss` runs unchanged against it.
pub const ISSUER: &str = "https://cognito-identity.amazonaws.com";

/// The claims of a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// The identity id.
    pub sub: String,
    /// The identity pool id.
    pub aud: String,
    /// `authenticated` and the providers, or `unauthenticated`.
    pub amr: Vec<String>,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
}

/// Signs and verifies tokens.
pub struct Signer {
    key: KeyPair,
    kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Signer {
    /// A signer with a new 2048-bit key.
    pub fn generate() -> Result<Self, String> {
        let key = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| "could not generate an RSA key".to_owned())?;
        Ok(Self::with_key(key))
    }

    /// A signer with the RSA key of a PEM file's text (`PRIVATE KEY`,
    /// PKCS#8, or `RSA PRIVATE KEY`, PKCS#1).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let block = |label: &str| {
            let begin = format!("-----BEGIN {label}-----");
            let end = format!("-----END {label}-----");
            let start = pem.find(&begin)? + begin.len();
            let stop = pem[start..].find(&end)? + start;
            let b64: String = pem[start..stop].split_whitespace().collect();
            STANDARD.decode(b64).ok()
        };
        let key = if let Some(der) = block("PRIVATE KEY") {
            KeyPair::from_pkcs8(&der).map_err(|e| format!("not an RSA PKCS#8 key: {e}"))?
        } else if let Some(der) = block("RSA PRIVATE KEY") {
            KeyPair::from_der(&der).map_err(|e| format!("not an RSA key: {e}"))?
        } else {
            return Err("no PRIVATE KEY or RSA PRIVATE KEY block found".to_owned());
        };
        Ok(Self::with_key(key))
    }

    fn with_key(key: KeyPair) -> Self {
        use aws_lc_rs::signature::KeyPair as _;
        let public = key.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &n);
        let kid = hex::encode(&digest.as_ref()[..8]);
        Self { key, kid, n, e }
    }

    /// A signed JWT carrying `claims`.
    pub fn mint(&self, claims: &Claims) -> Result<String, String> {
        let header = json!({ "alg": "RS256", "typ": "JWT", "kid": self.kid });
        let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let mut token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                token.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "signing failed".to_owned())?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(token)
    }

    /// The claims of a token this signer signed and that has not expired at
    /// `now`; otherwise why not (never echoing the token).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, &'static str> {
        let (signed, sig) = token.rsplit_once('.').ok_or("not a JWT")?;
        let (header, payload) = signed.split_once('.').ok_or("not a JWT")?;
        let header: Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or("malformed JWT header")?;
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err("unsupported signing algorithm");
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| "malformed signature")?;
        RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &sig,
        )
        .map_err(|_| "signature does not verify")?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or("malformed claims")?;
        if claims.exp <= now {
            return Err("token expired");
        }
        Ok(claims)
    }

    /// The JSON Web Key Set of the signing key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [{
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.n),
            "e": URL_SAFE_NO_PAD.encode(&self.e),
        }]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: "us-east-1:abc".into(),
            aud: "us-east-1:def".into(),
            amr: vec!["authenticated".into()],
            iat: 100,
            exp,
        }
    }

    #[test]
    fn mint_then_verify_and_read_exp() {
        let signer = Signer::generate().unwrap();
        let token = signer.mint(&claims(2_000_000_000)).unwrap();
        assert_eq!(signer.verify(&token, 1_000).unwrap(), claims(2_000_000_000));
        // The gateway's own reader agrees on the expiry.
        let exp = crate::jwt::expiry(&token).unwrap();
        assert_eq!(
            exp,
            UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000)
        );
    }

    #[test]
    fn expired_forged_and_foreign_tokens_are_refused() {
        let signer = Signer::generate().unwrap();
        let token = signer.mint(&claims(500)).unwrap();
        assert_eq!(signer.verify(&token, 500), Err("token expired"));
        let other = Signer::generate()
            .unwrap()
            .mint(&claims(2_000_000_000))
            .unwrap();
        assert_eq!(signer.verify(&other, 1), Err("signature does not verify"));
        let (head, _) = token.split_once('.').unwrap();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(9_999_999_999)).unwrap());
        let sig = token.rsplit_once('.').unwrap().1;
        let forged = format!("{head}.{forged_payload}.{sig}");
        assert_eq!(signer.verify(&forged, 1), Err("signature does not verify"));
        assert!(signer.verify("garbage", 1).is_err());
    }

    #[test]
    fn keys_load_from_pem() {
        use aws_lc_rs::encoding::AsDer;
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(der.as_ref())
        );
        let signer = Signer::from_pem(&pem).unwrap();
        let token = signer.mint(&claims(2_000_000_000)).unwrap();
        assert!(signer.verify(&token, 1).is_ok());
        assert!(Signer::from_pem("nothing here").is_err());
    }
}
