//! The emulator's OpenID tokens, as Cognito makes them: JWTs signed RS512
//! (header `typ: JWS` and a `kid`) by `jsonwebtoken` with a key made at
//! start or loaded from a PEM file, and the key set that verifies them.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use super::claims::{Claims, ISSUER};

/// Cognito signs its OpenID tokens RS512 (the `alg` of its tokens and of its
/// JWKS at `cognito-identity.amazonaws.com/.well-known/jwks_uri`).
const ALGORITHM: Algorithm = Algorithm::RS512;
/// The `typ` of Cognito's token headers.
const TOKEN_TYPE: &str = "JWS";

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs and verifies tokens.
pub(crate) struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public key as the JWKS lists it, `kid` included.
    jwk: Jwk,
    kid: String,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with a new 2048-bit key. jsonwebtoken makes no keys: aws-lc
    /// makes one and hands it over as PKCS#8 PEM, the form `--signing-key`
    /// files take.
    pub(crate) fn generate() -> Result<Self, String> {
        let key = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| "could not generate an RSA key".to_owned())?;
        let der = AsDer::<Pkcs8V1Der>::as_der(&key)
            .map_err(|_| "could not encode the RSA key".to_owned())?;
        Self::from_pem(&format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(der.as_ref())
        ))
    }

    /// A signer with the RSA key of a PEM file's text (`PRIVATE KEY`,
    /// PKCS#8, or `RSA PRIVATE KEY`, PKCS#1).
    pub(crate) fn from_pem(pem: &str) -> Result<Self, String> {
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
            format!("not an RSA private key in a PRIVATE KEY or RSA PRIVATE KEY block: {e}")
        })?;
        // Reading the public half checks the key itself, so that a bad key
        // is refused at start rather than at the first token.
        let mut jwk = Jwk::from_encoding_key(&encoding, ALGORITHM)
            .map_err(|e| format!("not a usable RSA key: {e}"))?;
        // The RFC 7638 thumbprint: the same key always gets the same kid.
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| format!("key thumbprint: {e}"))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| format!("public key: {e}"))?;
        Ok(Self {
            encoding,
            decoding,
            jwk,
            kid,
        })
    }

    /// A signed JWT carrying `claims`.
    pub(crate) fn mint(&self, claims: &Claims) -> Result<String, String> {
        let mut header = Header::new(ALGORITHM);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| format!("signing failed: {e}"))
    }

    /// The claims of a token this signer signed, unexpired, issued by
    /// Cognito for identity `sub` of pool `aud`; otherwise why not (never
    /// echoing the token).
    pub(crate) fn verify(&self, token: &str, sub: &str, aud: &str) -> Result<Claims, &'static str> {
        let mut validation = Validation::new(ALGORITHM);
        // Cognito's own expiry, to the second: a token is refused from its exp.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[aud]);
        validation.sub = Some(sub.to_owned());
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => "token expired",
                ErrorKind::InvalidSignature => "signature does not verify",
                ErrorKind::InvalidAlgorithm => "unsupported signing algorithm",
                ErrorKind::InvalidSubject | ErrorKind::InvalidAudience => {
                    "The token is not for this identity"
                }
                ErrorKind::InvalidIssuer => "the token is not Cognito's",
                _ => "malformed token",
            })
    }

    /// The JSON Web Key Set of the signing key.
    pub(crate) fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const SUB: &str = "us-east-1:abc";
    const AUD: &str = "us-east-1:def";

    fn claims(exp: u64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: SUB.into(),
            aud: AUD.into(),
            amr: vec!["authenticated".into()],
            iat: 100,
            exp,
            identity_pool_arn: format!("arn:aws:cognito-identity:us-east-1:0:identitypool/{AUD}"),
            tags: None,
        }
    }

    fn now() -> u64 {
        unix_now()
    }

    #[test]
    fn tokens_are_rs512_jws_with_the_kid_of_the_jwks() {
        let signer = Signer::generate().unwrap();
        let token = signer.mint(&claims(now() + 600)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::RS512);
        assert_eq!(header.typ.as_deref(), Some("JWS"));
        let jwks = signer.jwks();
        let key = &jwks["keys"][0];
        assert_eq!(header.kid.as_deref(), key["kid"].as_str());
        assert_eq!(
            (&key["alg"], &key["kty"], &key["use"], &key["e"]),
            (
                &json!("RS512"),
                &json!("RSA"),
                &json!("sig"),
                &json!("AQAB")
            )
        );
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(key["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256
        );
    }

    #[test]
    fn mint_then_verify_and_read_exp() {
        let signer = Signer::generate().unwrap();
        let exp = now() + 600;
        let token = signer.mint(&claims(exp)).unwrap();
        assert_eq!(signer.verify(&token, SUB, AUD).unwrap(), claims(exp));
        // The gateway's own reader agrees on the expiry.
        let read = crate::jwt::expiry(&token).unwrap();
        assert_eq!(read, UNIX_EPOCH + std::time::Duration::from_secs(exp));
    }

    #[test]
    fn expired_forged_foreign_and_misdirected_tokens_are_refused() {
        let signer = Signer::generate().unwrap();
        let expired = signer.mint(&claims(now() - 1)).unwrap();
        assert_eq!(signer.verify(&expired, SUB, AUD), Err("token expired"));
        let valid = claims(now() + 600);
        let other = Signer::generate().unwrap().mint(&valid).unwrap();
        assert_eq!(
            signer.verify(&other, SUB, AUD),
            Err("signature does not verify")
        );
        let token = signer.mint(&valid).unwrap();
        let (head, rest) = token.split_once('.').unwrap();
        let sig = rest.split_once('.').unwrap().1;
        let mut longer = valid.clone();
        longer.exp += 86_400;
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&longer).unwrap());
        let forged = format!("{head}.{forged_payload}.{sig}");
        assert_eq!(
            signer.verify(&forged, SUB, AUD),
            Err("signature does not verify")
        );
        let not_for_this = Err("The token is not for this identity");
        assert_eq!(signer.verify(&token, "us-east-1:other", AUD), not_for_this);
        assert_eq!(signer.verify(&token, SUB, "us-east-1:other"), not_for_this);
        assert!(signer.verify("garbage", SUB, AUD).is_err());
    }

    #[test]
    fn keys_load_from_pem() {
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = AsDer::<Pkcs8V1Der>::as_der(&key).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(der.as_ref())
        );
        let signer = Signer::from_pem(&pem).unwrap();
        let again = Signer::from_pem(&pem).unwrap();
        assert_eq!(signer.kid, again.kid, "the kid is the key's");
        let token = signer.mint(&claims(now() + 600)).unwrap();
        assert!(again.verify(&token, SUB, AUD).is_ok());
        assert!(Signer::from_pem("nothing here").is_err());
    }
}
