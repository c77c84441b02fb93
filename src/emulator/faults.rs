//! Injected faults, for tests and benchmarks: per operation, a rate limit
//! answered with TooManyRequestsException, a share of calls answered with
//! InternalErrorException, added latency; and a switch that drops
//! connections. Set at start and changed while running through the admin
//! endpoint (`GET`/`PUT /_emulator/faults`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::rate::TokenBucket;

/// Cognito's default quotas, requests per second per account and region
/// (the Amazon Cognito service quotas page): the `cognito-default` preset.
pub(crate) const COGNITO_DEFAULT_QUOTAS: [(&str, f64); 4] = [
    ("GetId", 25.0),
    ("GetOpenIdToken", 200.0),
    ("GetCredentialsForIdentity", 200.0),
    ("GetOpenIdTokenForDeveloperIdentity", 50.0),
];

/// Faults of one operation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperationFaults {
    /// Requests per second allowed; more get TooManyRequestsException.
    pub rate_limit: Option<f64>,
    /// Share of calls, 0 to 1, answered with InternalErrorException.
    pub error_rate: f64,
    /// Added before answering, in milliseconds.
    pub latency_ms: u64,
}

/// Every fault setting.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSettings {
    /// Per operation name (`GetId`, ...); `*` applies to all not named.
    pub operations: BTreeMap<String, OperationFaults>,
    /// When set, connections are closed without an answer.
    pub drop_connections: bool,
}

impl FaultSettings {
    /// Cognito's default quotas as rate limits.
    pub fn cognito_default_quotas() -> Self {
        Self {
            operations: COGNITO_DEFAULT_QUOTAS
                .iter()
                .map(|(op, rps)| {
                    (
                        (*op).to_owned(),
                        OperationFaults {
                            rate_limit: Some(*rps),
                            ..OperationFaults::default()
                        },
                    )
                })
                .collect(),
            drop_connections: false,
        }
    }

    /// Checks ranges.
    pub fn check(&self) -> Result<(), String> {
        for (op, f) in &self.operations {
            if !(0.0..=1.0).contains(&f.error_rate) {
                return Err(format!("{op}: error_rate must be between 0 and 1"));
            }
            if f.rate_limit.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                return Err(format!("{op}: rate_limit must be a positive number"));
            }
        }
        Ok(())
    }

    fn of(&self, operation: &str) -> Option<&OperationFaults> {
        self.operations
            .get(operation)
            .or_else(|| self.operations.get("*"))
    }
}

/// What to do with a call.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Answer it, after `delay`.
    Serve {
        /// Added latency.
        delay: Duration,
    },
    /// Answer TooManyRequestsException.
    Throttle,
    /// Answer InternalErrorException.
    Fail,
}

/// The live fault state.
#[derive(Debug, Default)]
pub struct Faults {
    settings: Mutex<FaultSettings>,
    buckets: Mutex<BTreeMap<String, TokenBucket>>,
}

impl Faults {
    /// Faults as configured at start.
    pub fn new(settings: FaultSettings) -> Self {
        Self {
            settings: Mutex::new(settings),
            buckets: Mutex::new(BTreeMap::new()),
        }
    }

    /// The current settings.
    pub fn settings(&self) -> FaultSettings {
        self.settings.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Replaces the settings; rate limit buckets start full.
    pub fn set(&self, settings: FaultSettings) -> Result<(), String> {
        settings.check()?;
        if let (Ok(mut current), Ok(mut buckets)) = (self.settings.lock(), self.buckets.lock()) {
            *current = settings;
            buckets.clear();
        }
        Ok(())
    }

    /// Whether connections are to be dropped.
    pub(crate) fn dropping(&self) -> bool {
        self.settings.lock().is_ok_and(|s| s.drop_connections)
    }

    /// Decides a call to `operation` at `now`; `roll` is a uniform number in
    /// [0, 1) for the error share.
    pub(crate) fn decide(&self, operation: &str, now: Instant, roll: f64) -> Verdict {
        let Some(f) = self
            .settings
            .lock()
            .ok()
            .and_then(|s| s.of(operation).cloned())
        else {
            return Verdict::Serve {
                delay: Duration::ZERO,
            };
        };
        if let Some(rate) = f.rate_limit
            && let Ok(mut buckets) = self.buckets.lock()
        {
            let bucket = buckets
                .entry(operation.to_owned())
                .or_insert_with(|| TokenBucket::new(rate));
            if !bucket.try_take(now) {
                return Verdict::Throttle;
            }
        }
        if roll < f.error_rate {
            return Verdict::Fail;
        }
        Verdict::Serve {
            delay: Duration::from_millis(f.latency_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_refill_over_time() {
        let faults = Faults::new(FaultSettings::cognito_default_quotas());
        let t0 = Instant::now();
        let served = (0..100)
            .filter(|_| faults.decide("GetId", t0, 0.5) != Verdict::Throttle)
            .count();
        assert_eq!(served, 25, "a second's burst of GetId's quota");
        // A tenth of a second later, 2.5 more tokens: 2 calls.
        let t1 = t0 + Duration::from_millis(100);
        let later = (0..10)
            .filter(|_| faults.decide("GetId", t1, 0.5) != Verdict::Throttle)
            .count();
        assert_eq!(later, 2);
        // Other operations have their own buckets.
        assert_ne!(faults.decide("GetOpenIdToken", t1, 0.5), Verdict::Throttle);
    }

    #[test]
    fn error_share_latency_and_wildcard() {
        let mut settings = FaultSettings::default();
        settings.operations.insert(
            "*".into(),
            OperationFaults {
                error_rate: 0.25,
                latency_ms: 200,
                ..OperationFaults::default()
            },
        );
        let faults = Faults::new(settings);
        let now = Instant::now();
        assert_eq!(faults.decide("GetId", now, 0.1), Verdict::Fail);
        assert_eq!(
            faults.decide("GetId", now, 0.9),
            Verdict::Serve {
                delay: Duration::from_millis(200)
            }
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let faults = Faults::default();
        let mut bad = FaultSettings::default();
        bad.operations.insert(
            "GetId".into(),
            OperationFaults {
                error_rate: 1.5,
                ..OperationFaults::default()
            },
        );
        assert!(faults.set(bad).is_err());
        assert_eq!(faults.settings(), FaultSettings::default());
    }
}
