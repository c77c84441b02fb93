//! The caller policy: who may call which operation, for which pools, login
//! providers, principal tags and token lifetimes. Read from a YAML file
//! ([`file`]), checked whole when loaded (every problem refused before it
//! can take effect), and asked one question per call: [`Policy::decide`].
//!
//! A caller is the first entry one of whose `spiffe_ids` (exact, or a prefix
//! ending in `/*`) or `dns_names` matches its identity. A call is allowed
//! when one of that caller's rules matches every part of it: the operation,
//! the pool, every Logins key, every principal tag key, and the token
//! lifetime (a request without one is judged as Cognito's default, 900 s).
//! Everything else is denied. GetOpenIdToken and GetCredentialsForIdentity
//! name an identity, not a pool: their pool is the `aud` of the Cognito
//! token in their Logins (read, not verified: Cognito verifies it against
//! the identity), and without one they match only rules for any pool.
//! Nothing secret is read but that `aud`, and nothing secret is said.

mod file;
mod live;
mod load;
mod metrics;
mod peers;
mod verdict;

pub use live::LivePolicy;
pub(crate) use live::LoadedPolicy;
pub(crate) use metrics::PolicyMetrics;
use peers::PeerLimits;
pub(crate) use verdict::Verdict;

use foldhash::{HashMap, HashSet};
use std::borrow::Cow;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota};

use crate::domain::{Caller, OperationName, Scope};
use crate::jwt;

/// The Logins key of a Cognito OpenID token.
const COGNITO_LOGIN: &str = "cognito-identity.amazonaws.com";
/// The token lifetime Cognito gives when a request names none.
const DEFAULT_TOKEN_DURATION: Duration = Duration::from_secs(900);

/// What the policy does with a denial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Denied calls are refused.
    Enforce,
    /// Denied calls are let through, and logged, audited and counted as
    /// such: for trying a policy on live traffic.
    DryRun,
}

/// A loaded, checked policy.
#[derive(Debug)]
pub struct Policy {
    mode: Mode,
    /// Where its decisions are counted.
    metrics: PolicyMetrics,
    callers: Vec<NamedCaller>,
    /// Which entry names a caller, found without reading every entry.
    index: CallerIndex,
    anonymous: Vec<Rule>,
    /// The name callers with no identity go by, and their allowed calls'
    /// series.
    anonymous_name: Arc<str>,
    anonymous_allowed: Allowed,
    /// The rate of callers with no identity, per peer address.
    anonymous_limit: Option<PeerLimits>,
    /// The rate of identified callers no entry names, per peer address.
    unknown_limit: Option<PeerLimits>,
}

/// The callers' names, indexed: an exact SPIFFE id or a DNS name (stored
/// lowercase) to the first entry naming it, and the `/*` prefixes in entry
/// order. A policy of a thousand callers costs a lookup, not a thousand
/// comparisons.
#[derive(Debug, Default)]
struct CallerIndex {
    spiffe_ids: HashMap<String, usize>,
    dns_names: HashMap<String, usize>,
    prefixes: Vec<(usize, String)>,
}

impl CallerIndex {
    fn new(callers: &[NamedCaller]) -> Self {
        let mut index = Self::default();
        for (i, caller) in callers.iter().enumerate() {
            for id in &caller.spiffe_ids {
                match id {
                    IdPattern::Exact(id) => {
                        index.spiffe_ids.entry(id.clone()).or_insert(i);
                    }
                    IdPattern::Prefix(prefix) => index.prefixes.push((i, prefix.clone())),
                }
            }
            for name in &caller.dns_names {
                index
                    .dns_names
                    .entry(name.to_ascii_lowercase())
                    .or_insert(i);
            }
        }
        index
    }

    /// The first entry naming `caller`.
    fn find(&self, caller: &Caller) -> Option<usize> {
        match caller {
            Caller::Anonymous => None,
            Caller::Spiffe(id) => {
                let exact = self.spiffe_ids.get(&**id).copied();
                let before = exact.unwrap_or(usize::MAX);
                // A prefix of an earlier entry wins over a later exact id.
                self.prefixes
                    .iter()
                    .take_while(|(i, _)| *i < before)
                    .find(|(_, prefix)| IdPattern::prefix_matches(prefix, id))
                    .map(|(i, _)| *i)
                    .or(exact)
            }
            Caller::Dns(name) if name.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.dns_names.get(&name.to_ascii_lowercase()).copied()
            }
            Caller::Dns(name) => self.dns_names.get(&**name).copied(),
        }
    }
}

/// A caller's rate limit, as the policy gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RateLimit {
    /// Calls a second, on average.
    pub per_second: f64,
    /// Calls at once after a quiet spell.
    pub burst: u32,
}

#[derive(Debug)]
struct NamedCaller {
    name: Arc<str>,
    /// Its allowed calls' series, one an operation, found in the metrics'
    /// family on first use: a call allowed costs an atomic add.
    allowed: Allowed,
    spiffe_ids: Vec<IdPattern>,
    dns_names: Vec<String>,
    /// As the file says it (the limiter holds it in its own form).
    #[cfg(test)]
    rate_limit: Option<RateLimit>,
    /// The rate limit's state (GCRA, lock-free): every call of the caller
    /// counts, cache hits and denied calls included.
    limiter: Option<DefaultDirectRateLimiter>,
    rules: Vec<Rule>,
}

#[derive(Debug)]
enum IdPattern {
    Exact(String),
    /// `spiffe://td/ns/shop/*`: everything under `spiffe://td/ns/shop/`.
    Prefix(String),
}

impl IdPattern {
    /// The plain reading of a pattern, against which the index is tested.
    #[cfg(test)]
    fn matches(&self, id: &str) -> bool {
        match self {
            IdPattern::Exact(exact) => id == exact,
            IdPattern::Prefix(prefix) => Self::prefix_matches(prefix, id),
        }
    }

    fn prefix_matches(prefix: &str, id: &str) -> bool {
        id.starts_with(prefix) && id.len() > prefix.len()
    }
}

/// `None` stands for "any".
#[derive(Debug)]
struct Rule {
    operations: Operations,
    identity_pools: Option<HashSet<String>>,
    login_providers: Option<HashSet<String>>,
    principal_tag_keys: HashSet<String>,
    max_token_duration: Option<Duration>,
    /// A developer call may name an existing identity to link to.
    link_existing_identities: bool,
}

/// A set of operations, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Operations(u8);

impl Operations {
    fn insert(&mut self, operation: OperationName) {
        self.0 |= 1 << operation as u8;
    }

    fn contains(self, operation: OperationName) -> bool {
        self.0 & (1 << operation as u8) != 0
    }
}

/// The policy's answer for one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Allowed (and counted in `gateway_policy_decisions_total`); `caller`
    /// is the policy's name for it (`anonymous` for a caller with no
    /// identity), shared with the policy rather than copied.
    Allow {
        /// The caller's name.
        caller: Arc<str>,
    },
    /// Denied, saying which part did not match; let through in dry-run mode.
    Deny {
        /// The caller's name.
        caller: String,
        /// Which part of the call no rule allowed (no secret).
        why: String,
        /// The policy is in dry-run mode: the call goes on.
        dry_run: bool,
    },
    /// A caller past its rate limit.
    RateLimited {
        /// The caller's name.
        caller: String,
        /// When a call would be admitted again.
        retry_after: Duration,
        /// The policy is in dry-run mode: the call goes on.
        dry_run: bool,
    },
    /// A caller with no identity, which `anonymous` does not allow.
    Unauthenticated {
        /// Which part of the call no rule allowed (no secret).
        why: String,
        /// The policy is in dry-run mode: the call goes on.
        dry_run: bool,
    },
}

/// The name of callers with no identity, in decisions and metrics.
pub(crate) const ANONYMOUS: &str = "anonymous";
/// The name of an identified caller that no entry names.
pub(crate) const UNKNOWN: &str = "unknown";

impl Policy {
    /// Enforcing, or trying.
    #[cfg(test)]
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// The rate limit of the caller named `name`, if it has one.
    #[cfg(test)]
    pub(crate) fn rate_limit(&self, name: &str) -> Option<RateLimit> {
        self.callers.iter().find(|c| &*c.name == name)?.rate_limit
    }

    /// The policy's answer for `caller`, on a connection from `peer`,
    /// asking for `scope`. Callers with no identity and identified callers
    /// no entry names are held to their limits per peer address.
    pub(crate) fn decide(
        &self,
        caller: &Caller,
        peer: Option<IpAddr>,
        scope: &Scope<'_>,
    ) -> Decision {
        let dry_run = self.mode == Mode::DryRun;
        let (name, allowed, rules) = match caller {
            Caller::Anonymous => {
                if let Some(retry_after) = self.anonymous_limit.as_ref().and_then(|l| l.over(peer))
                {
                    return Decision::RateLimited {
                        caller: ANONYMOUS.to_owned(),
                        retry_after,
                        dry_run,
                    };
                }
                (
                    &self.anonymous_name,
                    &self.anonymous_allowed,
                    &self.anonymous,
                )
            }
            identified => match self.index.find(identified).map(|i| &self.callers[i]) {
                Some(entry) => {
                    if let Some(retry_after) = entry.over_its_rate() {
                        return Decision::RateLimited {
                            caller: entry.name.to_string(),
                            retry_after,
                            dry_run,
                        };
                    }
                    (&entry.name, &entry.allowed, &entry.rules)
                }
                None => {
                    if let Some(retry_after) =
                        self.unknown_limit.as_ref().and_then(|l| l.over(peer))
                    {
                        return Decision::RateLimited {
                            caller: UNKNOWN.to_owned(),
                            retry_after,
                            dry_run,
                        };
                    }
                    return Decision::Deny {
                        caller: UNKNOWN.to_owned(),
                        why: "the caller's identity is not in the policy".to_owned(),
                        dry_run,
                    };
                }
            },
        };
        match judge(rules, scope) {
            Ok(()) => {
                allowed.count(&self.metrics, name, scope.operation);
                Decision::Allow {
                    caller: name.clone(),
                }
            }
            Err(why) if matches!(caller, Caller::Anonymous) => {
                Decision::Unauthenticated { why, dry_run }
            }
            Err(why) => Decision::Deny {
                caller: name.to_string(),
                why,
                dry_run,
            },
        }
    }
}

/// A rate limiter for `limit`, whose values [`load`] checked: a rate of at
/// least one call an hour, a burst of at least one.
fn limiter(limit: RateLimit) -> DefaultDirectRateLimiter {
    let period = Duration::try_from_secs_f64(1.0 / limit.per_second)
        .unwrap_or(Duration::from_secs(3600))
        .max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_hour(NonZeroU32::MIN))
        .allow_burst(burst);
    DefaultDirectRateLimiter::direct(quota)
}

/// The series of a caller's allowed calls, one an operation.
#[derive(Debug, Default)]
struct Allowed([OnceLock<prometheus_client::metrics::counter::Counter>; 4]);

impl Allowed {
    fn count(&self, metrics: &PolicyMetrics, caller: &str, operation: OperationName) {
        let i = (operation as usize - 1) % 4;
        self.0[i]
            .get_or_init(|| metrics.decision_series(caller, operation, Verdict::Allow))
            .inc();
    }
}

/// How long until `limiter` admits a call, when it does not admit this
/// one (counted if it does).
fn over(limiter: &DefaultDirectRateLimiter) -> Option<Duration> {
    limiter
        .check()
        .err()
        .map(|not_until| not_until.wait_time_from(limiter.clock().now()))
}

impl NamedCaller {
    /// Counts a call: `Some(wait)` when it is past the caller's rate, with
    /// how long until a call would be admitted.
    fn over_its_rate(&self) -> Option<Duration> {
        over(self.limiter.as_ref()?)
    }

    /// Whether this entry names `caller`, read plainly: the index must
    /// agree with reading every entry in order.
    #[cfg(test)]
    fn names(&self, caller: &Caller) -> bool {
        match caller {
            Caller::Anonymous => false,
            Caller::Spiffe(id) => self.spiffe_ids.iter().any(|p| p.matches(id)),
            Caller::Dns(name) => self.dns_names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        }
    }
}

/// The pool a call is about: the one it names, or else (GetOpenIdToken and
/// GetCredentialsForIdentity name an identity) the `aud` of the Cognito
/// token in its Logins, read but not verified (Cognito verifies it against
/// the identity). Borrowed when the request names its pool: no copy on
/// every call.
pub(crate) fn pool_of<'a>(scope: &Scope<'a>) -> Option<Cow<'a, str>> {
    match scope.identity_pool {
        Some(pool) => Some(Cow::Borrowed(pool)),
        None => scope
            .logins
            .get(COGNITO_LOGIN)
            .and_then(|token| jwt::audience(token.expose()))
            .map(Cow::Owned),
    }
}

/// `Ok` when one of `rules` allows every part of `scope`; otherwise what
/// the closest rule (the one that got furthest) did not allow.
fn judge(rules: &[Rule], scope: &Scope<'_>) -> Result<(), String> {
    let pool = pool_of(scope);
    let mut closest: Option<(usize, String)> = None;
    for rule in rules {
        let (step, why) = match rule.check(scope, pool.as_deref()) {
            Ok(()) => return Ok(()),
            Err(failed) => failed,
        };
        if closest.as_ref().is_none_or(|(best, _)| step > *best) {
            closest = Some((step, why));
        }
    }
    Err(closest.map_or_else(
        || format!("no rule allows {}", scope.operation),
        |(_, why)| why,
    ))
}

impl Rule {
    /// `Err((how far it got, what did not match))`.
    fn check(&self, scope: &Scope<'_>, pool: Option<&str>) -> Result<(), (usize, String)> {
        if !self.operations.contains(scope.operation) {
            return Err((
                0,
                format!("no rule allows the operation {}", scope.operation),
            ));
        }
        if let Some(pools) = &self.identity_pools {
            match pool {
                Some(pool) if pools.contains(pool) => {}
                Some(pool) => {
                    return Err((1, format!("no rule allows the identity pool {pool}")));
                }
                None => {
                    return Err((
                        1,
                        "the call names no identity pool (no Cognito token in Logins), \
                         and no rule allows any pool"
                            .to_owned(),
                    ));
                }
            }
        }
        if let Some(providers) = &self.login_providers
            && let Some(provider) = scope.logins.names().find(|n| !providers.contains(*n))
        {
            return Err((2, format!("no rule allows the login provider {provider:?}")));
        }
        if let Some(tags) = scope.principal_tags
            && let Some(key) = tags.names().find(|k| !self.principal_tag_keys.contains(*k))
        {
            return Err((3, format!("no rule allows the principal tag {key:?}")));
        }
        if scope.operation.mints_for_any_user()
            && scope.identity_id.is_some()
            && !self.link_existing_identities
        {
            return Err((
                4,
                "no rule allows identity_id: linking the developer user to an existing \
                 identity needs link_existing_identities: true"
                    .to_owned(),
            ));
        }
        if scope.operation.mints_for_any_user()
            && let Some(max) = self.max_token_duration
        {
            let asked = scope
                .token_duration_seconds
                .map_or(DEFAULT_TOKEN_DURATION, |s| {
                    Duration::from_secs(u64::from(s))
                });
            if asked > max {
                return Err((
                    5,
                    format!(
                        "a token of {} s is longer than the {} s allowed",
                        asked.as_secs(),
                        max.as_secs()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
