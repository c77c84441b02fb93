//! Validated domain values. Each can only hold what the service model
//! allows, so nothing below the edge re-checks.

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
/// the same entries are equal whatever order they arrived in. A sorted list
/// rather than a `BTreeMap`: maps here hold a few entries, and every call
/// builds one or two (a tree costs a node allocation and a bulk build).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretMap(Vec<(String, Secret)>);

impl SecretMap {
    fn parse(
        bounds: &validate::MapBounds,
        entries: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Vec<String>> {
        let mut entries: Vec<(String, Secret)> = entries
            .into_iter()
            .map(|(k, v)| (k, Secret::new(v)))
            .collect();
        let arrived = entries.len();
        // Stable, so that of a name given twice the later value stays, as
        // in a map built from the same pairs.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            same
        });
        validate::check_map(
            bounds,
            arrived,
            entries.iter().map(|(k, v)| (k.as_str(), v.expose())),
        )?;
        Ok(Self(entries))
    }

    /// Entries in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Secret)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The names, which are not secret.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    /// The value for a name.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
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
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
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

    /// Its entries, the values kept secret.
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

    /// Its entries, the values kept secret.
    pub fn map(&self) -> &SecretMap {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn maps_are_sorted_by_name_whatever_the_order_they_came_in() {
        let a = Logins::parse(pairs(&[("b", "2"), ("a", "1"), ("c", "3")])).unwrap();
        let b = Logins::parse(pairs(&[("c", "3"), ("b", "2"), ("a", "1")])).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.map().names().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(a.map().get("b").unwrap().expose(), "2");
        assert_eq!(a.map().get("d"), None);
        assert_eq!(a.map().len(), 3);
    }

    #[test]
    fn a_name_given_twice_keeps_its_later_value_and_counts_twice() {
        let m = Logins::parse(pairs(&[("a", "first"), ("b", "x"), ("a", "second")])).unwrap();
        assert_eq!(m.map().len(), 2);
        assert_eq!(m.map().get("a").unwrap().expose(), "second");
        // Eleven pairs are too many, even if only ten names are distinct.
        let mut eleven: Vec<(String, String)> =
            (0..10).map(|i| (format!("p{i}"), "v".into())).collect();
        eleven.push(("p0".into(), "again".into()));
        let problems = Logins::parse(eleven).unwrap_err();
        assert!(problems[0].contains("at most 10"), "{problems:?}");
    }

    #[test]
    fn debug_shows_names_but_never_values() {
        let m = PrincipalTags::parse(pairs(&[("team", "s3cr3t-value")])).unwrap();
        let shown = format!("{m:?}");
        assert!(shown.contains("team"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
