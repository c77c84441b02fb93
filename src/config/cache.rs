//! The flags of the token cache: what is cached, for how long, when an
//! entry is renewed, and the cache's memory budget.

use super::problems::Problems;
use crate::cache::CacheSettings;

/// Flags of [`CacheSettings`].
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Cache")]
pub(crate) struct CacheArgs {
    /// Cache answers at all (true/false); off sends every call upstream.
    #[arg(long, env = "COGNITO_GATEWAY_CACHE", default_value = "true")]
    pub cache: String,

    /// Cache GetOpenIdToken (the developer operation always is).
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_OPEN_ID_TOKENS",
        default_value = "true"
    )]
    pub(crate) cache_open_id_tokens: String,

    /// Cache GetCredentialsForIdentity, until the credentials expire.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_CREDENTIALS",
        default_value = "true"
    )]
    pub(crate) cache_credentials: String,

    /// Cache GetId for authenticated logins (unauthenticated ones never are).
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_IDENTITY_IDS",
        default_value = "true"
    )]
    pub(crate) cache_identity_ids: String,

    /// How long a GetId answer is kept.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_IDENTITY_ID_TTL",
        default_value = "1h"
    )]
    pub(crate) cache_identity_id_ttl: String,

    /// Entries expire this long before their token does.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_SAFETY_MARGIN",
        default_value = "30s"
    )]
    pub(crate) cache_safety_margin: String,

    /// Serve a cached token only while this share of its life remains (0 to 1).
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_MIN_REMAINING",
        default_value = "0.5"
    )]
    pub(crate) cache_min_remaining: String,

    /// Renew an entry in the background from this share of its life on (0
    /// to 1, below 1 minus --cache-min-remaining), when a request comes:
    /// as late as is safe (by 5 s or a hundredth of its life before it stops
    /// being served), judged by the gap between its requests.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_REFRESH_AFTER",
        default_value = "0.4"
    )]
    pub(crate) cache_refresh_after: String,

    /// At most this many background refreshes a second.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_REFRESH_RATE",
        default_value = "100"
    )]
    pub(crate) cache_refresh_rate: String,

    /// Memory budget of the cache: bytes, or with KiB, MiB, GiB.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_MAX_BYTES",
        default_value = "256MiB"
    )]
    pub(crate) cache_max_bytes: String,
}

impl CacheArgs {
    /// Checks the flags.
    pub(super) fn settings(&self, p: &mut Problems) -> Option<CacheSettings> {
        let enabled = p.boolean("cache", &self.cache);
        let open_id_tokens = p.boolean("cache-open-id-tokens", &self.cache_open_id_tokens);
        let credentials = p.boolean("cache-credentials", &self.cache_credentials);
        let identity_ids = p.boolean("cache-identity-ids", &self.cache_identity_ids);
        let identity_id_ttl = p.duration("cache-identity-id-ttl", &self.cache_identity_id_ttl);
        let safety_margin = p.duration("cache-safety-margin", &self.cache_safety_margin);
        let min_remaining_share = p.share("cache-min-remaining", &self.cache_min_remaining);
        let refresh_after_share = p.share("cache-refresh-after", &self.cache_refresh_after);
        let refresh_rate = p.positive("cache-refresh-rate", &self.cache_refresh_rate);
        let max_bytes = p.bytes("cache-max-bytes", &self.cache_max_bytes);
        if let (Some(keep), Some(refresh)) = (min_remaining_share, refresh_after_share)
            && refresh >= 1.0 - keep
        {
            p.0.push(format!(
                "--cache-refresh-after: {refresh} must be below 1 - --cache-min-remaining ({}), \
                 or entries stop being served before they are renewed",
                1.0 - keep
            ));
            return None;
        }
        Some(CacheSettings {
            enabled: enabled?,
            open_id_tokens: open_id_tokens?,
            credentials: credentials?,
            identity_ids: identity_ids?,
            identity_id_ttl: identity_id_ttl?,
            safety_margin: safety_margin?,
            min_remaining_share: min_remaining_share?,
            refresh_after_share: refresh_after_share?,
            refresh_rate: refresh_rate?,
            max_bytes: max_bytes?,
        })
    }
}
