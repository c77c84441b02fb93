//! Noticing that files have changed: their directories watched, and a
//! periodic check besides.

use std::path::PathBuf;
use std::sync::PoisonError;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

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
                let mut changed = changed.lock().unwrap_or_else(PoisonError::into_inner);
                // A reload that panics (its file's building is caught
                // already; this is for anything else) ends that reload,
                // never the watch.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut *changed)).is_err() {
                    tracing::error!("a reload failed unexpectedly; the watch goes on");
                }
            })
            .await;
        }
    }))
}

/// The name Kubernetes swaps to update a mounted Secret or ConfigMap: the
/// files are links through it, so their own names see no event.
const KUBERNETES_DATA: &str = "..data";

/// Whether `event` concerns one of the watched files: a change (not a read)
/// of a path whose name is one of `names` (or Kubernetes' `..data`). Other
/// files in the same directories (a log kept beside the policy, an
/// editor's swap file) are none of the watch's business.
fn concerns(event: &notify::Event, names: &[std::ffi::OsString]) -> bool {
    // Reading a file is an event too (inotify's open, access and close):
    // the reload's own reads must not set off another reload.
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|path| {
        path.file_name()
            .is_some_and(|name| name == KUBERNETES_DATA || names.iter().any(|n| n == name))
    })
}

fn watch(paths: &[PathBuf], tx: mpsc::UnboundedSender<()>) -> Option<RecommendedWatcher> {
    let names: Vec<std::ffi::OsString> = paths
        .iter()
        .filter_map(|path| path.file_name().map(ToOwned::to_owned))
        .collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| concerns(&e, &names)) {
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
    async fn writes_to_other_files_in_the_directory_are_no_change() {
        let dir = std::env::temp_dir().join(format!("reload-beside-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("policy.yaml");
        std::fs::write(&file, "a").unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let task = spawn(
            std::slice::from_ref(&file),
            Duration::from_secs(3600),
            move || {
                counted.fetch_add(1, Ordering::Relaxed);
            },
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A log file kept beside the policy, written line by line, and an
        // editor's swap file.
        let log = dir.join("gateway.log");
        for i in 0..200 {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            writeln!(f, "line {i}").unwrap();
        }
        std::fs::write(dir.join(".policy.yaml.swp"), "x").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            calls.load(Ordering::Relaxed),
            0,
            "other files are not the policy"
        );
        // Kubernetes' swap of `..data` is a change of every file through it.
        std::os::unix::fs::symlink(".", dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        std::fs::write(&file, "b").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(calls.load(Ordering::Relaxed), 2);
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
