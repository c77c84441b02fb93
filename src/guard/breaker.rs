//! The circuit breaker: after a run of calls that say Cognito is
//! unreachable or broken, calls that need it are refused at once until a
//! probe call finds it back.
//!
//! Closed: every call goes through; `failures` failures in a row open it.
//! Open: every call is refused (UPSTREAM_CIRCUIT_OPEN) for `cooldown`.
//! Half-open: one call at a time goes through as a probe (a background
//! refresh or a caller's call, whichever comes first); its success closes
//! the breaker, its failure opens it for another `cooldown`. Any call that
//! comes back with an answer from Cognito closes it too: Cognito is
//! evidently up.
//!
//! A failure is an answer that says Cognito is down
//! ([`Error::says_upstream_down`]), or a call abandoned by its caller after
//! it had waited `slow_call` or more: a hung Cognito outlives the callers'
//! deadlines, and without this a breaker would never see it fail.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::metrics::{Circuit, GuardMetrics};
use crate::domain::Error;

/// When a caller refused while a probe is in flight should try again: the
/// probe's answer is not known to come sooner.
const WHILE_PROBING_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The least wait a refusal asks for, so that callers do not spin.
const MIN_RETRY_AFTER: Duration = Duration::from_millis(100);

/// How the breaker behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerSettings {
    /// Failures in a row that open it; 0 turns the breaker off.
    pub failures: u32,
    /// How long it stays open before it lets a probe through.
    pub cooldown: Duration,
    /// A call abandoned after waiting this long counts as a failure.
    pub slow_call: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: 5,
            cooldown: Duration::from_secs(5),
            slow_call: Duration::from_secs(1),
        }
    }
}

/// Where the breaker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Calls go through; so many have failed in a row.
    Closed {
        /// Failures in a row so far.
        failures: u32,
    },
    /// Calls are refused until then.
    Open {
        /// When a probe may go.
        until: Instant,
    },
    /// One probe at a time goes through.
    HalfOpen {
        /// Whether one is out now.
        probing: bool,
    },
}

impl State {
    /// Its kind, as `gateway_upstream_circuit_state` says it.
    fn circuit(self) -> Circuit {
        match self {
            State::Closed { .. } => Circuit::Closed,
            State::Open { .. } => Circuit::Open,
            State::HalfOpen { .. } => Circuit::HalfOpen,
        }
    }

    /// Its name, as logs say it.
    pub const fn name(self) -> &'static str {
        match self {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }
}

/// What became of a call the breaker let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Cognito answered (an error of its own included).
    Up,
    /// The answer says Cognito is down.
    Down,
    /// Nobody waited for the answer, and too little time had passed to say.
    Unknown,
}

/// The circuit breaker, shared by every call to Cognito: its state
/// behind one lock, taken once when a call starts and once when it ends.
#[derive(Debug)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    state: Mutex<State>,
    metrics: GuardMetrics,
}

impl Breaker {
    /// A closed breaker.
    pub(crate) fn new(settings: BreakerSettings, metrics: GuardMetrics) -> Self {
        metrics.circuit_state(Circuit::Closed);
        Self {
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
            metrics,
        }
    }

    /// The state now.
    pub(crate) fn state(&self) -> State {
        self.state
            .lock()
            .map_or(State::Closed { failures: 0 }, |s| *s)
    }

    /// Lets a call through at `now`, or refuses it while Cognito is known
    /// to be down.
    pub(crate) fn admit(&self, now: Instant) -> Result<Ticket<'_>, Error> {
        if self.settings.failures == 0 {
            return Ok(self.ticket(now, false));
        }
        let Ok(mut state) = self.state.lock() else {
            return Ok(self.ticket(now, false));
        };
        match *state {
            State::Closed { .. } => Ok(self.ticket(now, false)),
            State::Open { until } if now < until => Err(Error::CircuitOpen {
                retry_after: (until - now).max(MIN_RETRY_AFTER),
            }),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.enter(&mut state, State::HalfOpen { probing: true });
                Ok(self.ticket(now, true))
            }
            State::HalfOpen { probing: true } => Err(Error::CircuitOpen {
                retry_after: WHILE_PROBING_RETRY_AFTER,
            }),
        }
    }

    fn ticket(&self, started: Instant, probe: bool) -> Ticket<'_> {
        Ticket {
            breaker: self,
            started,
            probe,
            done: false,
        }
    }

    fn record(&self, probe: bool, verdict: Verdict, now: Instant) {
        if self.settings.failures == 0 {
            return;
        }
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let open = State::Open {
            until: now + self.settings.cooldown,
        };
        let next = match (*state, verdict) {
            (State::Closed { failures }, Verdict::Down) => {
                let failures = failures + 1;
                if failures >= self.settings.failures {
                    open
                } else {
                    State::Closed { failures }
                }
            }
            (State::Closed { .. } | State::Open { .. } | State::HalfOpen { .. }, Verdict::Up) => {
                State::Closed { failures: 0 }
            }
            (State::HalfOpen { .. }, Verdict::Down) if probe => open,
            (State::HalfOpen { .. }, Verdict::Unknown) if probe => {
                State::HalfOpen { probing: false }
            }
            (current, _) => current,
        };
        if next != *state {
            self.enter(&mut state, next);
        }
    }

    /// Moves to `next`, saying so when the state's kind changes.
    fn enter(&self, state: &mut State, next: State) {
        let (from, to) = (state.name(), next.name());
        *state = next;
        if from == to {
            return;
        }
        self.metrics.circuit_changed(next.circuit());
        match next {
            State::Open { .. } => tracing::warn!(
                from,
                cooldown = ?self.settings.cooldown,
                "upstream circuit open: Cognito Identity is failing; calls that need it are \
                 refused, cached tokens still served"
            ),
            State::HalfOpen { .. } => {
                tracing::info!(from, "upstream circuit half open: probing Cognito Identity");
            }
            State::Closed { .. } => {
                tracing::info!(
                    from,
                    "upstream circuit closed: Cognito Identity answers again"
                );
            }
        }
    }
}

/// A call the breaker let through. Say what became of it with
/// [`Ticket::finished`]; dropped unsaid, the call was abandoned, which
/// counts as a failure once it had waited the slow-call time.
#[derive(Debug)]
pub(crate) struct Ticket<'a> {
    breaker: &'a Breaker,
    started: Instant,
    probe: bool,
    done: bool,
}

impl Ticket<'_> {
    /// The call ended with `error`, if it failed.
    pub(crate) fn finished(mut self, error: Option<&Error>) {
        self.done = true;
        let verdict = match error {
            Some(err) if err.says_upstream_down() => Verdict::Down,
            _ => Verdict::Up,
        };
        self.breaker.record(self.probe, verdict, Instant::now());
    }

    /// Whether this call is the half-open breaker's probe.
    #[cfg(test)]
    pub(crate) fn is_probe(&self) -> bool {
        self.probe
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let now = Instant::now();
        let verdict = if now.duration_since(self.started) >= self.breaker.settings.slow_call {
            Verdict::Down
        } else {
            Verdict::Unknown
        };
        self.breaker.record(self.probe, verdict, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            BreakerSettings {
                failures: 3,
                cooldown: Duration::from_secs(5),
                slow_call: Duration::from_millis(200),
            },
            GuardMetrics::default(),
        )
    }

    fn down() -> Error {
        Error::Unreachable("connection refused".into())
    }

    #[test]
    fn a_run_of_failures_opens_it_and_a_success_in_between_resets_the_run() {
        let b = breaker();
        let now = Instant::now();
        b.admit(now).unwrap().finished(Some(&down()));
        b.admit(now).unwrap().finished(Some(&down()));
        b.admit(now).unwrap().finished(None);
        b.admit(now).unwrap().finished(Some(&down()));
        b.admit(now).unwrap().finished(Some(&down()));
        assert_eq!(b.state(), State::Closed { failures: 2 });
        // Cognito's own refusals say it is up.
        let throttled = Error::Cognito {
            code: "TooManyRequestsException".into(),
            message: String::new(),
            request_id: None,
        };
        b.admit(now).unwrap().finished(Some(&throttled));
        assert_eq!(b.state(), State::Closed { failures: 0 });
        for _ in 0..3 {
            b.admit(now)
                .unwrap()
                .finished(Some(&Error::UpstreamTimeout));
        }
        assert_eq!(b.state().name(), "open");
    }

    #[test]
    fn open_it_refuses_with_the_time_to_the_probe_then_lets_one_probe_through() {
        let b = breaker();
        let now = Instant::now();
        for _ in 0..3 {
            b.admit(now).unwrap().finished(Some(&down()));
        }
        let later = Instant::now() + Duration::from_secs(2);
        match b.admit(later) {
            Err(Error::CircuitOpen { retry_after }) => {
                assert!(retry_after <= Duration::from_secs(3), "{retry_after:?}");
                assert!(retry_after > Duration::from_millis(2900), "{retry_after:?}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let after = Instant::now() + Duration::from_secs(6);
        let probe = b.admit(after).unwrap();
        assert!(probe.is_probe());
        assert!(matches!(b.admit(after), Err(Error::CircuitOpen { .. })));
        probe.finished(Some(&down()));
        assert_eq!(b.state().name(), "open", "a failed probe opens it again");
        let again = Instant::now() + Duration::from_secs(12);
        b.admit(again).unwrap().finished(None);
        assert_eq!(b.state(), State::Closed { failures: 0 });
    }

    #[test]
    fn an_abandoned_probe_lets_another_probe_but_a_slow_abandoned_call_is_a_failure() {
        let b = breaker();
        for _ in 0..3 {
            b.admit(Instant::now()).unwrap().finished(Some(&down()));
        }
        let after = Instant::now() + Duration::from_secs(6);
        drop(b.admit(after).unwrap());
        assert_eq!(b.state(), State::HalfOpen { probing: false });
        // A call abandoned after the slow-call time is a failure.
        let mut slow = b.admit(Instant::now()).unwrap();
        assert!(slow.is_probe());
        slow.started = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();
        drop(slow);
        assert_eq!(b.state().name(), "open");
    }

    #[test]
    fn off_it_never_refuses() {
        let b = Breaker::new(
            BreakerSettings {
                failures: 0,
                ..BreakerSettings::default()
            },
            GuardMetrics::default(),
        );
        for _ in 0..100 {
            b.admit(Instant::now()).unwrap().finished(Some(&down()));
        }
        assert!(b.admit(Instant::now()).is_ok());
    }
}
