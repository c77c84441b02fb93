//! Cache keys: a keyed 256-bit hash (BLAKE3 in keyed mode, a MAC, under a
//! key made at start) of every request field that changes the answer, in a
//! canonical encoding, hashed in one pass (this runs on every call, hits
//! included, and one-shot BLAKE3 is the cheaper MAC of the two measured
//! here against HMAC-SHA256).
//! Two requests that differ in any field get different keys; maps are
//! sorted, so entry order does not matter; and the key holds no secret: a
//! Logins value cannot be read back from it, nor guessed offline without the
//! process's own hashing key.

use std::fmt;

use crate::domain::{KeyFields, Operation, OperationName, SecretMap};

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
pub(crate) struct KeyMaker {
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

    fn bytes(&mut self, tag: u8, value: &[u8]) {
        self.encoded.push(tag);
        self.varint(value.len());
        self.encoded.extend_from_slice(value);
    }

    fn finish(&mut self) -> CacheKey {
        CacheKey(*blake3::keyed_hash(self.key, &self.encoded).as_bytes())
    }
}

impl KeyFields for Canonical<'_> {
    fn text(&mut self, tag: u8, value: &str) {
        self.bytes(tag, value.as_bytes());
    }

    fn optional(&mut self, tag: u8, value: Option<&[u8]>) {
        match value {
            Some(v) => self.bytes(tag, v),
            None => self.bytes(tag ^ 0x80, &[]),
        }
    }

    fn map(&mut self, tag: u8, map: &SecretMap) {
        self.encoded.push(tag);
        self.varint(map.len());
        for (name, value) in map.iter() {
            self.text(tag, name);
            self.text(tag, value.expose());
        }
    }
}

impl KeyMaker {
    /// A key maker with a fresh random hashing key.
    pub(crate) fn new() -> Self {
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

    /// Starts the encoding of a key of `operation`: the same fields in two
    /// operations must not share an entry.
    fn start(&self, operation: OperationName) -> Canonical<'_> {
        // Enough for a typical request, so that it is one allocation.
        let mut encoded = Vec::with_capacity(512);
        encoded.push(operation as u8);
        Canonical {
            key: &self.key,
            encoded,
        }
    }

    /// The key of `input`: its operation and every field that changes its
    /// answer ([`Operation::key_fields`]).
    pub(crate) fn key<O: Operation>(&self, input: &O) -> CacheKey {
        let mut canonical = self.start(O::NAME);
        input.key_fields(&mut canonical);
        canonical.finish()
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
    use crate::domain::GetOpenIdTokenForDeveloperIdentityInput;

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
        assert_eq!(keys.key(&base), keys.key(&same_reordered));
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
            assert_ne!(keys.key(&base), keys.key(v), "{v:?}");
        }
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        let keys = KeyMaker::new();
        let a = developer(POOL, None, &[("ab", "c")], &[], None);
        let b = developer(POOL, None, &[("a", "bc")], &[], None);
        assert_ne!(keys.key(&a), keys.key(&b));
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
            let mut c = keys.start(OperationName::GetOpenIdTokenForDeveloperIdentity);
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
        assert_ne!(keys.key(&a), keys.key(&b));
    }

    #[test]
    fn keys_differ_between_processes_and_show_no_secret() {
        let input = developer(POOL, None, &[("dev", "secret-user")], &[], None);
        assert_ne!(KeyMaker::new().key(&input), KeyMaker::new().key(&input));
        let shown = format!("{:?}", KeyMaker::new().key(&input));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
