//! The policy file: read and checked once ([`LoadedPolicy`], what the
//! configuration hands over), then in force and replaced whole when the
//! file changes ([`LivePolicy`]): a file that does not load leaves the one
//! in force as it is.

use std::path::{Path, PathBuf};

use prometheus_client::registry::Registry;

use super::{Policy, PolicyMetrics};
use crate::reload::{self, Files, Live, Loaded};

/// The policy file, and the metrics every policy read from it counts in.
#[derive(Clone)]
pub struct PolicyFile {
    /// `None` for a policy given in code (tests).
    path: Option<PathBuf>,
    /// Shared by every policy put in force.
    metrics: PolicyMetrics,
}

impl std::fmt::Debug for PolicyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Files for PolicyFile {
    type Value = Policy;
    type Bytes = Vec<u8>;
    const WHAT: &'static str = "caller policy";

    fn paths(&self) -> Vec<PathBuf> {
        self.path.iter().cloned().collect()
    }

    fn read(&self) -> Result<(Vec<u8>, [u8; 32]), String> {
        let path = self.path.as_deref().ok_or("policy: no file")?;
        let bytes = std::fs::read(path).map_err(|e| format!("policy {}: {e}", path.display()))?;
        let digest = *blake3::hash(&bytes).as_bytes();
        Ok((bytes, digest))
    }

    /// The policy `bytes` hold, or why not, naming the file. A panic while
    /// checking it is a refusal too: at start-up a bad configuration (exit
    /// 2), on a reload a file refused.
    fn build(&self, bytes: &Vec<u8>) -> Result<Policy, String> {
        let path = self.path.as_deref().unwrap_or(Path::new("(given)"));
        let text = std::str::from_utf8(bytes)
            .map_err(|_| format!("policy {}: not UTF-8", path.display()))?;
        reload::catching_panics(|| Policy::parse_counted(text, &self.metrics))
            .map_err(|e| format!("policy {}: {e}", path.display()))
    }
}

/// A policy file read and checked: plain data, put in force by
/// [`Live::new`].
pub(crate) type LoadedPolicy = Loaded<PolicyFile>;

/// The policy in force, and the file it comes from.
pub type LivePolicy = Live<PolicyFile>;

impl Loaded<PolicyFile> {
    /// The policy in the file at `path`, checked.
    pub(crate) fn from_file(path: &Path) -> Result<Self, String> {
        Self::load(PolicyFile {
            path: Some(path.to_path_buf()),
            metrics: PolicyMetrics::default(),
        })
    }
}

impl Live<PolicyFile> {
    /// The policy in the file at `path`, checked and in force.
    pub fn load(path: &Path) -> Result<Self, String> {
        LoadedPolicy::from_file(path).map(Self::new)
    }

    /// A policy that no file backs.
    pub fn fixed(policy: Policy) -> Self {
        let file = PolicyFile {
            path: None,
            metrics: policy.metrics.clone(),
        };
        Self::new(Loaded::given(file, policy))
    }

    /// Where its decisions are counted.
    pub fn metrics(&self) -> &PolicyMetrics {
        &self.files().metrics
    }

    /// Registers its metrics in `registry`: its decisions' and its file's
    /// reloads (`gateway_policy_reloads_total`).
    pub fn register(&self, registry: &mut Registry) {
        self.metrics().register(registry);
        self.reloads().register(
            registry,
            "gateway_policy_reloads",
            "Changes of the policy file, by outcome (ok: in force; error: refused, \
             the policy in force stays)",
        );
    }

    /// The file it comes from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.files().path.as_deref()
    }
}
