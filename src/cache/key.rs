//! Cache keys: a keyed 256-bit hash (BLAKE3 in keyed mode, a MAC, under a
//! key made at start) of every request field that changes the answer, in a
//! canonical encoding, hashed in one pass (this runs on every call, hits
//! included: one-shot BLAKE3 over a 170-byte request takes about 250 ns
//! here, HMAC-SHA256 about 360 ns).
//! Two requests that differ in any field get different keys; maps are
//! sorted, so entry order does not matter; and the key holds no secret: a
//! Logins value cannot be read back from it, nor guessed offline without the
//! process's own hashing key.

use std::fmt;

use crate::domain::{
    GetCredentialsForIdentityInput, GetIdInput, GetOpenIdTokenForDeveloperIdentityInput,
    GetOpenIdTokenInput, SecretMap,
};

/// A cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// A key of the given bytes, for tests.
    #[cfg(test)]
    pub(super) fn of_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A slot among `slots` for this key (its bytes are a hash already).
    pub(super) fn slot(&self, slots: usize) -> usize {
        usize::from(u16::from_le_bytes([self.0[0], self.0[1]])) % slots
    }
}

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
    key: [u8; blake3::KEY_LEN],
}

impl fmt::Debug for KeyMaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaker(<redacted>)")
    }
}

/// The canonical encoding: every field tagged and length-prefixed, so that
/// no two different requests encode the same. Lengths are LEB128 varints
/// (one byte below 128): BLAKE3 compresses 64-byte blocks, and with 8-byte
/// lengths a typical developer request took one block more.
struct Canonical<'k> {
    key: &'k [u8; blake3::KEY_LEN],
    encoded: Vec<u8>,
}

impl Canonical<'_> {
    /// A length, as protobuf writes its varints.
    fn varint(&mut self, n: usize) {
        prost::encoding::encode_varint(n as u64, &mut self.encoded);
    }

    fn bytes(&mut self, tag: u8, value: &[u8]) -> &mut Self {
        self.encoded.push(tag);
        self.varint(value.len());
        self.encoded.extend_from_slice(value);
        self
    }

    fn text(&mut self, tag: u8, value: &str) -> &mut Self {
        self.bytes(tag, value.as_bytes())
    }

    fn optional(&mut self, tag: u8, value: Option<impl AsRef<[u8]>>) -> &mut Self {
        match value {
            Some(v) => self.bytes(tag, v.as_ref()),
            None => self.bytes(tag ^ 0x80, &[]),
        }
    }

    fn map(&mut self, tag: u8, map: &SecretMap) -> &mut Self {
        self.encoded.push(tag);
        self.varint(map.len());
        for (name, value) in map.iter() {
            self.text(tag, name).text(tag, value.expose());
        }
        self
    }

    fn finish(&mut self) -> CacheKey {
        CacheKey(*blake3::keyed_hash(self.key, &self.encoded).as_bytes())
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
        use aws_lc_rs::rand::SecureRandom;
        let mut key = [0u8; blake3::KEY_LEN];
        // This fails only without an OS random source, in which case nothing
        // else (TLS, SigV4) works either; the keys then stay collision-free,
        // merely guessable.
        if aws_lc_rs::rand::SystemRandom::new().fill(&mut key).is_err() {
            key[..4].copy_from_slice(&std::process::id().to_be_bytes());
        }
        Self { key }
    }

    fn start(&self, op: Operation) -> Canonical<'_> {
        // Enough for a typical request, so that it is one allocation.
        let mut encoded = Vec::with_capacity(512);
        encoded.push(op as u8);
        Canonical {
            key: &self.key,
            encoded,
        }
    }

    /// Key of a GetId.
    pub fn get_id(&self, i: &GetIdInput) -> CacheKey {
        self.start(Operation::GetId)
            .text(1, i.identity_pool_id.as_str())
            .optional(2, i.account_id.as_ref().map(|a| a.as_str()))
            .map(3, i.logins.map())
            .finish()
    }

    /// Key of a GetOpenIdToken.
    pub fn get_open_id_token(&self, i: &GetOpenIdTokenInput) -> CacheKey {
        self.start(Operation::GetOpenIdToken)
            .text(1, i.identity_id.as_str())
            .map(2, i.logins.map())
            .finish()
    }

    /// Key of a GetOpenIdTokenForDeveloperIdentity.
    pub fn developer(&self, i: &GetOpenIdTokenForDeveloperIdentityInput) -> CacheKey {
        self.start(Operation::Developer)
            .text(1, i.identity_pool_id.as_str())
            .optional(2, i.identity_id.as_ref().map(|v| v.as_str()))
            .map(3, i.logins.map())
            .map(4, i.principal_tags.map())
            .optional(5, i.token_duration.map(|d| d.seconds().to_be_bytes()))
            .finish()
    }

    /// Key of a GetCredentialsForIdentity.
    pub fn credentials(&self, i: &GetCredentialsForIdentityInput) -> CacheKey {
        self.start(Operation::Credentials)
            .text(1, i.identity_id.as_str())
            .map(2, i.logins.map())
            .optional(3, i.custom_role_arn.as_ref().map(|r| r.as_str()))
            .finish()
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
                .collect::<Vec<_>>()
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
    fn lengths_are_leb128_varints() {
        let keys = KeyMaker::new();
        for (len, prefix) in [
            (0, &[0x00][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (50_000, &[0xd0, 0x86, 0x03]),
        ] {
            let mut c = keys.start(Operation::Developer);
            c.bytes(9, &vec![b'x'; len]);
            assert_eq!(&c.encoded[1..2], &[9], "the tag");
            assert_eq!(&c.encoded[2..2 + prefix.len()], prefix, "length {len}");
            assert_eq!(c.encoded.len(), 2 + prefix.len() + len);
        }
        // A long login value still counts to its last character.
        let long = "v".repeat(50_000);
        let mut other = long.clone();
        other.replace_range(49_999.., "w");
        let a = developer(POOL, None, &[("p", &long)], &[], None);
        let b = developer(POOL, None, &[("p", &other)], &[], None);
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
