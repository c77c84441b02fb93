//! The user of a line: which Logins value is the user's identifier, and
//! its keyed hash, which is all the log holds of it.

use aws_lc_rs::hmac;

use super::line::hex;
use crate::domain::Scope;

/// The Logins keys of Cognito's and the public providers' tokens: every
/// other key of a developer call's Logins is its developer provider (a
/// developer Logins map holds one), whose value is the user's identifier.
const PUBLIC_PROVIDERS: [&str; 7] = [
    "cognito-identity.amazonaws.com",
    "graph.facebook.com",
    "accounts.google.com",
    "www.amazon.com",
    "api.twitter.com",
    "www.digits.com",
    "appleid.apple.com",
];

/// The key of the `user` hash. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub(crate) struct HmacKey(hmac::Key);

impl HmacKey {
    /// A key of these bytes.
    pub(crate) fn new(bytes: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    fn hash(&self, value: &str) -> String {
        hex(hmac::sign(&self.0, value.as_bytes()).as_ref())
    }
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

/// The developer provider's user identifier in a developer call's Logins:
/// the value of its one key that is not a public provider, a user pool
/// (`cognito-idp…/pool`) or a SAML provider (an ARN). An OpenID Connect
/// provider's key looks like a developer provider's name: with two such
/// keys, which is the user is not known, and none is hashed.
pub(super) fn developer_user<'a>(scope: &Scope<'a>) -> Option<&'a str> {
    if !scope.operation.mints_for_any_user() {
        return None;
    }
    let mut candidates = scope.logins.iter().filter(|(name, _)| {
        !PUBLIC_PROVIDERS.contains(name) && !name.contains('/') && !name.starts_with("arn:")
    });
    match (candidates.next(), candidates.next()) {
        (Some((_, user)), None) => Some(user.expose()),
        _ => None,
    }
}

/// Users' hashes, forgotten all at once past [`UserHashes::MAX`].
#[derive(Default)]
pub(super) struct UserHashes(foldhash::HashMap<Box<str>, Box<str>>);

impl UserHashes {
    const MAX: usize = 4096;

    /// Appends `user`'s hash to `out`.
    pub(super) fn hash_into(&mut self, key: &HmacKey, user: &str, out: &mut String) {
        if let Some(hash) = self.0.get(user) {
            return out.push_str(hash);
        }
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        let hash = key.hash(user);
        out.push_str(&hash);
        self.0.insert(user.into(), hash.into_boxed_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::developer;
    use crate::domain::Operation;

    #[test]
    fn the_user_is_the_developer_providers_value() {
        let input = developer(&[
            ("accounts.google.com", "google-token"),
            (
                "cognito-idp.us-east-1.amazonaws.com/us-east-1_abc",
                "idp-token",
            ),
            ("arn:aws:iam::123456789012:saml-provider/corp", "saml"),
            ("login.shop.example", "user-42"),
        ]);
        assert_eq!(developer_user(&Operation::scope(&input)), Some("user-42"));
        let only_public = developer(&[("graph.facebook.com", "fb-token")]);
        assert_eq!(developer_user(&Operation::scope(&only_public)), None);
        // An OpenID Connect provider beside the developer provider: which
        // is the user is not known.
        let two = developer(&[
            ("accounts.example.com", "oidc-token"),
            ("login.shop.example", "u"),
        ]);
        assert_eq!(developer_user(&Operation::scope(&two)), None);
    }

    #[test]
    fn the_same_user_gives_the_same_hash_under_the_same_key() {
        let key = HmacKey::new(b"0123456789abcdef");
        assert_eq!(key.hash("user-42"), key.hash("user-42"));
        assert_ne!(key.hash("user-42"), key.hash("user-43"));
        assert_ne!(
            key.hash("user-42"),
            HmacKey::new(b"another key, another hash").hash("user-42")
        );
        assert_eq!(key.hash("user-42").len(), 64);
    }
}
