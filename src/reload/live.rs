//! A value built from files: read and checked once ([`Loaded`], plain
//! data), then in force and reloaded when the files change ([`Live`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};

use super::outcome::{Reloaded, Reloads};
use super::watch::{Watch, spawn};

/// How often files in force are checked besides the watch on their
/// directories: a mounted ConfigMap or Secret takes up to a minute to
/// change anyway, so a lost event costs little more than that.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(10);

/// A kind of files a value is built from: which they are, how they are
/// read, and what they build.
pub trait Files: Send + Sync + 'static {
    /// What they build.
    type Value: Send + Sync + 'static;
    /// What is read of them, kept only until it is built.
    type Bytes;
    /// What they hold, as a reload's log lines name it.
    const WHAT: &'static str;
    /// The files, whose directories are watched. None: a value given in
    /// code, never read again.
    fn paths(&self) -> Vec<PathBuf>;
    /// Their bytes, and one digest of them all; an error names the file.
    fn read(&self) -> Result<(Self::Bytes, [u8; 32]), String>;
    /// What `bytes` hold, checked; an error names the file, and shows
    /// nothing of what it holds.
    fn build(&self, bytes: &Self::Bytes) -> Result<Self::Value, String>;
}

/// Files read and checked once, and what they built: plain data, which a
/// configuration checks before anything runs and a [`Live`] then puts in
/// force as it is (the files are not read a second time). Its `Debug` is
/// the files'.
pub struct Loaded<F: Files> {
    files: F,
    value: Arc<F::Value>,
    digest: [u8; 32],
}

impl<F: Files> Loaded<F> {
    /// Reads `files` and builds what they hold; a panic while building is
    /// a refusal too (at start-up a bad configuration, not a crash).
    pub fn load(files: F) -> Result<Self, String> {
        let (bytes, digest) = files.read()?;
        let value = catching_panics(|| files.build(&bytes))?;
        Ok(Self {
            files,
            value: Arc::new(value),
            digest,
        })
    }

    /// `value` given in code, from files that name no path: never reloaded.
    pub fn given(files: F, value: F::Value) -> Self {
        Self {
            files,
            value: Arc::new(value),
            digest: [0; 32],
        }
    }

    /// The files.
    pub fn files(&self) -> &F {
        &self.files
    }

    /// What they built.
    pub fn value(&self) -> &F::Value {
        &self.value
    }
}

impl<F: Files + Clone> Clone for Loaded<F> {
    fn clone(&self) -> Self {
        Self {
            files: self.files.clone(),
            value: self.value.clone(),
            digest: self.digest,
        }
    }
}

impl<F: Files + std::fmt::Debug> std::fmt::Debug for Loaded<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// What files built, in force, and replaced whole when they change and
/// build; its reloads counted by outcome ([`Live::reloads`], which its
/// owner registers under its own name). Its `Debug` is the files'.
pub struct Live<F: Files> {
    files: F,
    in_force: InForce<F::Value>,
    /// Counts the values put in force, for whoever must check something
    /// against each new one.
    changes: tokio::sync::watch::Sender<u64>,
    reloads: Reloads,
}

impl<F: Files> Live<F> {
    /// Puts what `loaded` built in force.
    pub fn new(loaded: Loaded<F>) -> Self {
        Self {
            files: loaded.files,
            in_force: InForce {
                current: ArcSwap::new(loaded.value),
                digest: Mutex::new(loaded.digest),
            },
            changes: tokio::sync::watch::Sender::new(0),
            reloads: Reloads::default(),
        }
    }

    /// The value in force now.
    pub(crate) fn current(&self) -> Guard<Arc<F::Value>> {
        self.in_force.current()
    }

    /// The files.
    pub fn files(&self) -> &F {
        &self.files
    }

    /// Told of every value put in force from now on.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Its reloads that changed something, by outcome.
    pub fn reloads(&self) -> &Reloads {
        &self.reloads
    }

    /// Reads the files again and puts what they build in force when they
    /// changed and build; otherwise what is in force stays.
    pub fn reload(&self) -> Reloaded {
        if self.files.paths().is_empty() {
            return Reloaded::Unchanged;
        }
        let (bytes, digest) = match self.files.read() {
            Ok(read) => read,
            Err(why) => return Reloaded::Refused(why),
        };
        let reloaded = self
            .in_force
            .replace_if_changed(digest, || self.files.build(&bytes));
        if reloaded == Reloaded::Replaced {
            self.changes.send_modify(|n| *n += 1);
        }
        reloaded
    }

    /// Reloads whenever one of the files changes (their directories
    /// watched, and checked every `every` as well), saying each outcome in
    /// the log and counting it in [`Live::reloads`], until the watch is
    /// dropped. `None` when no file backs the value.
    pub fn watch(self: Arc<Self>, every: Duration) -> Option<Watch> {
        let paths = self.files.paths();
        if paths.is_empty() {
            return None;
        }
        Some(spawn(&paths, every, move || {
            self.reloads.report(F::WHAT, self.reload());
        }))
    }
}

impl<F: Files + std::fmt::Debug> std::fmt::Debug for Live<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// A value built from files, replaced whole when they change: what a
/// reload compares (the BLAKE3 of the files' bytes, so that unchanged
/// files are not parsed again on every check) and what it puts in force.
struct InForce<T> {
    current: ArcSwap<T>,
    digest: Mutex<[u8; 32]>,
}

impl<T> InForce<T> {
    /// The value in force now.
    fn current(&self) -> Guard<Arc<T>> {
        self.current.load()
    }

    /// Puts what `build` makes in force when `digest` (of the files as
    /// they are now) differs from the one in force. Files that do not
    /// build keep the value in force, and are not tried again until they
    /// change once more (half a rotation, then the other half).
    ///
    /// No lock is held while `build` runs, and a panic in it is caught and
    /// refused like any bad file: whatever a file holds, the value in force
    /// stays usable and the next good file still takes effect.
    fn replace_if_changed(
        &self,
        digest: [u8; 32],
        build: impl FnOnce() -> Result<T, String>,
    ) -> Reloaded {
        if *self.digest() == digest {
            return Reloaded::Unchanged;
        }
        let built = catching_panics(build);
        *self.digest() = digest;
        match built {
            Ok(value) => {
                self.current.store(Arc::new(value));
                Reloaded::Replaced
            }
            Err(why) => Reloaded::Refused(why),
        }
    }

    /// The digest in force. A panic while it was held (there is nothing in
    /// the few lines that hold it that could) would leave a digest still
    /// worth reading: poisoning is not an error here.
    fn digest(&self) -> std::sync::MutexGuard<'_, [u8; 32]> {
        self.digest.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What `build` returns, or its panic as an error: a value in a file that
/// the checks missed must cost that file, not the process or every later
/// reload.
pub(crate) fn catching_panics<T>(build: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(build)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        Err(format!("could not be built ({what})"))
    })
}
