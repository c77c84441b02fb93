//! The upstream quota guard: per operation, a budget of upstream calls a
//! second for this replica, so that a burst of distinct misses is spread
//! out here rather than throttled by Cognito.
//!
//! Each budget is a token bucket that may go into debt: a caller past the
//! budget reserves the next free slot and waits for it, if it comes before
//! the caller's deadline (less [`CALL_RESERVE`] for the call itself);
//! otherwise it is refused at once with UPSTREAM_QUOTA and the time its
//! slot would have come as RetryInfo. A caller that gives up while waiting
//! hands its slot back. Background refreshes take only what callers leave:
//! one goes only while at least half the burst is unused, and never waits.
//!
//! A budget of Q calls a second is a bucket of Q/10 calls of burst refilled
//! at 9Q/10 a second: no one-second window ever holds more than Q calls,
//! and Cognito's own buckets (a second's worth, as far as its throttling
//! shows) keep slack for the jitter between the moment the gateway sends
//! and the moment Cognito counts.
//!
//! Time is the [`Clock`]'s, so that the production-shaped benchmark can
//! run budgets as fast as it runs tokens' lives; callers' deadlines are
//! real time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::metrics::{GuardMetrics, QuotaOutcome};
use crate::clock::Clock;
use crate::domain::{Error, FetchFor, OperationName};
use crate::rate::TokenBucket;

/// Cognito Identity's default quotas, requests a second per account and
/// region (Amazon Cognito's service quotas; raised on request).
pub(crate) const COGNITO_DEFAULT_QUOTAS: [(OperationName, f64); 4] = [
    (OperationName::GetId, 25.0),
    (OperationName::GetOpenIdToken, 200.0),
    (OperationName::GetCredentialsForIdentity, 200.0),
    (OperationName::GetOpenIdTokenForDeveloperIdentity, 50.0),
];

/// Time a caller's deadline must still leave once its slot comes: a slot
/// that comes later would be spent on a call nobody waits for.
pub(crate) const CALL_RESERVE: Duration = Duration::from_millis(100);

/// How long a caller with no known deadline may wait for a slot.
const NO_DEADLINE_WAIT: Duration = Duration::from_secs(1);

/// Budgets per operation, calls a second; `None`: unlimited.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuotaSettings {
    rates: [Option<f64>; 4],
}

fn index(operation: OperationName) -> usize {
    operation as usize - 1
}

impl Default for QuotaSettings {
    /// Cognito's default quotas.
    fn default() -> Self {
        let mut rates = [None; 4];
        for (operation, rate) in COGNITO_DEFAULT_QUOTAS {
            rates[index(operation)] = Some(rate);
        }
        Self { rates }
    }
}

impl QuotaSettings {
    /// No budget at all.
    pub fn off() -> Self {
        Self { rates: [None; 4] }
    }

    /// The budget of `operation`, if it has one.
    pub fn rate(&self, operation: OperationName) -> Option<f64> {
        self.rates[index(operation)]
    }

    /// Parses `--upstream-quota`: `off`, or `Operation=RATE` pairs
    /// separated by commas (RATE a positive number of calls a second, or
    /// `off`), over Cognito's default quotas for the operations not named.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::off());
        }
        let mut settings = Self::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, rate) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?}: expected OPERATION=RATE"))?;
            let operation = OperationName::ALL
                .into_iter()
                .find(|o| o.as_str() == name.trim())
                .ok_or_else(|| {
                    format!(
                        "{name:?} is not an operation (one of {})",
                        OperationName::ALL.map(OperationName::as_str).join(", ")
                    )
                })?;
            let rate = match rate.trim() {
                "off" => None,
                number => match number.parse::<f64>() {
                    Ok(r) if r > 0.0 && r.is_finite() => Some(r),
                    _ => {
                        return Err(format!(
                            "{pair:?}: the rate must be a positive number of calls a second, or off"
                        ));
                    }
                },
            };
            settings.rates[index(operation)] = rate;
        }
        Ok(settings)
    }
}

/// One operation's bucket.
#[derive(Debug)]
struct Budget {
    /// Spaces the calls out.
    bucket: TokenBucket,
    /// When the calls of the last [`WINDOW`] went, at most `per_second`.
    sent: VecDeque<Instant>,
    per_second: usize,
}

impl Budget {
    /// A full bucket for a budget of `quota` calls a second: a tenth of it
    /// as the burst and the rest as the rate, so that no one-second window
    /// ever holds more than `quota` calls (for budgets of 2 a second and
    /// more; below, one call of burst is the least).
    fn new(quota: f64) -> Self {
        let burst = (quota / 10.0).max(1.0);
        let rate = (quota - burst).max(quota / 2.0);
        let per_second = (quota.floor() as usize).max(1);
        Self {
            bucket: TokenBucket::with_burst(rate, burst),
            sent: VecDeque::with_capacity(per_second),
            per_second,
        }
    }

    /// A slot for a caller that may wait up to `max_wait`: how long to wait
    /// for it, or, refused, when one would have come.
    fn reserve(&mut self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        self.bucket.reserve(now, max_wait)
    }

    /// A slot for a background refresh: only from an unused half of the
    /// burst, never waited for.
    fn spare(&mut self, now: Instant) -> bool {
        self.bucket.level(now) >= 1.0 + self.bucket.capacity() / 2.0 && self.bucket.try_take(now)
    }

    fn give_back(&mut self) {
        self.bucket.give_back();
    }

    /// Records a call going at `now`, if the [`WINDOW`] before holds fewer
    /// calls than the budget; otherwise, how long until it does. The bucket
    /// spaces calls out; this holds the budget to when they actually go,
    /// however late a waiter wakes.
    fn send(&mut self, now: Instant) -> Result<(), Duration> {
        while let Some(&first) = self.sent.front() {
            if now.saturating_duration_since(first) < WINDOW {
                break;
            }
            self.sent.pop_front();
        }
        match self.sent.front() {
            Some(&first) if self.sent.len() >= self.per_second => {
                Err((first + WINDOW).saturating_duration_since(now))
            }
            _ => {
                self.sent.push_back(now);
                Ok(())
            }
        }
    }
}

/// The window the calls that go are counted in: a second, and a twentieth
/// more for the time between the moment a call goes and the moment Cognito
/// counts it, which differs from call to call.
const WINDOW: Duration = Duration::from_millis(1050);

/// The budgets of every operation.
#[derive(Debug)]
pub(crate) struct Quotas {
    budgets: [Option<Mutex<Budget>>; 4],
    clock: Clock,
    metrics: GuardMetrics,
}

/// Hands a reserved slot back unless told it was used.
struct Reserved<'a>(Option<&'a Mutex<Budget>>);

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if let Some(budget) = self.0.take()
            && let Ok(mut budget) = budget.lock()
        {
            budget.give_back();
        }
    }
}

impl Quotas {
    /// Full budgets, spent on `clock`'s time.
    pub(crate) fn new(settings: QuotaSettings, clock: Clock, metrics: GuardMetrics) -> Self {
        for operation in OperationName::ALL {
            metrics.quota_rate(operation, settings.rate(operation));
        }
        Self {
            budgets: OperationName::ALL.map(|operation| {
                settings
                    .rate(operation)
                    .map(|rate| Mutex::new(Budget::new(rate)))
            }),
            clock,
            metrics,
        }
    }

    /// Takes a slot for one call to `operation`, waiting for it if the
    /// call is a caller's and its deadline allows; refused with
    /// [`Error::UpstreamQuota`] otherwise.
    pub(crate) async fn acquire(
        &self,
        operation: OperationName,
        purpose: FetchFor,
    ) -> Result<(), Error> {
        let Some(budget) = &self.budgets[index(operation)] else {
            return Ok(());
        };
        let taken = take(budget, purpose, &self.clock);
        let wait = match taken {
            Taken::Now => None,
            Taken::After(wait) => Some(wait),
            Taken::Refused(retry_after) => {
                let outcome = match purpose {
                    FetchFor::Caller(_) => QuotaOutcome::Refused,
                    FetchFor::Refresh => QuotaOutcome::RefreshDeferred,
                };
                self.metrics.quota(operation, outcome);
                return Err(Error::UpstreamQuota {
                    operation,
                    retry_after,
                });
            }
        };
        let held = Reserved(Some(budget));
        let mut waited = false;
        if let Some(wait) = wait {
            tokio::time::sleep(self.clock.real(wait)).await;
            waited = true;
        }
        while let Some(extra) = send_now(budget, &self.clock) {
            if matches!(purpose, FetchFor::Refresh) {
                // Refreshes never wait: the slot goes back to callers.
                drop(held);
                self.metrics.quota(operation, QuotaOutcome::RefreshDeferred);
                return Err(Error::UpstreamQuota {
                    operation,
                    retry_after: extra,
                });
            }
            tokio::time::sleep(self.clock.real(extra)).await;
            waited = true;
        }
        std::mem::forget(held);
        let outcome = match waited {
            true => QuotaOutcome::Waited,
            false => QuotaOutcome::Sent,
        };
        self.metrics.quota(operation, outcome);
        Ok(())
    }
}

/// Sends a call on `budget` now if its last second allows; otherwise, how
/// long until it does.
fn send_now(budget: &Mutex<Budget>, clock: &Clock) -> Option<Duration> {
    let mut bucket = budget.lock().ok()?;
    bucket.send(clock.now()).err()
}

/// What a budget gave.
enum Taken {
    /// A slot now.
    Now,
    /// A slot after waiting this long.
    After(Duration),
    /// None; one would come after this long.
    Refused(Duration),
}

fn take(budget: &Mutex<Budget>, purpose: FetchFor, clock: &Clock) -> Taken {
    let now = clock.now();
    let Ok(mut bucket) = budget.lock() else {
        return Taken::Now;
    };
    match purpose {
        FetchFor::Refresh if bucket.spare(now) => Taken::Now,
        FetchFor::Refresh => Taken::Refused(Duration::from_secs_f64(1.0 / bucket.bucket.rate())),
        FetchFor::Caller(deadline) => {
            // Deadlines are real time; the budget is on the clock's.
            let max_wait = deadline.map_or(NO_DEADLINE_WAIT, |d| {
                clock
                    .on_clock(d.saturating_duration_since(Instant::now()))
                    .saturating_sub(CALL_RESERVE)
            });
            match bucket.reserve(now, max_wait) {
                Ok(Duration::ZERO) => Taken::Now,
                Ok(wait) => Taken::After(wait),
                Err(retry_after) => Taken::Refused(retry_after),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_overrides_the_defaults_it_names() {
        let s = QuotaSettings::parse("GetId=50, GetOpenIdTokenForDeveloperIdentity=off").unwrap();
        assert_eq!(s.rate(OperationName::GetId), Some(50.0));
        assert_eq!(
            s.rate(OperationName::GetOpenIdTokenForDeveloperIdentity),
            None
        );
        assert_eq!(s.rate(OperationName::GetOpenIdToken), Some(200.0));
        assert_eq!(QuotaSettings::parse("off").unwrap(), QuotaSettings::off());
        assert_eq!(QuotaSettings::parse("").unwrap(), QuotaSettings::default());
        for bad in [
            "GetId",
            "GetIt=5",
            "GetId=0",
            "GetId=-1",
            "GetId=many",
            "GetId=inf",
        ] {
            let err = QuotaSettings::parse(bad).unwrap_err();
            assert!(err.contains(bad.split('=').next().unwrap()), "{bad}: {err}");
        }
    }

    #[test]
    fn callers_past_the_burst_wait_in_turn_and_are_refused_past_their_deadline() {
        let t0 = Instant::now();
        // 25 a second: 2.5 of burst, 22.5 a second after it.
        let mut b = Budget::new(25.0);
        let long = Duration::from_secs(10);
        let ms = |n: f64| Duration::from_secs_f64(n / 22.5);
        assert_eq!(b.reserve(t0, long), Ok(Duration::ZERO));
        assert_eq!(b.reserve(t0, long), Ok(Duration::ZERO));
        // Then in turn, a slot every 1/22.5 s.
        assert_eq!(b.reserve(t0, long), Ok(ms(0.5)));
        assert_eq!(b.reserve(t0, long), Ok(ms(1.5)));
        // One that cannot wait that long is told when its slot would come,
        // and takes nothing.
        assert_eq!(b.reserve(t0, ms(2.0)), Err(ms(2.5)));
        assert_eq!(b.reserve(t0, long), Ok(ms(2.5)));
        // A waiter that gives up hands its slot on.
        b.give_back();
        assert_eq!(b.reserve(t0, long), Ok(ms(2.5)));
    }

    /// The most calls in any one second of `times`.
    fn busiest(mut times: Vec<Instant>) -> usize {
        times.sort();
        let second = Duration::from_secs(1);
        (0..times.len())
            .map(|i| times[i..].partition_point(|&t| t < times[i] + second))
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn no_second_holds_more_than_the_budget() {
        let t0 = Instant::now();
        let mut b = Budget::new(50.0);
        // Callers as fast as they come, for 10 s: when each call goes.
        let mut sent = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(10) {
            if let Ok(wait) = b.reserve(now, Duration::from_secs(60)) {
                sent.push(now + wait);
            }
            now += Duration::from_millis(1);
        }
        // However late the waiters wake (here: 150 ms), the calls that go
        // are held to the budget.
        let mut held = Budget::new(50.0);
        let mut went = Vec::new();
        for (i, &slot) in sent.iter().enumerate() {
            let mut at = slot + Duration::from_millis(if i % 7 == 0 { 150 } else { 0 });
            while let Err(extra) = held.send(at) {
                at += extra;
            }
            went.push(at);
        }
        assert!(busiest(went) <= 50, "calls in one second, held");
        let busiest = busiest(sent);
        assert!(busiest <= 50, "{busiest} calls in one second");
        assert!(busiest >= 49, "{busiest}: the budget is used");
    }

    #[test]
    fn refreshes_take_only_what_callers_leave() {
        let t0 = Instant::now();
        let mut b = Budget::new(200.0);
        // A full bucket (20) has spare slots, down to half the burst.
        let spare = (0..20).filter(|_| b.spare(t0)).count();
        assert_eq!(spare, 10);
        // Callers take the rest and go into debt: no refresh then.
        while b.reserve(t0, Duration::ZERO).is_ok() {}
        assert!(!b.spare(t0));
        assert!(!b.spare(t0 + Duration::from_millis(20)));
        assert!(b.spare(t0 + Duration::from_secs(2)));
    }

    #[tokio::test]
    async fn a_burst_is_spread_at_the_budget() {
        let quotas = Quotas::new(
            QuotaSettings::parse("GetId=40").unwrap(),
            Clock::default(),
            GuardMetrics::default(),
        );
        let started = Instant::now();
        let deadline = Some(started + Duration::from_secs(5));
        let calls =
            (0..40).map(|_| quotas.acquire(OperationName::GetId, FetchFor::Caller(deadline)));
        let results = futures_util::future::join_all(calls).await;
        assert!(results.iter().all(Result::is_ok));
        // 4 at once, 36 more at 36 a second: a second.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(980), "{took:?}");
        // Operations without a budget never wait.
        assert!(
            quotas
                .acquire(OperationName::GetOpenIdToken, FetchFor::Refresh)
                .await
                .is_ok()
        );
    }
}
