//! Noticing that files a running gateway uses have changed, without a
//! restart: the policy, the TLS certificates.
//!
//! Each file's directory is watched, not the file: Kubernetes updates a
//! mounted Secret or ConfigMap by swapping a `..data` symlink in the
//! directory, and a watch on the old file would never fire again. A
//! periodic check backs the watch up (a file system without inotify, an
//! event lost): whoever is told must compare what it reads with what it
//! has, and do nothing when they are the same.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The files are as they were.
    Unchanged,
    /// What they hold is in force.
    Replaced,
    /// They do not load (why); what was in force stays.
    Refused(String),
}

/// A value built from files, replaced whole when they change: what a
/// reload compares (the BLAKE3 of the files' bytes, so that unchanged
/// files are not parsed again on every check) and what it puts in force.
#[derive(Debug)]
pub struct InForce<T> {
    current: ArcSwap<T>,
    digest: Mutex<[u8; 32]>,
}

impl<T> InForce<T> {
    /// `value`, built from files whose bytes have `digest`.
    pub fn new(value: T, digest: [u8; 32]) -> Self {
        Self {
            current: ArcSwap::from_pointee(value),
            digest: Mutex::new(digest),
        }
    }

    /// The value in force now.
    pub fn current(&self) -> Guard<Arc<T>> {
        self.current.load()
    }

    /// The value in force now, owned.
    pub fn current_full(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Puts what `build` makes in force when `digest` (of the files as
    /// they are now) differs from the one in force. Files that do not
    /// build keep the value in force, and are not tried again until they
    /// change once more (half a rotation, then the other half).
    pub fn replace_if_changed(
        &self,
        digest: [u8; 32],
        build: impl FnOnce() -> Result<T, String>,
    ) -> Reloaded {
        let Ok(mut in_force) = self.digest.lock() else {
            return Reloaded::Refused("the state in force is poisoned".to_owned());
        };
        if *in_force == digest {
            return Reloaded::Unchanged;
        }
        *in_force = digest;
        match build() {
            Ok(value) => {
                self.current.store(Arc::new(value));
                Reloaded::Replaced
            }
            Err(why) => Reloaded::Refused(why),
        }
    }
}

/// Events come in bursts (a write is several; a Secret's update is a
/// dozen): they are gathered for this long before `changed` is called.
const SETTLE: Duration = Duration::from_millis(50);

/// A running watch; dropping it stops it.
#[derive(Debug)]
pub struct Watch(JoinHandle<()>);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Calls `changed` soon after anything in the directories of `paths`
/// changes, and every `every` in any case, until the [`Watch`] is dropped.
/// `changed` reads and parses files: it runs on the blocking pool, never
/// on a thread that serves calls. Watching is best effort: without it
/// (said once in the log) the periodic check still runs.
pub fn spawn(paths: &[PathBuf], every: Duration, changed: impl FnMut() + Send + 'static) -> Watch {
    let changed = std::sync::Arc::new(std::sync::Mutex::new(changed));
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watcher = watch(paths, tx);
    Watch(tokio::spawn(async move {
        // Kept for as long as the task runs: dropping it stops the watch.
        let _watcher = watcher;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        // False once the watch is gone (or never started): then only the
        // periodic check runs.
        let mut watching = true;
        loop {
            tokio::select! {
                event = rx.recv(), if watching => {
                    if event.is_none() {
                        watching = false;
                        continue;
                    }
                    tokio::time::sleep(SETTLE).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = ticks.tick() => {}
            }
            let changed = changed.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(mut changed) = changed.lock() {
                    changed();
                }
            })
            .await;
        }
    }))
}

fn watch(paths: &[PathBuf], tx: mpsc::UnboundedSender<()>) -> Option<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading a file is an event too (inotify's open, access and
        // close): the reload's own reads must not set off another reload.
        if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = tx.send(());
        }
    })
    .map_err(|e| tracing::warn!("cannot watch files for changes ({e}); checking them periodically"))
    .ok()?;
    for path in paths {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(
                directory = %dir.display(),
                "cannot watch for changes ({e}); checking periodically"
            );
        }
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn reading_the_files_is_no_change_and_writing_one_is() {
        let dir = std::env::temp_dir().join(format!("reload-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("policy.yaml");
        std::fs::write(&file, "a").unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let (counted, read) = (calls.clone(), file.clone());
        // Each call reads the file, as a reload does.
        let task = spawn(
            std::slice::from_ref(&file),
            Duration::from_secs(3600),
            move || {
                counted.fetch_add(1, Ordering::Relaxed);
                let _ = std::fs::read(&read);
            },
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        for _ in 0..3 {
            let _ = std::fs::read(&file).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(calls.load(Ordering::Relaxed), 0, "reads are not changes");
        std::fs::write(&file, "b").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // One change, and the reads of its reload set off nothing more.
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        drop(task);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn without_a_watch_the_periodic_check_goes_on() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        // A path whose directory does not exist: nothing can be watched.
        let task = spawn(
            &[PathBuf::from("/nonexistent-dir-for-reload-test/file")],
            Duration::from_millis(20),
            move || {
                counted.fetch_add(1, Ordering::Relaxed);
            },
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(task);
        assert!(calls.load(Ordering::Relaxed) >= 3, "{calls:?}");
    }
}
