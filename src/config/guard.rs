//! The flags of the guard in front of the upstream: the limit on callers
//! waiting on Cognito, the circuit breaker, the quota budgets.

use crate::guard::{BreakerSettings, GuardSettings, QuotaSettings};

use super::problems::Problems;

/// Flags of [`GuardSettings`].
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Upstream guard")]
pub(crate) struct GuardArgs {
    /// Calls that may wait on Cognito at once (cache misses and uncached
    /// calls); more are refused with RESOURCE_EXHAUSTED
    /// (UPSTREAM_CONCURRENCY_LIMIT). Below --concurrency-limit, so that a
    /// slow Cognito never takes the slots cache hits need. Unset: half of
    /// --concurrency-limit.
    #[arg(long, env = "COGNITO_GATEWAY_UPSTREAM_CONCURRENCY_LIMIT")]
    pub(crate) upstream_concurrency_limit: Option<String>,

    /// Upstream calls a second this replica may make, per operation:
    /// OPERATION=RATE pairs (RATE a number or off) over Cognito's default
    /// quotas, or off for no budget at all. Past a budget a call waits for
    /// a slot while its deadline allows, else RESOURCE_EXHAUSTED
    /// (UPSTREAM_QUOTA).
    #[arg(
        long,
        env = "COGNITO_GATEWAY_UPSTREAM_QUOTA",
        default_value = "GetId=25,GetOpenIdToken=200,GetCredentialsForIdentity=200,\
                         GetOpenIdTokenForDeveloperIdentity=50"
    )]
    pub(crate) upstream_quota: String,

    /// Upstream failures in a row (refused, reset, timed out, 5xx) that open
    /// the circuit breaker: calls that need Cognito are then refused at once
    /// with UNAVAILABLE (UPSTREAM_CIRCUIT_OPEN) until a probe succeeds. 0
    /// turns the breaker off.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_UPSTREAM_CIRCUIT_FAILURES",
        default_value = "5"
    )]
    pub(crate) upstream_circuit_failures: String,

    /// How long the open breaker refuses calls before it lets one probe
    /// call through.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_UPSTREAM_CIRCUIT_COOLDOWN",
        default_value = "5s"
    )]
    pub(crate) upstream_circuit_cooldown: String,

    /// An upstream call its caller gave up on after this long counts as a
    /// failure for the breaker (a hung Cognito outlives callers' deadlines).
    #[arg(
        long,
        env = "COGNITO_GATEWAY_UPSTREAM_CIRCUIT_SLOW_CALL",
        default_value = "1s"
    )]
    pub(crate) upstream_circuit_slow_call: String,
}

impl GuardArgs {
    /// Checks the flags; `concurrency_limit` is the process's, if valid.
    pub(super) fn settings(
        &self,
        p: &mut Problems,
        concurrency_limit: Option<usize>,
    ) -> Option<GuardSettings> {
        let waiting_limit = match &self.upstream_concurrency_limit {
            Some(value) => p
                .number("upstream-concurrency-limit", value, 1..=usize::MAX)
                .and_then(|limit| match concurrency_limit {
                    Some(all) if limit >= all => {
                        p.0.push(format!(
                            "--upstream-concurrency-limit: {limit} must be below \
                             --concurrency-limit ({all}), or calls waiting on Cognito could \
                             take every slot cache hits need"
                        ));
                        None
                    }
                    _ => Some(Some(limit)),
                }),
            None => Some(concurrency_limit.map(|all| (all / 2).max(1))),
        };
        let quotas = p.check("upstream-quota", QuotaSettings::parse(&self.upstream_quota));
        let failures = p.number(
            "upstream-circuit-failures",
            &self.upstream_circuit_failures,
            0..=u32::MAX,
        );
        let cooldown = p.duration("upstream-circuit-cooldown", &self.upstream_circuit_cooldown);
        let slow_call = p.duration(
            "upstream-circuit-slow-call",
            &self.upstream_circuit_slow_call,
        );
        Some(GuardSettings {
            waiting_limit: waiting_limit?,
            breaker: BreakerSettings {
                failures: failures?,
                cooldown: cooldown?,
                slow_call: slow_call?,
            },
            quotas: quotas?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use crate::config::Cli;
    use crate::domain::OperationName;

    fn guard(args: &[&str]) -> Result<crate::guard::GuardSettings, Vec<String>> {
        let mut argv = vec!["cognito-identity-gateway", "--allow-all-callers"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .expect("flags parse")
            .into_settings()
            .map(|s| s.guard)
            .map_err(|e| e.0)
    }

    #[test]
    fn defaults_are_cognitos_quotas_a_closed_breaker_and_half_the_slots() {
        let g = guard(&[]).unwrap();
        assert_eq!(g.waiting_limit, Some(512));
        assert_eq!(g.quotas, crate::guard::QuotaSettings::default());
        assert_eq!(g.quotas.rate(OperationName::GetId), Some(25.0));
        assert_eq!(g.breaker.failures, 5);
        assert_eq!(g.breaker.cooldown, Duration::from_secs(5));
        assert_eq!(g.breaker.slow_call, Duration::from_secs(1));
        let g = guard(&["--concurrency-limit=100"]).unwrap();
        assert_eq!(g.waiting_limit, Some(50));
    }

    #[test]
    fn flags_are_read_and_bad_ones_named() {
        let g = guard(&[
            "--upstream-concurrency-limit=10",
            "--upstream-quota=off",
            "--upstream-circuit-failures=0",
            "--upstream-circuit-cooldown=30s",
        ])
        .unwrap();
        assert_eq!(g.waiting_limit, Some(10));
        assert_eq!(g.quotas, crate::guard::QuotaSettings::off());
        assert_eq!(g.breaker.failures, 0);
        assert_eq!(g.breaker.cooldown, Duration::from_secs(30));
        let err = guard(&[
            "--upstream-concurrency-limit=1024",
            "--upstream-quota=GetId=lots",
            "--upstream-circuit-cooldown=never",
        ])
        .unwrap_err();
        let flags: Vec<&str> = err.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            flags,
            [
                "--upstream-concurrency-limit",
                "--upstream-quota",
                "--upstream-circuit-cooldown"
            ],
            "{err:?}"
        );
    }
}
