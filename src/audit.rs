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
//! a bounded queue, in batches. The log fails closed without ever blocking a call (an
//! audit sink that blocked once hung every request of a well-known secrets
//! server): a developer call takes its place in the queue before it is
//! served, and is refused UNAVAILABLE (`AUDIT_UNAVAILABLE`) when the queue
//! is full, or while the sink fails to write; nothing waits on the sink.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use aws_lc_rs::hmac;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::domain::{
    CacheOutcome, Caller, Error, Operation, OperationName, RequestContext, Scope, Served,
};
use crate::policy;
use crate::telemetry::metrics::metrics;

/// The Logins keys of Cognito's and the public providers' tokens: every
/// other key of a developer call's Logins is its developer provider (a
/// developer Logins map holds one), whose value is the user's identifier.
const PUBLIC_PROVIDERS: [&str; 7] = [
    "cognito-identity.amazonaws.com",
    "graph.facebook.com",
    "accounts.google.com",
    "www.amazon.com",
    "api.twitter.com",
    "www.digits.com",
    "appleid.apple.com",
];

/// How long the writer lets lines gather after writing a batch: under
/// load, a line reaches the sink within about this long.
const BATCH: std::time::Duration = std::time::Duration::from_millis(2);

/// Where the lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditSink {
    /// Standard output (`--audit-log -`), for a log collector.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// The audit log's settings.
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// Where the lines go.
    pub sink: AuditSink,
    /// The key of the user hash.
    pub key: HmacKey,
    /// Lines that may wait for the sink; past them, developer calls are
    /// refused.
    pub queue: usize,
}

/// The key of the `user` hash. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct HmacKey(hmac::Key);

impl HmacKey {
    /// A key of these bytes.
    pub fn new(bytes: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    fn hash(&self, value: &str) -> String {
        hex(hmac::sign(&self.0, value.as_bytes()).as_ref())
    }
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(..)")
    }
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
    caller: String,
    identity: Caller,
    decision: &'static str,
    trace_id: Option<[u8; 16]>,
    asked: Arc<dyn Audited>,
    identity_id: Option<String>,
    outcome: &'static str,
    reason: Option<String>,
    cache: Option<CacheOutcome>,
}

/// The audit log: its queue, and the thread that writes it.
#[derive(Debug)]
pub struct Auditor {
    queue: mpsc::Sender<Entry>,
    /// The sink's last write failed; developer calls are refused until one
    /// succeeds (the refusals' own lines try it).
    failing: Arc<AtomicBool>,
    /// The gRPC code's name an error is answered with.
    code_name: fn(&Error) -> &'static str,
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
    pub fn start(
        settings: AuditSettings,
        code_name: fn(&Error) -> &'static str,
    ) -> Result<Self, String> {
        let sink: Box<dyn Write + Send> = match &settings.sink {
            AuditSink::Stdout => Box::new(std::io::stdout()),
            AuditSink::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("--audit-log: cannot open {}: {e}", path.display()))?,
            ),
        };
        let (queue, lines) = mpsc::channel(settings.queue.max(1));
        let failing = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            sink: std::io::BufWriter::new(sink),
            key: settings.key,
            users: UserHashes::default(),
            failing: failing.clone(),
            buffered: 0,
        };
        std::thread::Builder::new()
            .name("audit-log".to_owned())
            .spawn(move || writer.run(lines))
            .map_err(|e| format!("--audit-log: cannot start its writer: {e}"))?;
        Ok(Self {
            queue,
            failing,
            code_name,
        })
    }

    /// Writes the line of a call refused for who its caller is.
    /// Best effort: a full queue loses the line (counted), as the call is
    /// refused anyway.
    pub fn refused<O: Operation>(
        &self,
        ctx: &RequestContext,
        caller: String,
        decision: &'static str,
        asked: Arc<O>,
        refusal: &Error,
    ) {
        let entry = self.entry(ctx, caller, decision, asked, Some(refusal));
        if self.queue.try_send(entry).is_err() {
            metrics().audit_dropped(1);
        }
    }

    /// A place in the queue for a call about to be served, or the refusal
    /// to answer it with when there is none.
    pub fn reserve<O: Operation>(
        &self,
        ctx: &RequestContext,
        caller: String,
        decision: &'static str,
        asked: &Arc<O>,
    ) -> Result<Reserved, Error> {
        let permit = if self.failing.load(Ordering::Relaxed) {
            None
        } else {
            self.queue.clone().try_reserve_owned().ok()
        };
        match permit {
            Some(permit) => Ok(Reserved {
                permit: Some(permit),
                entry: Some(Box::new(self.entry(
                    ctx,
                    caller,
                    decision,
                    asked.clone(),
                    None,
                ))),
                code_name: self.code_name,
            }),
            None => {
                let refusal = Error::AuditUnavailable { operation: O::NAME };
                metrics().audit_refused();
                self.refused(ctx, caller, decision, asked.clone(), &refusal);
                Err(refusal)
            }
        }
    }

    fn entry<O: Operation>(
        &self,
        ctx: &RequestContext,
        caller: String,
        decision: &'static str,
        asked: Arc<O>,
        refusal: Option<&Error>,
    ) -> Entry {
        Entry {
            time: SystemTime::now(),
            caller,
            identity: ctx.caller.clone(),
            decision,
            trace_id: ctx.trace_id,
            asked,
            identity_id: None,
            outcome: refusal.map_or("OK", self.code_name),
            reason: refusal.map(|e| e.reason().to_owned()),
            cache: None,
        }
    }
}

/// A call's place in the audit queue, written when the call is answered
/// ([`Reserved::answered`]); a call dropped unanswered (its deadline
/// passed, its caller went away) is written as `CANCELLED`.
#[derive(Debug)]
pub struct Reserved {
    /// Both `None` once sent.
    permit: Option<mpsc::OwnedPermit<Entry>>,
    entry: Option<Box<Entry>>,
    code_name: fn(&Error) -> &'static str,
}

impl Reserved {
    /// Writes the call's line with how it was answered.
    pub fn answered<T: crate::domain::Answer>(mut self, served: &Served<T>) {
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
            permit.send(*entry);
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

/// One line, as written.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    caller: &'a str,
    /// The identity the caller showed (a SPIFFE id, a DNS name), when it
    /// showed one: `caller` is the policy's name for it, `unknown` when
    /// the policy has none.
    caller_identity: Option<&'a str>,
    operation: &'static str,
    identity_pool_id: Option<&'a str>,
    login_providers: Vec<&'a str>,
    user: Option<String>,
    identity_id: Option<&'a str>,
    token_duration_seconds: Option<u32>,
    principal_tag_keys: Vec<&'a str>,
    outcome: &'a str,
    reason: Option<&'a str>,
    cache: Option<&'static str>,
    decision: &'a str,
    trace_id: Option<String>,
}

/// The writer thread's state.
struct Writer {
    sink: std::io::BufWriter<Box<dyn Write + Send>>,
    key: HmacKey,
    /// The hashes of users seen lately: a user's calls come in runs (a
    /// token, then its cache hits), and an HMAC costs more than the rest
    /// of a line.
    users: UserHashes,
    failing: Arc<AtomicBool>,
    /// Lines in the buffer, not yet flushed.
    buffered: u64,
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
    /// Writes lines in batches until every sender is gone: what the queue
    /// holds, then a flush, then a pause of [`BATCH`] while more gather.
    /// Only an empty queue is waited on; under load the writer is never
    /// parked on the queue, so a call that queues a line wakes no thread.
    fn run(mut self, mut lines: mpsc::Receiver<Entry>) {
        // Lines written since the last flush.
        let mut pending = false;
        loop {
            loop {
                match lines.try_recv() {
                    Ok(entry) => {
                        self.write(&entry);
                        pending = true;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return self.flush(),
                }
            }
            if pending {
                self.flush();
                pending = false;
                std::thread::sleep(BATCH);
                continue;
            }
            match lines.blocking_recv() {
                Some(entry) => {
                    self.write(&entry);
                    pending = true;
                }
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
        let written = serde_json::to_writer(&mut self.sink, &line)
            .map_err(std::io::Error::from)
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

    /// `lines` were lost: the sink is failing until a flush succeeds.
    fn failed(&mut self, e: &std::io::Error, lines: u64) {
        metrics().audit_dropped(lines);
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

/// `bytes` in lowercase hex.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    text
}

/// The developer provider's user identifier in a developer call's Logins:
/// the value of its one key that is not a public provider, a user pool
/// (`cognito-idp…/pool`) or a SAML provider (an ARN).
fn developer_user<'a>(scope: &Scope<'a>) -> Option<&'a str> {
    if scope.operation != OperationName::GetOpenIdTokenForDeveloperIdentity {
        return None;
    }
    scope
        .logins
        .iter()
        .find(|(name, _)| {
            !PUBLIC_PROVIDERS.contains(name) && !name.contains('/') && !name.starts_with("arn:")
        })
        .map(|(_, value)| value.expose())
}

/// The caller's name in a line when no policy names it: its identity.
pub fn caller_name(caller: &Caller) -> String {
    match caller {
        Caller::Anonymous => policy::ANONYMOUS.to_owned(),
        Caller::Spiffe(id) | Caller::Dns(id) => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::GetOpenIdTokenForDeveloperIdentityInput;

    const POOL: &str = "us-east-1:0a0a0a0a-0000-4000-8000-000000000001";

    fn developer(logins: &[(&str, &str)]) -> GetOpenIdTokenForDeveloperIdentityInput {
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

    #[test]
    fn the_user_is_the_developer_providers_value() {
        let input = developer(&[
            ("accounts.google.com", "google-token"),
            (
                "cognito-idp.us-east-1.amazonaws.com/us-east-1_abc",
                "idp-token",
            ),
            ("arn:aws:iam::123456789012:saml-provider/corp", "saml"),
            ("login.shop.example", "user-42"),
        ]);
        assert_eq!(developer_user(&Operation::scope(&input)), Some("user-42"));
        let only_public = developer(&[("graph.facebook.com", "fb-token")]);
        assert_eq!(developer_user(&Operation::scope(&only_public)), None);
    }

    #[test]
    fn the_same_user_gives_the_same_hash_under_the_same_key() {
        let key = HmacKey::new(b"0123456789abcdef");
        assert_eq!(key.hash("user-42"), key.hash("user-42"));
        assert_ne!(key.hash("user-42"), key.hash("user-43"));
        assert_ne!(
            key.hash("user-42"),
            HmacKey::new(b"another key, another hash").hash("user-42")
        );
        assert_eq!(key.hash("user-42").len(), 64);
    }

    #[tokio::test]
    async fn a_call_dropped_unanswered_is_written_as_cancelled() {
        let path = std::env::temp_dir().join(format!("audit-unit-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let auditor = Auditor::start(
            AuditSettings {
                sink: AuditSink::File(path.clone()),
                key: HmacKey::new(b"0123456789abcdef"),
                queue: 4,
            },
            |_| "UNUSED",
        )
        .unwrap();
        let ctx = RequestContext {
            caller: Caller::Dns("checkout.shop.svc".into()),
            trace_id: Some([0xab; 16]),
        };
        let input = Arc::new(developer(&[("login.shop.example", "user-42")]));
        let reserved = auditor
            .reserve(&ctx, "checkout".to_owned(), "allow", &input)
            .unwrap();
        // The deadline passed: the call's future, and its place, dropped.
        drop(reserved);
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if !text.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["outcome"], "CANCELLED");
        assert_eq!(line["reason"], "CALL_DROPPED");
        assert_eq!(line["caller_identity"], "checkout.shop.svc");
        assert_eq!(line["trace_id"], "ab".repeat(16));
        assert!(!text.contains("user-42"), "{text}");
        std::fs::remove_file(&path).unwrap();
    }
}
