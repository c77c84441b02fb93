//! What the caller check made of a call, in one word: the `decision` label
//! of `gateway_policy_decisions_total` and the `decision` field of an
//! audit line. Users' dashboards and audit queries match these words, so
//! they never change.

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

use super::Decision;

/// What the caller check made of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// No policy is in force: every caller may call everything.
    NoPolicy,
    /// The policy allows the call.
    Allow,
    /// No rule allows the call, or its caller has no identity.
    Deny {
        /// The policy is in dry-run mode: the call goes on.
        dry_run: bool,
    },
    /// The caller is past its rate limit.
    RateLimited {
        /// The policy is in dry-run mode: the call goes on.
        dry_run: bool,
    },
}

impl Verdict {
    /// The word metrics and audit lines use.
    pub const fn label(self) -> &'static str {
        match self {
            Self::NoPolicy => "no_policy",
            Self::Allow => "allow",
            Self::Deny { dry_run: false } => "deny",
            Self::Deny { dry_run: true } => "dry_run_deny",
            Self::RateLimited { dry_run: false } => "rate_limited",
            Self::RateLimited { dry_run: true } => "dry_run_rate_limited",
        }
    }

    /// A call the policy would refuse, let through because it only tries
    /// itself out: the audit log records it whatever its operation.
    pub(crate) const fn dry_run_refusal(self) -> bool {
        matches!(
            self,
            Self::Deny { dry_run: true } | Self::RateLimited { dry_run: true }
        )
    }
}

impl EncodeLabelValue for Verdict {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.label())
    }
}

impl Decision {
    /// The decision in one word; a caller with no identity that the
    /// policy refuses is denied like any other.
    pub(crate) fn verdict(&self) -> Verdict {
        match *self {
            Decision::Allow { .. } => Verdict::Allow,
            Decision::Deny { dry_run, .. } | Decision::Unauthenticated { dry_run, .. } => {
                Verdict::Deny { dry_run }
            }
            Decision::RateLimited { dry_run, .. } => Verdict::RateLimited { dry_run },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_users_match_stay_as_they_are() {
        let words = [
            (Verdict::NoPolicy, "no_policy"),
            (Verdict::Allow, "allow"),
            (Verdict::Deny { dry_run: false }, "deny"),
            (Verdict::Deny { dry_run: true }, "dry_run_deny"),
            (Verdict::RateLimited { dry_run: false }, "rate_limited"),
            (
                Verdict::RateLimited { dry_run: true },
                "dry_run_rate_limited",
            ),
        ];
        for (verdict, word) in words {
            assert_eq!(verdict.label(), word);
            assert_eq!(verdict.dry_run_refusal(), word.starts_with("dry_run"));
        }
    }

    #[test]
    fn an_unauthenticated_caller_is_denied() {
        let decision = Decision::Unauthenticated {
            why: "no rule".to_owned(),
            dry_run: true,
        };
        assert_eq!(decision.verdict(), Verdict::Deny { dry_run: true });
    }
}
