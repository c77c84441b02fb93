//! A string that must never be shown: tokens, Logins values, principal tag
//! values, credentials.

use std::fmt;

/// A secret string. Its `Debug` prints `<redacted>` and it has no `Display`,
/// so formatting a value that holds one cannot leak it; reading it takes an
/// explicit [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send or return it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Unwraps the secret, for the one place that hands it over to a client.
    pub(crate) fn into_exposed(self) -> String {
        self.0
    }

    /// Length in bytes, which is not secret (the wire shows it anyway).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("eyJhbGciOi.super-secret");
        let shown = format!("{secret:?} {:?} {:#?}", Some(&secret), vec![secret.clone()]);
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_eq!(secret.expose(), "eyJhbGciOi.super-secret");
    }
}
