//! The writer thread: lines from the queue to the sink, in batches. Lines
//! the sink cannot take are held and retried, with a growing pause, until
//! it takes them; past `--audit-fallback-after` of failing, or at shutdown
//! while it still fails, they go to standard error, marked: a line of a
//! call answered is never silently lost.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Entry;
use super::held::Held;
use super::line::Line;
use super::metrics::AuditMetrics;
use super::user::{HmacKey, UserHashes, developer_user};
use crate::domain::{CacheOutcome, Caller, SecretMap};
use crate::policy;

/// How long the writer lets lines gather after writing a batch: under
/// load, a line reaches the sink within about this long.
const BATCH: Duration = Duration::from_millis(2);

/// The first pause before the sink is tried again after a failure; each
/// failure doubles it, up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(10);

/// The longest pause between two tries of a failing sink: once it
/// recovers, developer calls are refused this long at most.
const LAST_RETRY: Duration = Duration::from_millis(500);

/// The writer thread's state.
pub(super) struct Writer {
    sink: Box<dyn Write + Send>,
    /// Where lines go once the sink has failed for `fallback_after`
    /// (standard error, the operational log's stream).
    fallback: Box<dyn Write + Send>,
    fallback_after: Duration,
    key: HmacKey,
    /// The hashes of users seen lately: a user's calls come in runs (a
    /// token, then its cache hits), and an HMAC costs more than the rest
    /// of a line.
    users: UserHashes,
    /// The hash of the user of the line being written (a buffer reused).
    user: String,
    /// Lines taken from the queue and not yet written.
    held: Held,
    /// Raised while the sink fails: developer calls are refused.
    failing: Arc<AtomicBool>,
    /// Since when the sink has failed, while it fails.
    failing_since: Option<Instant>,
    /// Lines went to the fallback since the sink started failing (said
    /// once in the log).
    fell_back: bool,
    /// Raised by [`super::AuditWriter::finish`].
    stop: Arc<AtomicBool>,
    metrics: AuditMetrics,
}

/// Where the writer's lines go, and when it stops.
pub(super) struct Outlets {
    pub(super) sink: Box<dyn Write + Send>,
    /// The fallback (standard error).
    pub(super) fallback: Box<dyn Write + Send>,
    /// How long the sink may fail before its lines go to the fallback.
    pub(super) fallback_after: Duration,
    /// Raised while the sink fails.
    pub(super) failing: Arc<AtomicBool>,
    /// Raised when the writer is to write what it has and stop.
    pub(super) stop: Arc<AtomicBool>,
    /// Where the lines written and fallen back are counted.
    pub(super) metrics: AuditMetrics,
}

impl Writer {
    /// A writer to `outlets`, hashing users with `key`.
    pub(super) fn new(outlets: Outlets, key: HmacKey) -> Self {
        Self {
            sink: outlets.sink,
            fallback: outlets.fallback,
            fallback_after: outlets.fallback_after,
            key,
            users: UserHashes::default(),
            user: String::new(),
            held: Held::default(),
            failing: outlets.failing,
            failing_since: None,
            fell_back: false,
            stop: outlets.stop,
            metrics: outlets.metrics,
        }
    }

    /// Writes lines in batches until asked to stop or every sender is
    /// gone: what the queue holds, then a write, then a pause of [`BATCH`]
    /// while more gather. Only an empty queue is waited on; under load the
    /// writer is never parked on the queue, so a call that queues a line
    /// wakes no thread. While the sink fails, the lines held are tried
    /// again after a growing pause, and what comes meanwhile waits in the
    /// (bounded) queue, so that the writer's memory stays bounded too;
    /// past `fallback_after` the lines held go to the fallback. Asked to
    /// stop, it takes what the queue holds, tries the sink once, sends to
    /// the fallback what the sink did not take, and stops.
    pub(super) fn run(mut self, mut lines: mpsc::Receiver<Option<Entry>>) {
        let mut retry = FIRST_RETRY;
        loop {
            let stopping = self.stop.load(Ordering::Acquire);
            let mut open = true;
            if self.failing_since.is_none() || self.held.is_empty() || stopping {
                open = self.take(&mut lines);
            }
            let last = stopping || !open;
            if self.held.is_empty() {
                if last {
                    return;
                }
                match lines.blocking_recv() {
                    Some(Some(entry)) => self.encode(&entry),
                    // The stop flag says why it was sent.
                    Some(None) => {}
                    None => return,
                }
                continue;
            }
            match self.write() {
                Ok(()) => {
                    retry = FIRST_RETRY;
                    if last {
                        return;
                    }
                    std::thread::sleep(BATCH);
                }
                Err(failing_for) if last || failing_for >= self.fallback_after => {
                    self.fall_back();
                    if last {
                        return;
                    }
                }
                Err(failing_for) => {
                    // Woken early by `finish`.
                    std::thread::park_timeout(
                        retry.min(self.fallback_after.saturating_sub(failing_for)),
                    );
                    retry = (retry * 2).min(LAST_RETRY);
                }
            }
        }
    }

    /// Takes what the queue holds, as much as it can hold at most (under
    /// a flood the queue never empties); false once every sender is gone.
    fn take(&mut self, lines: &mut mpsc::Receiver<Option<Entry>>) -> bool {
        for _ in 0..lines.max_capacity() {
            match lines.try_recv() {
                Ok(Some(entry)) => self.encode(&entry),
                // A wake-up from `finish`: the stop flag says it.
                Ok(None) => {}
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    /// Writes what is held. While the sink fails, developer calls are
    /// refused, and the error is how long it has been failing.
    fn write(&mut self) -> Result<(), Duration> {
        let (lines, outcome) = self.held.write_to(&mut *self.sink);
        self.metrics.written(lines);
        match outcome {
            Ok(()) => {
                self.failing.store(false, Ordering::Relaxed);
                if self.failing_since.take().is_some() {
                    self.fell_back = false;
                    tracing::warn!("the audit log is written again: developer calls are served");
                }
                Ok(())
            }
            Err(e) => {
                self.failing.store(true, Ordering::Relaxed);
                let since = *self.failing_since.get_or_insert_with(|| {
                    tracing::error!(
                        "the audit log cannot be written ({e}): developer calls are refused \
                         until it can; its lines are kept and tried again"
                    );
                    Instant::now()
                });
                Err(since.elapsed())
            }
        }
    }

    /// Sends what is held to the fallback.
    fn fall_back(&mut self) {
        let (lines, outcome) = self.held.fall_back(&mut *self.fallback);
        match outcome {
            Ok(()) => self.metrics.fallback(lines),
            // Neither the sink nor standard error takes them.
            Err(_) => self.metrics.dropped(lines),
        }
        if !std::mem::replace(&mut self.fell_back, true) {
            tracing::error!(
                lines,
                "the audit log still cannot be written: the lines it held are on standard \
                 error, each after \"audit-fallback: \"; so are the next ones while it fails"
            );
        }
    }

    /// Adds `entry`'s line to what is held.
    fn encode(&mut self, entry: &Entry) {
        let scope = entry.asked.scope();
        let pool = policy::pool_of(&scope);
        let user = match developer_user(&scope) {
            Some(user) => {
                self.user.clear();
                self.users.hash_into(&self.key, user, &mut self.user);
                Some(self.user.as_str())
            }
            None => None,
        };
        let line = Line {
            time: entry.time,
            caller: &entry.caller,
            caller_identity: match &entry.identity {
                Caller::Anonymous => None,
                Caller::Spiffe(id) | Caller::Dns(id) => Some(id),
            },
            operation: scope.operation.as_str(),
            identity_pool_id: pool.as_deref(),
            login_providers: scope.logins.names(),
            user,
            identity_id: entry.identity_id.as_deref().or(scope.identity_id),
            token_duration_seconds: scope.token_duration_seconds,
            principal_tag_keys: scope.principal_tags.into_iter().flat_map(SecretMap::names),
            outcome: entry.outcome,
            reason: entry.reason.as_deref(),
            cache: entry.cache.map(CacheOutcome::as_str),
            decision: entry.decision.label(),
            trace_id: entry.trace_id,
        };
        self.held.push(|buf| line.write(buf));
    }
}
