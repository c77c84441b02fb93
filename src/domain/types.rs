//! Validated domain values. Each can only hold what the service model
//! allows, so nothing below the edge re-checks.

use std::collections::BTreeMap;
use std::fmt;

use super::secret::Secret;
use super::validate::{self, LOGINS, PRINCIPAL_TAGS};

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks the value against the model; on failure says why.
            pub fn parse(value: impl Into<String>) -> Result<Self, String> {
                let value = value.into();
                $check(&value)?;
                Ok(Self(value))
            }

            /// The value.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

checked_string!(
    /// An identity pool id, REGION:GUID.
    IdentityPoolId,
    validate::check_id
);
checked_string!(
    /// An identity id, REGION:GUID.
    IdentityId,
    validate::check_id
);
checked_string!(
    /// An AWS account id, 1 to 15 digits.
    AccountId,
    validate::check_account_id
);
checked_string!(
    /// The ARN of a role, 20 to 2,048 characters.
    CustomRoleArn,
    validate::check_role_arn
);

/// A token lifetime, 1 to 86,400 seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenDuration(u32);

impl TokenDuration {
    /// Checks the value against the model.
    pub fn parse(seconds: i64) -> Result<Self, String> {
        validate::check_token_duration(seconds)?;
        // In range 1..=86,400, so it fits.
        Ok(Self(seconds as u32))
    }

    /// The lifetime in seconds.
    pub fn seconds(self) -> u32 {
        self.0
    }
}

/// A map from names to secret values, sorted by name, so that two maps with
/// the same entries are equal whatever order they arrived in.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretMap(BTreeMap<String, Secret>);

impl SecretMap {
    fn parse(
        bounds: &validate::MapBounds,
        entries: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Vec<String>> {
        // Sorted first and checked in place: one map built, no copy.
        let mut arrived = 0;
        let map: BTreeMap<String, Secret> = entries
            .into_iter()
            .inspect(|_| arrived += 1)
            .map(|(k, v)| (k, Secret::new(v)))
            .collect();
        validate::check_map(
            bounds,
            arrived,
            map.iter().map(|(k, v)| (k.as_str(), v.expose())),
        )?;
        Ok(Self(map))
    }

    /// Entries in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Secret)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The names, which are not secret.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The value for a name.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.0.get(name)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Entries with their values exposed, for the upstream request.
    pub fn exposed(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
    }
}

impl fmt::Debug for SecretMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

/// Logins: provider name to provider token (or developer user identifier).
/// At most 10 entries; the values are secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Logins(SecretMap);

impl Logins {
    /// Checks the map against the model; on failure lists every problem.
    pub fn parse(entries: impl IntoIterator<Item = (String, String)>) -> Result<Self, Vec<String>> {
        SecretMap::parse(&LOGINS, entries).map(Self)
    }

    /// The map.
    pub fn map(&self) -> &SecretMap {
        &self.0
    }
}

/// Principal tags: tag key to tag value; at most 50 entries. The values are
/// kept secret too: they can carry user attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrincipalTags(SecretMap);

impl PrincipalTags {
    /// Checks the map against the model; on failure lists every problem.
    pub fn parse(entries: impl IntoIterator<Item = (String, String)>) -> Result<Self, Vec<String>> {
        SecretMap::parse(&PRINCIPAL_TAGS, entries).map(Self)
    }

    /// The map.
    pub fn map(&self) -> &SecretMap {
        &self.0
    }
}
