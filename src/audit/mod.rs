//! The audit log (`--audit-log`): one JSON line for every call of the
//! developer operation, which mints a token for any user of a pool, and
//! for every call refused for who its caller is (authentication, policy,
//! rate limit), whatever its operation.
//!
//! A line names the caller, the pool, the Logins providers (never their
//! values), the user as an HMAC-SHA256 of the developer provider's user
//! identifier (keyed by `--audit-hmac-key-file`, so that the same user
//! gives the same hash and the log never holds the identifier), the
//! identity, the duration, the principal tag keys, the outcome and how the
//! answer was reached.
//!
//! Lines are written off the request path, by a thread of their own, from
//! a bounded queue, in batches. The log fails closed without ever blocking
//! a call (an audit sink that blocked once hung every request of a
//! well-known secrets server): a developer call takes its place in the
//! queue before it is served, and is refused UNAVAILABLE
//! (`AUDIT_UNAVAILABLE`) when the queue is full, or while the sink fails
//! to write; nothing waits on the sink. The lines of calls answered are
//! kept while the sink fails and tried again; past
//! `--audit-fallback-after`, or at shutdown, they go to standard error,
//! marked (`writer.rs`, `held.rs`).

mod held;
mod line;
mod metrics;
mod user;
mod writer;

use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::domain::{CacheOutcome, Caller, Error, Operation, RequestContext, Scope, Served};
use crate::policy::{self, Verdict};
use metrics::AuditMetrics;
pub(crate) use user::HmacKey;
use writer::Writer;

/// Where the lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AuditSink {
    /// Standard output (`--audit-log -`), for a log collector.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// The audit log's settings.
#[derive(Clone, Debug)]
pub(crate) struct AuditSettings {
    /// Where the lines go.
    pub sink: AuditSink,
    /// The key of the user hash.
    pub key: HmacKey,
    /// Lines that may wait for the sink; past them, developer calls are
    /// refused.
    pub queue: usize,
    /// How long the sink may fail before the lines the writer holds go to
    /// standard error, marked `audit-fallback: `.
    pub(crate) fallback_after: std::time::Duration,
}

/// What an audited call asked for, read when its line is written: the
/// call's validated input, shared, not copied.
trait Audited: Send + Sync {
    fn scope(&self) -> Scope<'_>;
}

impl<O: Operation> Audited for O {
    fn scope(&self) -> Scope<'_> {
        Operation::scope(self)
    }
}

/// A line waiting to be written.
struct Entry {
    time: SystemTime,
    caller: Arc<str>,
    identity: Caller,
    decision: Verdict,
    trace_id: Option<[u8; 16]>,
    asked: Arc<dyn Audited>,
    identity_id: Option<String>,
    outcome: &'static str,
    reason: Option<String>,
    cache: Option<CacheOutcome>,
}

/// The audit log: its queue, and the thread that writes it.
#[derive(Debug)]
pub(crate) struct Auditor {
    /// `None` on the queue only wakes the writer ([`AuditWriter::finish`]).
    queue: mpsc::Sender<Option<Entry>>,
    /// Places in the queue that refusals' lines leave free, for developer
    /// calls: a flood of refused calls must not crowd them out.
    kept_for_calls: usize,
    /// The sink's last write failed; developer calls are refused until one
    /// succeeds (the writer tries again the lines it holds, or, once they
    /// went to the fallback, the refusals' own lines).
    failing: Arc<AtomicBool>,
    /// The gRPC code's name an error is answered with.
    code_name: fn(&Error) -> &'static str,
    metrics: AuditMetrics,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("caller", &self.caller)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl Auditor {
    /// Opens the sink and starts the writer. `code_name` names the gRPC
    /// code of an error (the gRPC layer's mapping, handed in).
    pub(crate) fn start(
        settings: AuditSettings,
        code_name: fn(&Error) -> &'static str,
    ) -> Result<(Self, AuditWriter), String> {
        let sink: Box<dyn Write + Send> = match &settings.sink {
            // Its own descriptor, not `std::io::stdout()`, whose buffer
            // would keep or retry bytes behind the writer's back.
            AuditSink::Stdout => Box::new(std::fs::File::from(
                std::io::stdout()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| format!("--audit-log -: cannot use standard output: {e}"))?,
            )),
            AuditSink::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("--audit-log: cannot open {}: {e}", path.display()))?,
            ),
        };
        let capacity = settings.queue.max(1);
        let (queue, lines) = mpsc::channel(capacity);
        let failing = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let metrics = AuditMetrics::default();
        let outlets = writer::Outlets {
            sink,
            fallback: Box::new(std::io::stderr()),
            fallback_after: settings.fallback_after,
            failing: failing.clone(),
            stop: stop.clone(),
            metrics: metrics.clone(),
        };
        let writer = Writer::new(outlets, settings.key);
        let (done, finished) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("audit-log".to_owned())
            .spawn(move || {
                writer.run(lines);
                let _ = done.send(());
            })
            .map_err(|e| format!("--audit-log: cannot start its writer: {e}"))?;
        let auditor = Self {
            queue: queue.clone(),
            kept_for_calls: capacity / 4,
            failing,
            code_name,
            metrics,
        };
        let writer = AuditWriter {
            queue,
            stop,
            thread: thread.thread().clone(),
            finished,
        };
        Ok((auditor, writer))
    }

    /// Registers its metrics in `registry`.
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// Writes the line of a call refused for who its caller is.
    /// Best effort: a full queue loses the line (counted), as the call is
    /// refused anyway.
    pub(crate) fn refused<O: Operation>(
        &self,
        ctx: &RequestContext,
        caller: Arc<str>,
        verdict: Verdict,
        asked: Arc<O>,
        refusal: &Error,
    ) {
        if self.queue.capacity() <= self.kept_for_calls {
            self.metrics.dropped(1);
            return;
        }
        let mut entry = self.entry(ctx, caller, verdict, asked, Some(refusal));
        entry.time = SystemTime::now();
        if self.queue.try_send(Some(entry)).is_err() {
            self.metrics.dropped(1);
        }
    }

    /// A place in the queue for a call about to be served, or, when there
    /// is none, the refusal to answer it with if its line is `required`
    /// (the developer operation's); a line not required is lost (counted)
    /// and the call served.
    pub(crate) fn reserve<O: Operation>(
        &self,
        ctx: &RequestContext,
        caller: Arc<str>,
        verdict: Verdict,
        asked: &Arc<O>,
        required: bool,
    ) -> Result<Option<Reserved>, Error> {
        let permit = if self.failing.load(Ordering::Relaxed) {
            None
        } else {
            self.queue.clone().try_reserve_owned().ok()
        };
        match permit {
            None if !required => {
                self.metrics.dropped(1);
                Ok(None)
            }
            Some(permit) => Ok(Some(Reserved {
                permit: Some(permit),
                entry: Some(Box::new(self.entry(
                    ctx,
                    caller,
                    verdict,
                    asked.clone(),
                    None,
                ))),
                code_name: self.code_name,
            })),
            None => {
                let refusal = Error::AuditUnavailable { operation: O::NAME };
                self.metrics.refused();
                self.refused(ctx, caller, verdict, asked.clone(), &refusal);
                Err(refusal)
            }
        }
    }

    /// The entry of a call; its time is set when it is sent.
    fn entry<O: Operation>(
        &self,
        ctx: &RequestContext,
        caller: Arc<str>,
        verdict: Verdict,
        asked: Arc<O>,
        refusal: Option<&Error>,
    ) -> Entry {
        Entry {
            time: SystemTime::UNIX_EPOCH,
            caller,
            identity: ctx.caller.clone(),
            decision: verdict,
            trace_id: ctx.trace_id,
            asked,
            identity_id: None,
            outcome: refusal.map_or("OK", self.code_name),
            reason: refusal.map(|e| e.reason().to_owned()),
            cache: None,
        }
    }
}

/// The writer thread, to be finished when the server has stopped.
#[derive(Debug)]
pub(crate) struct AuditWriter {
    /// Only to wake a writer waiting for a line.
    queue: mpsc::Sender<Option<Entry>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::Thread,
    finished: tokio::sync::oneshot::Receiver<()>,
}

impl AuditWriter {
    /// Asks the writer to write what the queue holds and stop, and waits
    /// for it, `within` at most: lines still queued at shutdown (the calls
    /// the drain abandoned are written `CANCELLED`) reach the sink before
    /// the process exits, or, if it still fails, standard error.
    pub(crate) async fn finish(self, within: std::time::Duration) {
        self.stop.store(true, Ordering::Release);
        // Wakes a writer pausing before it tries a failing sink again.
        self.thread.unpark();
        // Wakes a writer waiting for a line; a full queue needs no waking.
        let _ = self.queue.try_send(None);
        if tokio::time::timeout(within, self.finished).await.is_err() {
            tracing::warn!("the audit log's last lines were not all written in time");
        }
    }
}

/// A call's place in the audit queue, written when the call is answered
/// ([`Reserved::answered`]); a call dropped unanswered (its deadline
/// passed, its caller went away) is written as `CANCELLED`.
#[derive(Debug)]
pub(crate) struct Reserved {
    /// Both `None` once sent.
    permit: Option<mpsc::OwnedPermit<Option<Entry>>>,
    entry: Option<Box<Entry>>,
    code_name: fn(&Error) -> &'static str,
}

impl Reserved {
    /// Writes the call's line with how it was answered.
    pub(crate) fn answered<T: crate::domain::Answer>(mut self, served: &Served<T>) {
        let code_name = self.code_name;
        self.send(|entry| {
            entry.cache = served.cache;
            match &served.result {
                Ok(answer) => entry.identity_id = Some(answer.identity_id().to_owned()),
                Err(e) => {
                    entry.outcome = code_name(e);
                    entry.reason = Some(e.reason().to_owned());
                }
            }
        });
    }

    fn send(&mut self, finish: impl FnOnce(&mut Entry)) {
        if let (Some(permit), Some(mut entry)) = (self.permit.take(), self.entry.take()) {
            entry.time = SystemTime::now();
            finish(&mut entry);
            permit.send(Some(*entry));
        }
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.send(|entry| {
            entry.outcome = "CANCELLED";
            entry.reason = Some("CALL_DROPPED".to_owned());
        });
    }
}

/// The caller's name in a line when no policy names it: its identity.
pub(crate) fn caller_name(caller: &Caller) -> Arc<str> {
    match caller {
        Caller::Anonymous => policy::ANONYMOUS.into(),
        Caller::Spiffe(id) | Caller::Dns(id) => id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GetOpenIdTokenForDeveloperIdentityInput, OperationName};

    const POOL: &str = "us-east-1:0a0a0a0a-0000-4000-8000-000000000001";

    /// A developer call of the ready pool with `logins`.
    pub(super) fn developer(logins: &[(&str, &str)]) -> GetOpenIdTokenForDeveloperIdentityInput {
        GetOpenIdTokenForDeveloperIdentityInput::parse(
            Some(POOL.to_owned()),
            None,
            logins
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            [],
            None,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_call_dropped_unanswered_is_written_as_cancelled() {
        let path = std::env::temp_dir().join(format!("audit-unit-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let (auditor, writer) = Auditor::start(
            AuditSettings {
                sink: AuditSink::File(path.clone()),
                key: HmacKey::new(b"0123456789abcdef"),
                queue: 4,
                fallback_after: std::time::Duration::from_secs(10),
            },
            |_| "UNUSED",
        )
        .unwrap();
        let ctx = RequestContext {
            caller: Caller::Dns("checkout.shop.svc".into()),
            peer: None,
            trace_id: Some([0xab; 16]),
            deadline: None,
        };
        let input = Arc::new(developer(&[("login.shop.example", "user-42")]));
        let reserved = auditor
            .reserve(&ctx, "checkout".into(), Verdict::Allow, &input, true)
            .unwrap();
        // The deadline passed: the call's future, and its place, dropped.
        drop(reserved);
        // At shutdown the writer writes what the queue holds, then stops.
        writer.finish(std::time::Duration::from_secs(5)).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["outcome"], "CANCELLED");
        assert_eq!(line["reason"], "CALL_DROPPED");
        assert_eq!(line["caller_identity"], "checkout.shop.svc");
        assert_eq!(line["trace_id"], "ab".repeat(16));
        assert!(!text.contains("user-42"), "{text}");
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn a_flood_of_refusals_leaves_places_for_developer_calls() {
        let dir = std::env::temp_dir().join(format!("audit-flood-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("audit.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // A reader that never reads: once the pipe is full, the writer
        // blocks, as on a stuck sink.
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::File::open(fifo).unwrap())
        };
        let (auditor, _writer) = Auditor::start(
            AuditSettings {
                sink: AuditSink::File(fifo),
                key: HmacKey::new(b"0123456789abcdef"),
                queue: 8,
                fallback_after: std::time::Duration::from_secs(10),
            },
            |_| "PERMISSION_DENIED",
        )
        .unwrap();
        let _held_open = reader.join().unwrap();
        let ctx = RequestContext {
            caller: Caller::Anonymous,
            peer: None,
            trace_id: None,
            deadline: None,
        };
        let input = Arc::new(developer(&[("login.shop.example", "user-42")]));
        let refusal = Error::CallerUnauthenticated {
            operation: OperationName::GetOpenIdTokenForDeveloperIdentity,
            why: "no rule".to_owned(),
        };
        // Refusals until the pipe and the writer's buffer are full and the
        // writer blocks: then the queue fills, as far as refusals may.
        let refuse = || {
            auditor.refused(
                &ctx,
                "anonymous".into(),
                Verdict::Deny { dry_run: false },
                input.clone(),
                &refusal,
            );
        };
        for _ in 0..2_000 {
            (0..10).for_each(|_| refuse());
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            if auditor.queue.capacity() <= 2 {
                // Still full once the writer has had time to drain it.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                if auditor.queue.capacity() <= 2 {
                    break;
                }
            }
        }
        let places = auditor.queue.capacity();
        assert_eq!(places, 2, "a quarter of the queue is kept for calls");
        for _ in 0..places {
            let reserved = auditor.reserve(&ctx, "checkout".into(), Verdict::Allow, &input, true);
            // Kept until the end of the test: a dropped place is a line.
            std::mem::forget(reserved.unwrap().expect("a place"));
        }
        let full = auditor.reserve(&ctx, "checkout".into(), Verdict::Allow, &input, true);
        assert!(matches!(full, Err(Error::AuditUnavailable { .. })));
        // A line not required is lost, and its call served.
        let optional = auditor.reserve(
            &ctx,
            "checkout".into(),
            Verdict::Deny { dry_run: true },
            &input,
            false,
        );
        assert!(matches!(optional, Ok(None)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
