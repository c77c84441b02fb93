//! The writer thread: lines from the queue to the sink, in batches.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use super::line::{Line, hex};
use super::{Entry, HmacKey, developer_user};
use crate::domain::{CacheOutcome, Caller};
use crate::policy;
use crate::telemetry::metrics::metrics;

/// How long the writer lets lines gather after writing a batch: under
/// load, a line reaches the sink within about this long.
const BATCH: std::time::Duration = std::time::Duration::from_millis(2);

/// The writer thread's state.
pub(super) struct Writer {
    sink: std::io::BufWriter<Box<dyn Write + Send>>,
    key: HmacKey,
    /// The hashes of users seen lately: a user's calls come in runs (a
    /// token, then its cache hits), and an HMAC costs more than the rest
    /// of a line.
    users: UserHashes,
    failing: Arc<AtomicBool>,
    /// Lines in the buffer, not yet flushed.
    buffered: u64,
    /// A write failed, perhaps part way through a line: the next line
    /// starts on a line of its own.
    torn: bool,
}

/// Users' hashes, forgotten all at once past [`UserHashes::MAX`].
#[derive(Default)]
struct UserHashes(std::collections::HashMap<Box<str>, Box<str>>);

impl UserHashes {
    const MAX: usize = 4096;

    fn hash(&mut self, key: &HmacKey, user: &str) -> String {
        if let Some(hash) = self.0.get(user) {
            return hash.to_string();
        }
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        let hash = key.hash(user);
        self.0.insert(user.into(), hash.as_str().into());
        hash
    }
}

impl Writer {
    /// A writer of `sink`, that raises `failing` while it cannot write.
    pub(super) fn new(sink: Box<dyn Write + Send>, key: HmacKey, failing: Arc<AtomicBool>) -> Self {
        Self {
            sink: std::io::BufWriter::new(sink),
            key,
            users: UserHashes::default(),
            failing,
            buffered: 0,
            torn: false,
        }
    }

    /// Writes lines in batches until every sender is gone: what the queue
    /// holds, then a flush, then a pause of [`BATCH`] while more gather.
    /// Only an empty queue is waited on; under load the writer is never
    /// parked on the queue, so a call that queues a line wakes no thread.
    /// Asked to finish (`None`), it writes what the queue holds and stops.
    pub(super) fn run(mut self, mut lines: mpsc::Receiver<Option<Entry>>) {
        // Lines written since the last flush.
        let mut pending = false;
        let mut finishing = false;
        loop {
            loop {
                match lines.try_recv() {
                    Ok(Some(entry)) => {
                        self.write(&entry);
                        pending = true;
                    }
                    Ok(None) => finishing = true,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return self.flush(),
                }
            }
            if finishing {
                return self.flush();
            }
            if pending {
                self.flush();
                pending = false;
                std::thread::sleep(BATCH);
                continue;
            }
            match lines.blocking_recv() {
                Some(Some(entry)) => {
                    self.write(&entry);
                    pending = true;
                }
                Some(None) => finishing = true,
                None => return,
            }
        }
    }

    fn write(&mut self, entry: &Entry) {
        let scope = entry.asked.scope();
        let pool = policy::pool_of(&scope);
        let line = Line {
            time: humantime::format_rfc3339_micros(entry.time).to_string(),
            caller: &entry.caller,
            caller_identity: match &entry.identity {
                Caller::Anonymous => None,
                Caller::Spiffe(id) | Caller::Dns(id) => Some(id),
            },
            operation: scope.operation.as_str(),
            identity_pool_id: pool.as_deref(),
            login_providers: scope.logins.names().collect(),
            user: developer_user(&scope).map(|user| self.users.hash(&self.key, user)),
            identity_id: entry.identity_id.as_deref().or(scope.identity_id),
            token_duration_seconds: scope.token_duration_seconds,
            principal_tag_keys: scope
                .principal_tags
                .map(|tags| tags.names().collect())
                .unwrap_or_default(),
            outcome: entry.outcome,
            reason: entry.reason.as_deref(),
            cache: entry.cache.map(CacheOutcome::as_str),
            decision: entry.decision,
            trace_id: entry.trace_id.map(|id| hex(&id)),
        };
        let start = if std::mem::take(&mut self.torn) {
            &b"\n"[..]
        } else {
            b""
        };
        let written = self
            .sink
            .write_all(start)
            .and_then(|()| serde_json::to_writer(&mut self.sink, &line).map_err(Into::into))
            .and_then(|()| self.sink.write_all(b"\n"));
        match written {
            Ok(()) => self.buffered += 1,
            Err(e) => self.failed(&e, 1),
        }
    }

    fn flush(&mut self) {
        let lines = std::mem::take(&mut self.buffered);
        match self.sink.flush() {
            Ok(()) => {
                metrics().audit_written(lines);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::warn!("the audit log is written again: developer calls are served");
                }
            }
            Err(e) => self.failed(&e, lines),
        }
    }

    /// `lines` were lost, and with them every line the buffer held: the
    /// sink is failing until a flush succeeds.
    fn failed(&mut self, e: &std::io::Error, lines: u64) {
        metrics().audit_dropped(lines + std::mem::take(&mut self.buffered));
        self.torn = true;
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "the audit log cannot be written ({e}): developer calls are refused until it can"
            );
        }
        // What the buffer holds is lost with the failed write: start anew,
        // so that the next line is tried on its own.
        let failed = std::mem::replace(
            &mut self.sink,
            std::io::BufWriter::new(Box::new(std::io::sink())),
        );
        let (sink, _lost) = failed.into_parts();
        self.sink = std::io::BufWriter::new(sink);
    }
}
