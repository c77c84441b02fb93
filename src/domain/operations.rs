//! The four operations' inputs and outputs, as the domain sees them. An
//! input can only be built through its `parse`, which checks every field and
//! reports every violation at once.

use std::time::SystemTime;

use super::secret::Secret;
use super::types::{
    AccountId, CustomRoleArn, IdentityId, IdentityPoolId, Logins, PrincipalTags, TokenDuration,
};
use super::validate::{Field, Violations};

/// A map as it arrives, before checking: the parsers take any map
/// (`IntoIterator<Item = (String, String)>`, a proto map or a list of
/// pairs); this is the list the emulator's wire format gives.
pub type RawMap = Vec<(String, String)>;

/// Input of GetId.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GetIdInput {
    /// The pool.
    pub identity_pool_id: IdentityPoolId,
    /// The AWS account that owns the pool, if given.
    pub account_id: Option<AccountId>,
    /// Logins; empty for an unauthenticated identity.
    pub logins: Logins,
}

impl GetIdInput {
    /// Checks every field. Absent values are `None`.
    pub fn parse(
        identity_pool_id: Option<String>,
        account_id: Option<String>,
        logins: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Violations> {
        let mut v = Violations::default();
        let identity_pool_id = v.required(
            Field::IdentityPoolId,
            identity_pool_id,
            IdentityPoolId::parse,
        );
        let account_id = v.optional(Field::AccountId, account_id, AccountId::parse);
        let logins = v.many(Field::Logins, Logins::parse(logins));
        match (identity_pool_id, account_id, logins) {
            (Some(identity_pool_id), Some(account_id), Some(logins)) => Ok(Self {
                identity_pool_id,
                account_id,
                logins,
            }),
            _ => Err(v),
        }
    }
}

/// Input of GetOpenIdToken.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GetOpenIdTokenInput {
    /// The identity.
    pub identity_id: IdentityId,
    /// Logins to present (and link).
    pub logins: Logins,
}

impl GetOpenIdTokenInput {
    /// Checks every field. Absent values are `None`.
    pub fn parse(
        identity_id: Option<String>,
        logins: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Violations> {
        let mut v = Violations::default();
        let identity_id = v.required(Field::IdentityId, identity_id, IdentityId::parse);
        let logins = v.many(Field::Logins, Logins::parse(logins));
        match (identity_id, logins) {
            (Some(identity_id), Some(logins)) => Ok(Self {
                identity_id,
                logins,
            }),
            _ => Err(v),
        }
    }
}

/// Input of GetOpenIdTokenForDeveloperIdentity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GetOpenIdTokenForDeveloperIdentityInput {
    /// The pool.
    pub identity_pool_id: IdentityPoolId,
    /// An existing identity to link the logins to.
    pub identity_id: Option<IdentityId>,
    /// Logins, at least one: the developer provider's user and any others.
    pub logins: Logins,
    /// Session tags.
    pub principal_tags: PrincipalTags,
    /// Token lifetime; Cognito's default (900 s) when absent.
    pub token_duration: Option<TokenDuration>,
}

impl GetOpenIdTokenForDeveloperIdentityInput {
    /// Checks every field. Absent values are `None`; Logins is required, and
    /// an empty map counts as absent.
    pub fn parse(
        identity_pool_id: Option<String>,
        identity_id: Option<String>,
        logins: impl IntoIterator<Item = (String, String)>,
        principal_tags: impl IntoIterator<Item = (String, String)>,
        token_duration: Option<i64>,
    ) -> Result<Self, Violations> {
        let mut v = Violations::default();
        let identity_pool_id = v.required(
            Field::IdentityPoolId,
            identity_pool_id,
            IdentityPoolId::parse,
        );
        let identity_id = v.optional(Field::IdentityId, identity_id, IdentityId::parse);
        let logins = v.many(
            Field::Logins,
            Logins::parse(logins).and_then(|logins| {
                if logins.map().is_empty() {
                    Err(vec!["is required: at least one login".to_owned()])
                } else {
                    Ok(logins)
                }
            }),
        );
        let principal_tags = v.many(Field::PrincipalTags, PrincipalTags::parse(principal_tags));
        let token_duration = v.optional(Field::TokenDuration, token_duration, TokenDuration::parse);
        match (
            identity_pool_id,
            identity_id,
            logins,
            principal_tags,
            token_duration,
        ) {
            (
                Some(identity_pool_id),
                Some(identity_id),
                Some(logins),
                Some(principal_tags),
                Some(token_duration),
            ) => Ok(Self {
                identity_pool_id,
                identity_id,
                logins,
                principal_tags,
                token_duration,
            }),
            _ => Err(v),
        }
    }
}

/// Input of GetCredentialsForIdentity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GetCredentialsForIdentityInput {
    /// The identity.
    pub identity_id: IdentityId,
    /// Logins to present; `{"cognito-identity.amazonaws.com": token}` to
    /// exchange an OpenID token.
    pub logins: Logins,
    /// The role to assume when the provider's token names several.
    pub custom_role_arn: Option<CustomRoleArn>,
}

impl GetCredentialsForIdentityInput {
    /// Checks every field. Absent values are `None`.
    pub fn parse(
        identity_id: Option<String>,
        logins: impl IntoIterator<Item = (String, String)>,
        custom_role_arn: Option<String>,
    ) -> Result<Self, Violations> {
        let mut v = Violations::default();
        let identity_id = v.required(Field::IdentityId, identity_id, IdentityId::parse);
        let logins = v.many(Field::Logins, Logins::parse(logins));
        let custom_role_arn =
            v.optional(Field::CustomRoleArn, custom_role_arn, CustomRoleArn::parse);
        match (identity_id, logins, custom_role_arn) {
            (Some(identity_id), Some(logins), Some(custom_role_arn)) => Ok(Self {
                identity_id,
                logins,
                custom_role_arn,
            }),
            _ => Err(v),
        }
    }
}

/// Output of GetId.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetIdOutput {
    /// The identity id.
    pub identity_id: String,
}

/// Output of GetOpenIdToken and GetOpenIdTokenForDeveloperIdentity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenIdToken {
    /// The identity id, which may differ from the one sent.
    pub identity_id: String,
    /// The token, a JWT.
    pub token: Secret,
    /// The token's `exp` claim; `None` when the token carries none.
    pub expires_at: Option<SystemTime>,
}

/// Temporary AWS credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Access key id; not a secret on its own, but kept out of logs as part
    /// of a credential.
    pub access_key_id: Secret,
    /// Secret access key.
    pub secret_key: Secret,
    /// Session token.
    pub session_token: Secret,
    /// When they expire.
    pub expiration: Option<SystemTime>,
}

/// Output of GetCredentialsForIdentity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetCredentialsForIdentityOutput {
    /// The identity id.
    pub identity_id: String,
    /// The credentials.
    pub credentials: Credentials,
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "us-east-1:11111111-2222-3333-4444-555555555555";
    const IDENTITY: &str = "us-east-1:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

    fn fields(v: &Violations) -> Vec<Field> {
        v.iter().map(|v| v.field).collect()
    }

    fn login(provider: &str, value: &str) -> RawMap {
        vec![(provider.to_owned(), value.to_owned())]
    }

    #[test]
    fn get_id_valid_and_every_violation_reported() {
        let ok = GetIdInput::parse(Some(POOL.into()), Some("123456789012".into()), vec![]).unwrap();
        assert_eq!(ok.identity_pool_id.as_str(), POOL);
        assert!(ok.logins.map().is_empty());

        let err = GetIdInput::parse(None, Some("12x".into()), login("", "v")).unwrap_err();
        assert_eq!(
            fields(&err),
            vec![Field::IdentityPoolId, Field::AccountId, Field::Logins]
        );
        assert!(err.to_string().starts_with("identity_pool_id: is required"));
    }

    #[test]
    fn get_open_id_token_requires_identity() {
        let err = GetOpenIdTokenInput::parse(None, vec![]).unwrap_err();
        assert_eq!(fields(&err), vec![Field::IdentityId]);
        assert!(GetOpenIdTokenInput::parse(Some(IDENTITY.into()), login("p", "t")).is_ok());
    }

    #[test]
    fn developer_input_requires_logins_and_bounds_duration() {
        let err = GetOpenIdTokenForDeveloperIdentityInput::parse(
            Some(POOL.into()),
            None,
            vec![],
            vec![],
            None,
        )
        .unwrap_err();
        assert_eq!(fields(&err), vec![Field::Logins]);

        for (duration, ok) in [(0, false), (1, true), (86_400, true), (86_401, false)] {
            let parsed = GetOpenIdTokenForDeveloperIdentityInput::parse(
                Some(POOL.into()),
                None,
                login("login.example", "user-1"),
                vec![],
                Some(duration),
            );
            assert_eq!(parsed.is_ok(), ok, "duration {duration}");
        }

        let tags: RawMap = (0..51).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        let err = GetOpenIdTokenForDeveloperIdentityInput::parse(
            Some("bad".into()),
            Some("also-bad".into()),
            login("login.example", "user-1"),
            tags,
            Some(0),
        )
        .unwrap_err();
        assert_eq!(
            fields(&err),
            vec![
                Field::IdentityPoolId,
                Field::IdentityId,
                Field::PrincipalTags,
                Field::TokenDuration
            ]
        );
    }

    #[test]
    fn credentials_input_checks_role_arn() {
        let err = GetCredentialsForIdentityInput::parse(
            Some(IDENTITY.into()),
            vec![],
            Some("short".into()),
        )
        .unwrap_err();
        assert_eq!(fields(&err), vec![Field::CustomRoleArn]);
        let ok = GetCredentialsForIdentityInput::parse(
            Some(IDENTITY.into()),
            vec![],
            Some("arn:aws:iam::123456789012:role/r".into()),
        )
        .unwrap();
        assert!(ok.custom_role_arn.is_some());
    }

    #[test]
    fn logins_order_does_not_matter_and_debug_hides_values() {
        let a = Logins::parse(vec![
            ("b".into(), "2".into()),
            ("a".into(), "secret-1".into()),
        ])
        .unwrap();
        let b = Logins::parse(vec![
            ("a".into(), "secret-1".into()),
            ("b".into(), "2".into()),
        ])
        .unwrap();
        assert_eq!(a, b);
        let shown = format!("{a:?}");
        assert!(
            shown.contains("\"a\"") && !shown.contains("secret-1"),
            "{shown}"
        );
    }

    #[test]
    fn outputs_debug_hides_secrets() {
        let out = GetCredentialsForIdentityOutput {
            identity_id: IDENTITY.into(),
            credentials: Credentials {
                access_key_id: Secret::new("AKIAEXAMPLE"),
                secret_key: Secret::new("wJalrXUtnFEMI"),
                session_token: Secret::new("FwoGZXIvYXdz"),
                expiration: None,
            },
        };
        let token = OpenIdToken {
            identity_id: IDENTITY.into(),
            token: Secret::new("eyJraWQiOi"),
            expires_at: None,
        };
        let shown = format!("{out:?} {token:?}");
        for secret in ["AKIAEXAMPLE", "wJalrXUtnFEMI", "FwoGZXIvYXdz", "eyJraWQiOi"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
