//! The flags of the upstream: which Cognito Identity endpoint, in which
//! region, and how long an operation, an attempt and a connection may
//! take, with how many attempts.

use std::time::Duration;

use super::problems::{Problems, check_endpoint, check_region};
use crate::upstream::UpstreamSettings;

/// Attempts the SDK's standard retry mode makes by default; the ceiling is
/// ours: more attempts than this only burn the caller's deadline.
const MAX_ATTEMPTS_CEILING: u32 = 10;

/// One attempt's bound when none is set: long enough for Cognito's slowest
/// normal answers (well under a second), short enough that a stuck
/// connection leaves time for a retry within the default 5 s operation.
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Flags of [`UpstreamSettings`].
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Upstream")]
pub(crate) struct UpstreamArgs {
    /// Cognito Identity endpoint, instead of the region's (an emulator, a VPC
    /// endpoint). Unset: the SDK's own AWS_ENDPOINT_URL_COGNITO_IDENTITY, then
    /// the region's endpoint.
    #[arg(long, env = "COGNITO_GATEWAY_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,

    /// AWS region. Unset: the SDK's default chain (AWS_REGION, profile).
    #[arg(long, env = "COGNITO_GATEWAY_REGION")]
    pub region: Option<String>,

    /// Bound on one upstream operation, retries included (e.g. 5s, 1500ms).
    #[arg(long, env = "COGNITO_GATEWAY_UPSTREAM_TIMEOUT", default_value = "5s")]
    pub(crate) upstream_timeout: String,

    /// Bound on one upstream attempt; at most --upstream-timeout. Unset: 2s,
    /// or --upstream-timeout when that is shorter.
    #[arg(long, env = "COGNITO_GATEWAY_UPSTREAM_ATTEMPT_TIMEOUT")]
    pub(crate) upstream_attempt_timeout: Option<String>,

    /// Bound on opening a connection to the upstream.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_UPSTREAM_CONNECT_TIMEOUT",
        default_value = "1s"
    )]
    pub(crate) upstream_connect_timeout: String,

    /// Attempts per upstream operation, the first included (1 to 10).
    #[arg(long, env = "COGNITO_GATEWAY_MAX_ATTEMPTS", default_value = "3")]
    pub max_attempts: String,
}

impl UpstreamArgs {
    /// Checks the flags.
    pub(super) fn settings(&self, p: &mut Problems) -> Option<UpstreamSettings> {
        let endpoint_url = p.optional("endpoint-url", self.endpoint_url.as_deref(), check_endpoint);
        let region = p.optional("region", self.region.as_deref(), check_region);
        let operation_timeout = p.duration("upstream-timeout", &self.upstream_timeout);
        let attempt_timeout = match &self.upstream_attempt_timeout {
            Some(value) => p.duration("upstream-attempt-timeout", value),
            None => operation_timeout.map(|t| t.min(DEFAULT_ATTEMPT_TIMEOUT)),
        };
        let connect_timeout =
            p.duration("upstream-connect-timeout", &self.upstream_connect_timeout);
        let max_attempts = p.number("max-attempts", &self.max_attempts, 1..=MAX_ATTEMPTS_CEILING);
        if let (Some(attempt), Some(operation)) = (attempt_timeout, operation_timeout)
            && attempt > operation
        {
            p.0.push(format!(
                "--upstream-attempt-timeout: {} is longer than --upstream-timeout {}",
                humantime::format_duration(attempt),
                self.upstream_timeout
            ));
            return None;
        }
        Some(UpstreamSettings {
            endpoint_url: endpoint_url.ok()?,
            region: region.ok()?,
            operation_timeout: operation_timeout?,
            attempt_timeout: attempt_timeout?,
            connect_timeout: connect_timeout?,
            max_attempts: max_attempts?,
            static_credentials: None,
        })
    }
}
