//! The claims of the emulator's tokens, as Cognito puts them in its own:
//! who the identity is and how it signed in (`sub`, `aud`, `amr`), the
//! identity pool's ARN, and PrincipalTags as STS session tags.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::store::Resolved;
use crate::domain::PrincipalTags;

/// The issuer Cognito puts in its tokens; the emulator's say the same, so
/// that client code checking `iss` runs unchanged against it.
pub(crate) const ISSUER: &str = "https://cognito-identity.amazonaws.com";

/// The claims of a token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    /// Issuer.
    pub(crate) iss: String,
    /// The identity id.
    pub sub: String,
    /// The identity pool id.
    pub aud: String,
    /// `authenticated` and the providers, or `unauthenticated`; for the
    /// developer provider also `provider:pool id:developer user id`.
    pub(crate) amr: Vec<String>,
    /// Issued at, Unix seconds.
    pub(crate) iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// The identity pool's ARN, in every token.
    #[serde(rename = "https://cognito-identity.amazonaws.com/identity-pool-arn")]
    pub(crate) identity_pool_arn: String,
    /// PrincipalTags as STS session tags (what AssumeRoleWithWebIdentity
    /// reads); only when tags were given.
    #[serde(
        rename = "https://aws.amazon.com/tags",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) tags: Option<SessionTags>,
}

/// The session tags claim: each tag key with its value in a list.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionTags {
    /// Tag key to values (one value each).
    pub principal_tags: BTreeMap<String, Vec<String>>,
}

impl SessionTags {
    /// The claim for `tags`, or `None` for none.
    pub(crate) fn from_principal_tags(tags: &PrincipalTags) -> Option<Self> {
        let principal_tags: BTreeMap<String, Vec<String>> = tags
            .map()
            .iter()
            .map(|(key, value)| (key.to_owned(), vec![value.expose().to_owned()]))
            .collect();
        (!principal_tags.is_empty()).then_some(Self { principal_tags })
    }
}

/// Tag values can carry user attributes: only the keys are shown.
impl fmt::Debug for SessionTags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.principal_tags.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// The developer user id in `amr` is a Logins value: shown redacted.
impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let amr: Vec<String> = self
            .amr
            .iter()
            .map(|m| match m.split_once(':') {
                Some((provider, _)) => format!("{provider}:<redacted>"),
                None => m.clone(),
            })
            .collect();
        f.debug_struct("Claims")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("aud", &self.aud)
            .field("amr", &amr)
            .field("iat", &self.iat)
            .field("exp", &self.exp)
            .field("identity_pool_arn", &self.identity_pool_arn)
            .field("tags", &self.tags)
            .finish()
    }
}

impl Claims {
    /// The claims of a token for `identity`, issued at `iat` for `lifetime`
    /// seconds, in an emulated `account`.
    pub(crate) fn for_identity(
        identity: &Resolved,
        account: &str,
        iat: u64,
        lifetime: u64,
        tags: Option<SessionTags>,
    ) -> Self {
        let pool_id = &identity.pool_id;
        let amr = if identity.providers.is_empty() {
            vec!["unauthenticated".to_owned()]
        } else {
            let mut amr = vec!["authenticated".to_owned()];
            for provider in &identity.providers {
                amr.push(provider.clone());
                // Cognito names the developer user too, with the pool id
                // (REGION:GUID) between: `provider:region:guid:user`.
                if let Some((developer, user)) = &identity.developer_user
                    && developer == provider
                {
                    amr.push(format!("{developer}:{pool_id}:{}", user.expose()));
                }
            }
            amr
        };
        let region = pool_id.split_once(':').map_or("", |(region, _)| region);
        Self {
            iss: ISSUER.to_owned(),
            sub: identity.identity_id.clone(),
            aud: pool_id.clone(),
            amr,
            iat,
            exp: iat.saturating_add(lifetime),
            identity_pool_arn: format!(
                "arn:aws:cognito-identity:{region}:{account}:identitypool/{pool_id}"
            ),
            tags,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Secret;
    use serde_json::json;

    #[test]
    fn claims_as_cognito_makes_them() {
        let pool = "eu-west-1:0a0a0a0a-0000-4000-8000-000000000001";
        let developer = Resolved {
            identity_id: "eu-west-1:1111".into(),
            pool_id: pool.into(),
            providers: vec!["graph.facebook.com".into(), "login.example".into()],
            developer_user: Some(("login.example".into(), Secret::new("user-7"))),
        };
        let tags = PrincipalTags::parse([("team".to_owned(), "blue".to_owned())]).unwrap();
        let c = Claims::for_identity(
            &developer,
            "000000000000",
            1_000,
            900,
            SessionTags::from_principal_tags(&tags),
        );
        assert_eq!(
            c.amr,
            [
                "authenticated",
                "graph.facebook.com",
                "login.example",
                &format!("login.example:{pool}:user-7")
            ]
        );
        assert_eq!((c.iat, c.exp), (1_000, 1_900));
        assert_eq!(
            c.identity_pool_arn,
            format!("arn:aws:cognito-identity:eu-west-1:000000000000:identitypool/{pool}")
        );
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json["https://aws.amazon.com/tags"],
            json!({"principal_tags": {"team": ["blue"]}})
        );
        // Neither the developer user nor a tag value shows in Debug.
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("user-7") && !shown.contains("blue"),
            "{shown}"
        );

        let anonymous = Resolved {
            providers: vec![],
            developer_user: None,
            ..developer
        };
        let c = Claims::for_identity(&anonymous, "000000000000", 1_000, 600, None);
        assert_eq!(c.amr, ["unauthenticated"]);
        let json = serde_json::to_value(&c).unwrap();
        assert!(json.get("https://aws.amazon.com/tags").is_none());
    }
}
