//! Cache keys: a keyed 256-bit hash (HMAC-SHA256 under a key made at start)
//! of every request field that changes the answer, in a canonical encoding.
//! Two requests that differ in any field get different keys; maps are
//! sorted, so entry order does not matter; and the key holds no secret: a
//! Logins value cannot be read back from it, nor guessed offline without the
//! process's own hashing key.

use std::fmt;

use aws_lc_rs::hmac;

use crate::domain::{
    GetCredentialsForIdentityInput, GetIdInput, GetOpenIdTokenForDeveloperIdentityInput,
    GetOpenIdTokenInput, SecretMap,
};

/// A cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Makes keys.
pub struct KeyMaker {
    key: hmac::Key,
}

impl fmt::Debug for KeyMaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaker(<redacted>)")
    }
}

/// The canonical encoding: every field tagged and length-prefixed, so that
/// no two different requests encode the same.
#[derive(Default)]
struct Canonical(Vec<u8>);

impl Canonical {
    fn bytes(&mut self, tag: u8, value: &[u8]) -> &mut Self {
        self.0.push(tag);
        self.0
            .extend_from_slice(&(value.len() as u64).to_be_bytes());
        self.0.extend_from_slice(value);
        self
    }

    fn text(&mut self, tag: u8, value: &str) -> &mut Self {
        self.bytes(tag, value.as_bytes())
    }

    fn optional(&mut self, tag: u8, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.text(tag, v),
            None => self.bytes(tag ^ 0x80, &[]),
        }
    }

    fn map(&mut self, tag: u8, map: &SecretMap) -> &mut Self {
        self.bytes(tag, &(map.len() as u64).to_be_bytes());
        for (name, value) in map.iter() {
            self.text(tag, name).text(tag, value.expose());
        }
        self
    }
}

/// Which operation a key is for: the same fields in two operations must
/// not share an entry.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Operation {
    GetId = 1,
    GetOpenIdToken = 2,
    Developer = 3,
    Credentials = 4,
}

impl KeyMaker {
    /// A key maker with a fresh random hashing key.
    pub fn new() -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        // Generating an HMAC key fails only without an OS random source, in
        // which case nothing else (TLS, SigV4) works either.
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            hmac::Key::new(hmac::HMAC_SHA256, &std::process::id().to_be_bytes())
        });
        Self { key }
    }

    fn finish(&self, op: Operation, canonical: &Canonical) -> CacheKey {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&[op as u8]);
        ctx.update(&canonical.0);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        CacheKey(out)
    }

    /// Key of a GetId.
    pub fn get_id(&self, i: &GetIdInput) -> CacheKey {
        let mut c = Canonical::default();
        c.text(1, i.identity_pool_id.as_str())
            .optional(2, i.account_id.as_ref().map(|a| a.as_str()))
            .map(3, i.logins.map());
        self.finish(Operation::GetId, &c)
    }

    /// Key of a GetOpenIdToken.
    pub fn get_open_id_token(&self, i: &GetOpenIdTokenInput) -> CacheKey {
        let mut c = Canonical::default();
        c.text(1, i.identity_id.as_str()).map(2, i.logins.map());
        self.finish(Operation::GetOpenIdToken, &c)
    }

    /// Key of a GetOpenIdTokenForDeveloperIdentity.
    pub fn developer(&self, i: &GetOpenIdTokenForDeveloperIdentityInput) -> CacheKey {
        let mut c = Canonical::default();
        let duration = i.token_duration.map(|d| d.seconds().to_string());
        c.text(1, i.identity_pool_id.as_str())
            .optional(2, i.identity_id.as_ref().map(|v| v.as_str()))
            .map(3, i.logins.map())
            .map(4, i.principal_tags.map())
            .optional(5, duration.as_deref());
        self.finish(Operation::Developer, &c)
    }

    /// Key of a GetCredentialsForIdentity.
    pub fn credentials(&self, i: &GetCredentialsForIdentityInput) -> CacheKey {
        let mut c = Canonical::default();
        c.text(1, i.identity_id.as_str())
            .map(2, i.logins.map())
            .optional(3, i.custom_role_arn.as_ref().map(|r| r.as_str()));
        self.finish(Operation::Credentials, &c)
    }
}

impl Default for KeyMaker {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "us-east-1:11111111-2222-3333-4444-555555555555";
    const ID: &str = "us-east-1:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

    fn developer(
        pool: &str,
        identity: Option<&str>,
        logins: &[(&str, &str)],
        tags: &[(&str, &str)],
        duration: Option<i64>,
    ) -> GetOpenIdTokenForDeveloperIdentityInput {
        let pairs = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        GetOpenIdTokenForDeveloperIdentityInput::parse(
            Some(pool.into()),
            identity.map(Into::into),
            pairs(logins),
            pairs(tags),
            duration,
        )
        .unwrap()
    }

    #[test]
    fn every_field_changes_the_key_and_order_does_not() {
        let keys = KeyMaker::new();
        let base = developer(
            POOL,
            None,
            &[("dev", "u1"), ("g", "t")],
            &[("a", "1")],
            Some(900),
        );
        let same_reordered = developer(
            POOL,
            None,
            &[("g", "t"), ("dev", "u1")],
            &[("a", "1")],
            Some(900),
        );
        assert_eq!(keys.developer(&base), keys.developer(&same_reordered));
        let variants = [
            developer(
                "us-east-1:11111111-2222-3333-4444-555555555556",
                None,
                &[("dev", "u1"), ("g", "t")],
                &[("a", "1")],
                Some(900),
            ),
            developer(
                POOL,
                Some(ID),
                &[("dev", "u1"), ("g", "t")],
                &[("a", "1")],
                Some(900),
            ),
            developer(
                POOL,
                None,
                &[("dev", "u2"), ("g", "t")],
                &[("a", "1")],
                Some(900),
            ),
            developer(POOL, None, &[("dev", "u1")], &[("a", "1")], Some(900)),
            developer(
                POOL,
                None,
                &[("dev", "u1"), ("g", "t")],
                &[("a", "2")],
                Some(900),
            ),
            developer(POOL, None, &[("dev", "u1"), ("g", "t")], &[], Some(900)),
            developer(
                POOL,
                None,
                &[("dev", "u1"), ("g", "t")],
                &[("a", "1")],
                Some(901),
            ),
            developer(
                POOL,
                None,
                &[("dev", "u1"), ("g", "t")],
                &[("a", "1")],
                None,
            ),
        ];
        for v in &variants {
            assert_ne!(keys.developer(&base), keys.developer(v), "{v:?}");
        }
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        let keys = KeyMaker::new();
        let a = developer(POOL, None, &[("ab", "c")], &[], None);
        let b = developer(POOL, None, &[("a", "bc")], &[], None);
        assert_ne!(keys.developer(&a), keys.developer(&b));
    }

    #[test]
    fn keys_differ_between_processes_and_show_no_secret() {
        let input = developer(POOL, None, &[("dev", "secret-user")], &[], None);
        assert_ne!(
            KeyMaker::new().developer(&input),
            KeyMaker::new().developer(&input)
        );
        let shown = format!("{:?}", KeyMaker::new().developer(&input));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
