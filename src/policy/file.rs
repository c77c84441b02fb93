//! The policy file as written: YAML, read with `serde-saphyr` (pure Rust,
//! panic-free on bad input). Unknown fields are refused: a misspelt
//! `principal_tag_keys` must not quietly mean "no tags allowed" or worse.

use serde::Deserialize;

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
    pub(super) name: String,
    #[serde(default)]
    pub(super) spiffe_ids: Vec<String>,
    #[serde(default)]
    pub(super) dns_names: Vec<String>,
    #[serde(default)]
    pub(super) rate_limit: Option<RateLimitEntry>,
    #[serde(default)]
    pub(super) allow: Vec<RuleEntry>,
}

/// `anonymous:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnonymousEntry {
    #[serde(default)]
    pub(super) allow: Vec<RuleEntry>,
}

/// `rate_limit:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RateLimitEntry {
    pub(super) per_second: f64,
    pub(super) burst: Option<u32>,
}

/// One `allow` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleEntry {
    pub(super) operations: Vec<String>,
    pub(super) identity_pools: Vec<String>,
    pub(super) login_providers: Option<Vec<String>>,
    pub(super) principal_tag_keys: Option<Vec<String>>,
    pub(super) max_token_duration: Option<String>,
}
