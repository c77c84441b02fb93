//! The constraints of the Cognito Identity service model (cognito-identity
//! 2014-06-30, as published in botocore and the Smithy models the AWS SDKs are
//! generated from), in one place. The AWS SDKs enforce none of them; the
//! gateway checks them at its edge and the emulator checks them on the wire,
//! both through the constructors in `types`, which call these functions.
//!
//! A failed check is a [`Violation`] naming the field and saying what is
//! wrong, never showing a secret value.

use std::fmt;

/// Identity and pool ids: length 1..=55 (model shapes `IdentityId`, `IdentityPoolId`).
pub(crate) const ID_MAX_CHARS: usize = 55;
/// Logins map: at most 10 entries (model shape `LoginsMap`).
pub(crate) const LOGINS_MAX_ENTRIES: usize = 10;
/// Logins key, a provider name: length 1..=128 (model shape `IdentityProviderName`).
pub(crate) const PROVIDER_NAME_MAX_CHARS: usize = 128;
/// Logins value, a provider token or user identifier: length 1..=50,000
/// (model shape `IdentityProviderToken`).
pub(crate) const PROVIDER_TOKEN_MAX_CHARS: usize = 50_000;
/// PrincipalTags map: at most 50 entries (model shape `PrincipalTags`).
pub(crate) const PRINCIPAL_TAGS_MAX_ENTRIES: usize = 50;
/// Principal tag key: length 1..=128 (model shape `PrincipalTagID`).
pub(crate) const TAG_KEY_MAX_CHARS: usize = 128;
/// Principal tag value: length 1..=256 (model shape `PrincipalTagValue`).
pub(crate) const TAG_VALUE_MAX_CHARS: usize = 256;
/// TokenDuration: 1..=86,400 seconds, 24 hours (model shape `TokenDuration`).
pub(crate) const TOKEN_DURATION_MAX_SECONDS: i64 = 86_400;
/// CustomRoleArn: length 20..=2,048 (model shape `ARNString`).
pub(crate) const ROLE_ARN_MIN_CHARS: usize = 20;
/// CustomRoleArn: length 20..=2,048 (model shape `ARNString`).
pub(crate) const ROLE_ARN_MAX_CHARS: usize = 2_048;
/// AccountId: 1..=15 digits (model shape `AccountId`).
pub(crate) const ACCOUNT_ID_MAX_CHARS: usize = 15;

/// Protobuf bytes of a string field of `chars` ASCII characters: its tag
/// (one byte for the fields of `proto/`) and its length (a varint).
const fn string_field(chars: usize) -> usize {
    let length = if chars < 1 << 7 {
        1
    } else if chars < 1 << 14 {
        2
    } else {
        3
    };
    1 + length + chars
}

/// Protobuf bytes of a map of `entries` entries of keys and values of the
/// given lengths: each entry a message field holding two string fields.
const fn map_field(entries: usize, key: usize, value: usize) -> usize {
    entries * string_field(string_field(key) + string_field(value))
}

/// The largest valid request of any operation, in protobuf bytes, with its
/// strings in ASCII (ids, tokens and ARNs are): the developer operation's,
/// with every field at its longest (about 0.52 MB).
pub const LARGEST_REQUEST_BYTES: usize = string_field(ID_MAX_CHARS) * 2
    + map_field(
        LOGINS_MAX_ENTRIES,
        PROVIDER_NAME_MAX_CHARS,
        PROVIDER_TOKEN_MAX_CHARS,
    )
    + map_field(
        PRINCIPAL_TAGS_MAX_ENTRIES,
        TAG_KEY_MAX_CHARS,
        TAG_VALUE_MAX_CHARS,
    )
    + 11;

/// A request field, named both as the gRPC API and as the AWS API name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    /// `IdentityPoolId`
    IdentityPoolId,
    /// `IdentityId`
    IdentityId,
    /// `AccountId`
    AccountId,
    /// `Logins`
    Logins,
    /// `PrincipalTags`
    PrincipalTags,
    /// `TokenDuration`
    TokenDuration,
    /// `CustomRoleArn`
    CustomRoleArn,
}

impl Field {
    /// The field's name in the gRPC API (`proto/`).
    pub(crate) fn proto_name(self) -> &'static str {
        match self {
            Field::IdentityPoolId => "identity_pool_id",
            Field::IdentityId => "identity_id",
            Field::AccountId => "account_id",
            Field::Logins => "logins",
            Field::PrincipalTags => "principal_tags",
            Field::TokenDuration => "token_duration_seconds",
            Field::CustomRoleArn => "custom_role_arn",
        }
    }

    /// The member's name in the AWS API (the emulator's messages).
    #[cfg(any(test, feature = "emulator"))]
    pub(crate) fn aws_name(self) -> &'static str {
        match self {
            Field::IdentityPoolId => "IdentityPoolId",
            Field::IdentityId => "IdentityId",
            Field::AccountId => "AccountId",
            Field::Logins => "Logins",
            Field::PrincipalTags => "PrincipalTags",
            Field::TokenDuration => "TokenDuration",
            Field::CustomRoleArn => "CustomRoleArn",
        }
    }
}

/// One broken constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    /// The field that broke it.
    pub field: Field,
    /// What is wrong, without the value when the value is secret.
    pub(crate) description: String,
}

/// Every constraint a request broke. Never empty when returned as an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations(Vec<Violation>);

impl Violations {
    /// The violations, in field order of the request.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Violation> {
        self.0.iter()
    }

    /// Whether nothing was broken.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn push(&mut self, field: Field, description: String) {
        self.0.push(Violation { field, description });
    }

    /// Checks a required value: `None` (absent, or empty on the gRPC side)
    /// is a violation. Returns the parsed value when it is valid.
    pub(crate) fn required<T>(
        &mut self,
        field: Field,
        value: Option<String>,
        parse: impl FnOnce(String) -> Result<T, String>,
    ) -> Option<T> {
        match value {
            None => {
                self.push(field, "is required".to_owned());
                None
            }
            Some(value) => self.single(field, parse(value)),
        }
    }

    /// Checks an optional value. `Some(None)` when absent, `None` when invalid.
    pub(crate) fn optional<V, T>(
        &mut self,
        field: Field,
        value: Option<V>,
        parse: impl FnOnce(V) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match value {
            None => Some(None),
            Some(value) => self.single(field, parse(value)).map(Some),
        }
    }

    /// Records the outcome of a check that may break several constraints.
    pub(crate) fn many<T>(&mut self, field: Field, outcome: Result<T, Vec<String>>) -> Option<T> {
        match outcome {
            Ok(value) => Some(value),
            Err(descriptions) => {
                for description in descriptions {
                    self.push(field, description);
                }
                None
            }
        }
    }

    fn single<T>(&mut self, field: Field, outcome: Result<T, String>) -> Option<T> {
        self.many(field, outcome.map_err(|description| vec![description]))
    }
}

impl fmt::Display for Violations {
    /// Renders with the gRPC field names: `identity_id: is required; ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field.proto_name(), v.description)?;
        }
        Ok(())
    }
}

/// Length in characters, as the model's length constraints count.
pub(crate) fn chars(value: &str) -> usize {
    // Nearly every value is ASCII, where characters are bytes.
    if value.is_ascii() {
        value.len()
    } else {
        value.chars().count()
    }
}

/// [`ID_CLASSES`] bit: may appear in an id's region (`[\w-]`).
const REGION: u8 = 1;
/// [`ID_CLASSES`] bit: may appear in an id's GUID (`[0-9a-f-]`).
const GUID: u8 = 2;

/// Which parts of an id each byte may appear in: one lookup per byte, as
/// every call checks one or two ids.
static ID_CLASSES: [u8; 256] = {
    let mut classes = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' {
            classes[b] |= REGION;
        }
        if c.is_ascii_digit() || (c >= b'a' && c <= b'f') || c == b'-' {
            classes[b] |= GUID;
        }
        b += 1;
    }
    classes
};

/// `^[\w-]+:[0-9a-f-]+$` with length 1..=55: REGION:GUID. `\w` is ASCII
/// letters, digits and underscore, as in the Java regexes Cognito uses.
pub(crate) fn check_id(value: &str) -> Result<(), String> {
    let len = chars(value);
    if !(1..=ID_MAX_CHARS).contains(&len) {
        return Err(format!("must be 1 to {ID_MAX_CHARS} characters, got {len}"));
    }
    let well_formed = value.split_once(':').is_some_and(|(region, guid)| {
        !region.is_empty()
            && region
                .bytes()
                .all(|b| ID_CLASSES[usize::from(b)] & REGION != 0)
            && !guid.is_empty()
            && guid.bytes().all(|b| ID_CLASSES[usize::from(b)] & GUID != 0)
    });
    if well_formed {
        Ok(())
    } else {
        Err("must have the form REGION:GUID (pattern [\\w-]+:[0-9a-f-]+)".to_owned())
    }
}

/// `^\d+$` with length 1..=15.
pub(crate) fn check_account_id(value: &str) -> Result<(), String> {
    let len = chars(value);
    if !(1..=ACCOUNT_ID_MAX_CHARS).contains(&len) {
        return Err(format!(
            "must be 1 to {ACCOUNT_ID_MAX_CHARS} digits, got {len} characters"
        ));
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err("must contain only digits".to_owned())
    }
}

/// Length 20..=2,048.
pub(crate) fn check_role_arn(value: &str) -> Result<(), String> {
    let len = chars(value);
    if (ROLE_ARN_MIN_CHARS..=ROLE_ARN_MAX_CHARS).contains(&len) {
        Ok(())
    } else {
        Err(format!(
            "must be {ROLE_ARN_MIN_CHARS} to {ROLE_ARN_MAX_CHARS} characters, got {len}"
        ))
    }
}

/// 1..=86,400.
pub(crate) fn check_token_duration(seconds: i64) -> Result<(), String> {
    if (1..=TOKEN_DURATION_MAX_SECONDS).contains(&seconds) {
        Ok(())
    } else {
        Err(format!(
            "must be 1 to {TOKEN_DURATION_MAX_SECONDS} seconds, got {seconds}"
        ))
    }
}

/// Bounds of a string-to-string map of the model.
pub(crate) struct MapBounds {
    pub(crate) max_entries: usize,
    pub(crate) key_max_chars: usize,
    pub(crate) value_max_chars: usize,
    /// Which name the map gives its keys in messages ("provider", "tag").
    pub(crate) key_noun: &'static str,
}

/// Logins: ≤10 entries, keys 1..=128, values 1..=50,000.
pub(crate) const LOGINS: MapBounds = MapBounds {
    max_entries: LOGINS_MAX_ENTRIES,
    key_max_chars: PROVIDER_NAME_MAX_CHARS,
    value_max_chars: PROVIDER_TOKEN_MAX_CHARS,
    key_noun: "provider",
};

/// PrincipalTags: ≤50 entries, keys 1..=128, values 1..=256.
pub(crate) const PRINCIPAL_TAGS: MapBounds = MapBounds {
    max_entries: PRINCIPAL_TAGS_MAX_ENTRIES,
    key_max_chars: TAG_KEY_MAX_CHARS,
    value_max_chars: TAG_VALUE_MAX_CHARS,
    key_noun: "tag",
};

/// Checks a map's size and every key and value; the values are secret and
/// only their length is ever described. Returns every problem found.
/// `arrived` is how many entries the request carried (a repeated name
/// counts each time it came).
pub(crate) fn check_map<'a>(
    bounds: &MapBounds,
    arrived: usize,
    entries: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if arrived > bounds.max_entries {
        problems.push(format!(
            "must have at most {} entries, got {arrived}",
            bounds.max_entries,
        ));
    }
    for (key, value) in entries {
        let key_len = chars(key);
        if !(1..=bounds.key_max_chars).contains(&key_len) {
            problems.push(format!(
                "{} name {} must be 1 to {} characters, got {key_len}",
                bounds.key_noun,
                shown_key(key),
                bounds.key_max_chars
            ));
        }
        let value_len = chars(value);
        if !(1..=bounds.value_max_chars).contains(&value_len) {
            problems.push(format!(
                "value for {} {} must be 1 to {} characters, got {value_len}",
                bounds.key_noun,
                shown_key(key),
                bounds.value_max_chars
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A map key as quoted in a message: keys are provider names and tag keys,
/// not secrets, but a too-long one is cut so that messages stay short.
fn shown_key(key: &str) -> String {
    const SHOWN: usize = 40;
    if chars(key) <= SHOWN {
        format!("{key:?}")
    } else {
        let head: String = key.chars().take(SHOWN).collect();
        format!("{head:?}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_at_and_past_their_bounds() {
        assert!(check_id("us-east-1:0123abcd-0000-4000-8000-000000000000").is_ok());
        assert!(check_id("a:0").is_ok());
        assert!(check_id("eu_west-2:f").is_ok());
        // 55 characters is the maximum; 56 is too many.
        let at_max = format!("us-east-1:{}", "a".repeat(ID_MAX_CHARS - 10));
        assert_eq!(chars(&at_max), 55);
        assert!(check_id(&at_max).is_ok());
        let past_max = format!("{at_max}0");
        assert!(check_id(&past_max).unwrap_err().contains("1 to 55"));
        assert!(check_id("").unwrap_err().contains("got 0"));
    }

    #[test]
    fn ids_follow_the_pattern() {
        for bad in [
            "no-colon",
            ":abc",
            "us-east-1:",
            "us-east-1:ABC",
            "us-east-1:xyz",
            "us east:abc",
            "us-east-1:ab:cd",
            "us.east:abc",
            "é:abc",
        ] {
            assert!(check_id(bad).unwrap_err().contains("REGION:GUID"), "{bad}");
        }
    }

    #[test]
    fn account_id_bounds_and_digits() {
        assert!(check_account_id("1").is_ok());
        assert!(check_account_id("123456789012345").is_ok());
        assert!(check_account_id("1234567890123456").is_err());
        assert!(check_account_id("").is_err());
        assert!(check_account_id("12a").unwrap_err().contains("digits"));
    }

    #[test]
    fn role_arn_bounds() {
        assert!(check_role_arn(&"a".repeat(19)).is_err());
        assert!(check_role_arn(&"a".repeat(20)).is_ok());
        assert!(check_role_arn(&"a".repeat(2048)).is_ok());
        assert!(check_role_arn(&"a".repeat(2049)).is_err());
    }

    #[test]
    fn token_duration_bounds() {
        assert!(check_token_duration(0).is_err());
        assert!(check_token_duration(1).is_ok());
        assert!(check_token_duration(86_400).is_ok());
        assert!(check_token_duration(86_401).is_err());
        assert!(check_token_duration(-5).is_err());
    }

    fn map_check(bounds: &MapBounds, entries: &[(String, String)]) -> Result<(), Vec<String>> {
        check_map(
            bounds,
            entries.len(),
            entries.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    fn entries(n: usize, key_len: usize, value_len: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| {
                let key = format!("{i:0>width$}", width = key_len);
                (key, "v".repeat(value_len))
            })
            .collect()
    }

    #[test]
    fn logins_bounds() {
        assert!(map_check(&LOGINS, &entries(10, 128, 50_000)).is_ok());
        assert!(map_check(&LOGINS, &entries(11, 5, 5)).unwrap_err()[0].contains("at most 10"));
        assert!(map_check(&LOGINS, &entries(1, 129, 5)).unwrap_err()[0].contains("1 to 128"));
        let long_value = map_check(&LOGINS, &entries(1, 5, 50_001)).unwrap_err();
        assert!(long_value[0].contains("1 to 50000"), "{long_value:?}");
        assert!(map_check(&LOGINS, &[(String::new(), "v".into())]).is_err());
        assert!(map_check(&LOGINS, &[("k".into(), String::new())]).is_err());
    }

    #[test]
    fn principal_tag_bounds() {
        assert!(map_check(&PRINCIPAL_TAGS, &entries(50, 128, 256)).is_ok());
        assert!(map_check(&PRINCIPAL_TAGS, &entries(51, 3, 3)).is_err());
        assert!(map_check(&PRINCIPAL_TAGS, &entries(1, 129, 3)).is_err());
        assert!(map_check(&PRINCIPAL_TAGS, &entries(1, 3, 257)).is_err());
    }

    #[test]
    fn map_problems_never_show_values_and_list_every_one() {
        let secret = "s3cr3t-token-value".repeat(3000);
        let problems = map_check(
            &LOGINS,
            &[
                ("graph.facebook.com".into(), secret),
                ("".into(), "x".into()),
            ],
        )
        .unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        let joined = problems.join(" ");
        assert!(!joined.contains("s3cr3t"), "{joined}");
        assert!(joined.contains("\"graph.facebook.com\""), "{joined}");
    }

    #[test]
    fn long_keys_are_cut_in_messages() {
        let problems = map_check(&LOGINS, &[("k".repeat(500), "v".into())]).unwrap_err();
        assert!(problems[0].len() < 200, "{}", problems[0]);
    }

    #[test]
    fn fields_have_both_names() {
        assert_eq!(Field::TokenDuration.proto_name(), "token_duration_seconds");
        assert_eq!(Field::TokenDuration.aws_name(), "TokenDuration");
        assert_eq!(Field::CustomRoleArn.proto_name(), "custom_role_arn");
    }
}
