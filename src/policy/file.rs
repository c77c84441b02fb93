//! The policy file as written: YAML, read with `serde-saphyr` (pure Rust,
//! panic-free on bad input). Unknown fields are refused: a misspelt
//! `principal_tag_keys` must not quietly mean "no tags allowed" or worse.
//! Every value that is checked beyond its type keeps where it was written
//! ([`Spanned`]), so that a refusal names the line.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    /// `enforce` or `dry-run`.
    pub(super) mode: ModeName,
    /// The named callers, matched in order.
    #[serde(default)]
    pub(super) callers: Vec<CallerEntry>,
    /// What callers with no identity may do; absent: nothing.
    #[serde(default)]
    pub(super) anonymous: Option<AnonymousEntry>,
    /// Identified callers that no entry names: they are refused, and may
    /// be held to a rate per peer address.
    #[serde(default)]
    pub(super) unknown: Option<UnknownEntry>,
}

/// The file's `mode`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum ModeName {
    Enforce,
    DryRun,
}

/// One caller.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CallerEntry {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) spiffe_ids: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) dns_names: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) rate_limit: Option<RateLimitEntry>,
    #[serde(default)]
    pub(super) allow: Vec<RuleEntry>,
}

/// `anonymous:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnonymousEntry {
    /// Per peer address.
    #[serde(default)]
    pub(super) rate_limit: Option<RateLimitEntry>,
    #[serde(default)]
    pub(super) allow: Vec<RuleEntry>,
}

/// `unknown:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UnknownEntry {
    /// Per peer address.
    #[serde(default)]
    pub(super) rate_limit: Option<RateLimitEntry>,
}

/// `rate_limit:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RateLimitEntry {
    pub(super) per_second: Spanned<f64>,
    pub(super) burst: Option<Spanned<u32>>,
}

/// One `allow` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleEntry {
    pub(super) operations: Spanned<Vec<Spanned<String>>>,
    pub(super) identity_pools: Spanned<Vec<Spanned<String>>>,
    pub(super) login_providers: Option<Vec<Spanned<String>>>,
    pub(super) principal_tag_keys: Option<Vec<Spanned<String>>>,
    pub(super) max_token_duration: Option<Spanned<String>>,
    /// Whether a developer call may name an existing identity
    /// (`identity_id`), which Cognito then links the developer user to.
    #[serde(default)]
    pub(super) link_existing_identities: bool,
}
