//! Values built from files that a running gateway takes up again when the
//! files change, without a restart: the policy, the TLS certificates.
//!
//! A kind of such files says how it is read and what it builds ([`Files`]).
//! The configuration reads and checks them once, into plain data
//! ([`Loaded`]); the running gateway puts that in force ([`Live`]), and
//! reloads it, saying and counting each outcome, whenever the files change
//! ([`Live::watch`]).
//!
//! Each file's directory is watched, not the file: Kubernetes updates a
//! mounted Secret or ConfigMap by swapping a `..data` symlink in the
//! directory, and a watch on the old file would never fire again. A
//! periodic check backs the watch up (a file system without inotify, an
//! event lost): whoever is told must compare what it reads with what it
//! has, and do nothing when they are the same.

mod live;
pub(crate) mod outcome;
mod watch;

pub(crate) use live::{CHECK_EVERY, Files, Live, Loaded, catching_panics};
pub use watch::{Watch, spawn};
