//! Reading a policy file into a [`Policy`]: every value checked, every
//! problem reported at once with the line and the field it is in, so that
//! nothing later (a rate limiter, a duration) can fail on a value the file
//! let through.

use foldhash::{HashSet, HashSetExt};
use std::time::Duration;

use serde_saphyr::Spanned;

use super::file::{CallerEntry, ModeName, PolicyFile, RateLimitEntry, RuleEntry};
use super::{
    ANONYMOUS, CallerIndex, IdPattern, Mode, NamedCaller, Operations, PeerLimits, Policy,
    PolicyMetrics, RateLimit, Rule, UNKNOWN,
};
use crate::domain::{IdentityPoolId, OperationName};

/// The slowest rate a limit may have: one call an hour. Slower is a typo
/// (a rate meant per hour written per second) or a way to say "never",
/// which is what leaving a caller out of the policy says.
const MIN_PER_SECOND: f64 = 1.0 / 3600.0;
/// The fastest: far more than one replica serves, so nothing real is
/// refused, while the limiter's arithmetic stays exact.
const MAX_PER_SECOND: f64 = 1_000_000.0;
/// The largest burst, for the same reason.
const MAX_BURST: u32 = 1_000_000;
/// The longest token a rule may allow: Cognito's own ceiling on
/// `TokenDuration` (24 hours).
const MAX_TOKEN_DURATION: Duration =
    Duration::from_secs(crate::domain::validate::TOKEN_DURATION_MAX_SECONDS as u64);
/// The longest name, login provider or tag key a policy may hold: Cognito's
/// own bound on provider names and tag keys (128).
const MAX_NAME: usize = 128;

/// Problems found, each naming its line (when the file says) and field.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn at<T>(&mut self, value: &Spanned<T>, field: &str, problem: impl std::fmt::Display) {
        self.0.push(format!(
            "line {}: {field}: {problem}",
            value.referenced.line()
        ));
    }
}

impl Policy {
    /// Parses and checks a policy; on failure says where and why, every
    /// problem at once. Its decisions are counted in metrics of its own,
    /// registered nowhere: a live policy's are [`Self::parse_counted`].
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_counted(text, &PolicyMetrics::default())
    }

    /// [`Self::parse`], counting its decisions in `metrics`.
    pub(crate) fn parse_counted(text: &str, metrics: &PolicyMetrics) -> Result<Self, String> {
        let file: PolicyFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let mut p = Problems::default();
        let mut callers = Vec::with_capacity(file.callers.len());
        let mut names = HashSet::new();
        for (i, entry) in file.callers.into_iter().enumerate() {
            callers.push(caller(&format!("callers[{i}]"), entry, &mut names, &mut p));
        }
        let (anonymous, anonymous_limit) = match file.anonymous {
            Some(a) => (
                rules("anonymous.allow", a.allow, &mut p),
                a.rate_limit
                    .and_then(|r| rate_limit("anonymous.rate_limit", &r, &mut p)),
            ),
            None => (Vec::new(), None),
        };
        let unknown_limit = file
            .unknown
            .and_then(|u| u.rate_limit)
            .and_then(|r| rate_limit("unknown.rate_limit", &r, &mut p));
        if !p.0.is_empty() {
            return Err(p.0.join("; "));
        }
        Ok(Self {
            mode: match file.mode {
                ModeName::Enforce => Mode::Enforce,
                ModeName::DryRun => Mode::DryRun,
            },
            metrics: metrics.clone(),
            index: CallerIndex::new(&callers),
            callers,
            anonymous,
            anonymous_name: ANONYMOUS.into(),
            anonymous_allowed: super::Allowed::default(),
            anonymous_limit: anonymous_limit
                .map(|limit| PeerLimits::new(ANONYMOUS, limit, metrics.clone())),
            unknown_limit: unknown_limit
                .map(|limit| PeerLimits::new(UNKNOWN, limit, metrics.clone())),
        })
    }
}

/// One caller's entry, checked; its name must be new to `names`.
fn caller(
    at: &str,
    entry: CallerEntry,
    names: &mut HashSet<String>,
    p: &mut Problems,
) -> NamedCaller {
    let name = &entry.name;
    if let Some(problem) = name_problem(&name.value) {
        p.at(name, &format!("{at}.name"), problem);
    } else if [ANONYMOUS, UNKNOWN].contains(&name.value.as_str()) {
        p.at(
            name,
            &format!("{at}.name"),
            format_args!("{:?} is the name of callers no entry names", name.value),
        );
    } else if !names.insert(name.value.clone()) {
        p.at(
            name,
            &format!("{at}.name"),
            format_args!("{:?} is named twice", name.value),
        );
    }
    if entry.spiffe_ids.is_empty() && entry.dns_names.is_empty() {
        p.at(name, at, "names no spiffe_ids and no dns_names");
    }
    let spiffe_ids = entry
        .spiffe_ids
        .iter()
        .filter_map(|id| {
            id_pattern(&id.value)
                .map_err(|e| p.at(id, &format!("{at}.spiffe_ids"), e))
                .ok()
        })
        .collect();
    let dns_names = entry
        .dns_names
        .into_iter()
        .filter_map(|dns| match dns_problem(&dns.value) {
            Some(problem) => {
                p.at(&dns, &format!("{at}.dns_names"), problem);
                None
            }
            None => Some(dns.value),
        })
        .collect();
    let rate_limit = entry
        .rate_limit
        .and_then(|r| rate_limit(&format!("{at}.rate_limit"), &r, p));
    let rules = rules(&format!("{at}.allow"), entry.allow, p);
    NamedCaller {
        name: name.value.as_str().into(),
        allowed: super::Allowed::default(),
        spiffe_ids,
        dns_names,
        limiter: rate_limit.map(super::limiter),
        #[cfg(test)]
        rate_limit,
        rules,
    }
}

/// A name's problem, if it has one: empty, too long, or holding a control
/// character (names reach log lines and metric labels).
fn name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        Some("must not be empty".to_owned())
    } else if name.len() > MAX_NAME {
        Some(format!("is longer than {MAX_NAME} bytes"))
    } else if name.chars().any(char::is_control) {
        Some(format!("{name:?} holds a control character"))
    } else {
        None
    }
}

/// A DNS name's problem, if it has one: it must be a host name, letters,
/// digits, `-` and `.`.
fn dns_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && name.split('.').all(|label| !label.is_empty());
    (!ok).then(|| format!("{name:?} is not a DNS name"))
}

fn rate_limit(at: &str, entry: &RateLimitEntry, p: &mut Problems) -> Option<RateLimit> {
    let per_second = &entry.per_second;
    let rate = per_second.value;
    let mut ok = true;
    if !rate.is_finite() || rate < MIN_PER_SECOND {
        p.at(
            per_second,
            &format!("{at}.per_second"),
            format_args!("{rate} is below one call an hour ({MIN_PER_SECOND:.6})"),
        );
        ok = false;
    } else if rate > MAX_PER_SECOND {
        p.at(
            per_second,
            &format!("{at}.per_second"),
            format_args!("{rate} is above {MAX_PER_SECOND}"),
        );
        ok = false;
    }
    let burst = match &entry.burst {
        Some(burst) if burst.value == 0 || burst.value > MAX_BURST => {
            p.at(
                burst,
                &format!("{at}.burst"),
                format_args!("{} is not between 1 and {MAX_BURST}", burst.value),
            );
            return None;
        }
        Some(burst) => burst.value,
        // A second's worth, at least one.
        None if ok => rate.ceil().max(1.0) as u32,
        None => 1,
    };
    ok.then_some(RateLimit {
        per_second: rate,
        burst,
    })
}

fn id_pattern(id: &str) -> Result<IdPattern, String> {
    if !id.starts_with("spiffe://") {
        return Err(format!("{id:?} is not a spiffe:// id"));
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{id:?} holds a space or a control character"));
    }
    Ok(match id.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('/') => IdPattern::Prefix(prefix.to_owned()),
        Some(_) => {
            return Err(format!(
                "{id:?}: a wildcard must be a whole last segment, /*"
            ));
        }
        None => IdPattern::Exact(id.to_owned()),
    })
}

fn rules(at: &str, entries: Vec<RuleEntry>, p: &mut Problems) -> Vec<Rule> {
    let mut rules = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let at = format!("{at}[{i}]");
        let mut operations = Operations::default();
        for name in &entry.operations.value {
            match OperationName::from_name(&name.value) {
                Some(op) => {
                    operations.insert(op);
                }
                None => p.at(
                    name,
                    &format!("{at}.operations"),
                    format_args!(
                        "{:?} is not one of GetId, GetOpenIdToken, \
                         GetOpenIdTokenForDeveloperIdentity, GetCredentialsForIdentity",
                        name.value
                    ),
                ),
            }
        }
        if entry.operations.value.is_empty() {
            p.at(
                &entry.operations,
                &format!("{at}.operations"),
                "must name at least one",
            );
        }
        let pools = &entry.identity_pools;
        if pools.value.is_empty() {
            p.at(
                pools,
                &format!("{at}.identity_pools"),
                "must name at least one, or \"*\"",
            );
        }
        for pool in &pools.value {
            if pool.value != "*"
                && let Err(why) = IdentityPoolId::parse(pool.value.clone())
            {
                p.at(pool, &format!("{at}.identity_pools"), why);
            }
        }
        let identity_pools = (!pools.value.iter().any(|pool| pool.value == "*"))
            .then(|| pools.value.iter().map(|pool| pool.value.clone()).collect());
        let max_token_duration = entry
            .max_token_duration
            .as_ref()
            .and_then(|d| token_duration(&format!("{at}.max_token_duration"), d, p));
        let login_providers = entry
            .login_providers
            .map(|names| names_of(&format!("{at}.login_providers"), names, p));
        let principal_tag_keys = entry
            .principal_tag_keys
            .map(|names| names_of(&format!("{at}.principal_tag_keys"), names, p))
            .unwrap_or_default();
        rules.push(Rule {
            operations,
            identity_pools,
            login_providers,
            principal_tag_keys,
            max_token_duration,
            link_existing_identities: entry.link_existing_identities,
        });
    }
    rules
}

/// A rule's `max_token_duration`: a duration from a second to Cognito's
/// 24 hours.
fn token_duration(field: &str, d: &Spanned<String>, p: &mut Problems) -> Option<Duration> {
    match humantime::parse_duration(&d.value) {
        Err(e) => {
            p.at(d, field, format_args!("{:?}: {e}", d.value));
            None
        }
        Ok(duration) if duration < Duration::from_secs(1) => {
            p.at(d, field, format_args!("{:?} is under a second", d.value));
            None
        }
        Ok(duration) if duration > MAX_TOKEN_DURATION => {
            p.at(
                d,
                field,
                format_args!("{:?} is longer than Cognito's 24 hours", d.value),
            );
            None
        }
        Ok(duration) => Some(duration),
    }
}

/// Login provider names or tag keys: each non-empty, at most
/// [`MAX_NAME`], without control characters.
fn names_of(at: &str, names: Vec<Spanned<String>>, p: &mut Problems) -> HashSet<String> {
    let mut set = HashSet::with_capacity(names.len());
    for name in names {
        match name_problem(&name.value) {
            Some(problem) => p.at(&name, at, problem),
            None => {
                set.insert(name.value);
            }
        }
    }
    set
}
