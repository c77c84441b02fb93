//! The policy in force, replaced whole when its file changes: a file that
//! does not load leaves the one in force as it is.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::Guard;

use prometheus_client::registry::Registry;

use super::{Policy, PolicyMetrics};
use crate::reload::{self, InForce, Reloaded};

/// The policy in force, and the file it comes from.
#[derive(Debug)]
pub struct LivePolicy {
    in_force: InForce<Policy>,
    /// `None` for a policy given in code (tests).
    path: Option<PathBuf>,
    /// Shared by every policy put in force, and counting the reloads.
    metrics: PolicyMetrics,
}

impl LivePolicy {
    /// The policy in the file at `path`, checked.
    pub fn load(path: &Path) -> Result<Self, String> {
        let metrics = PolicyMetrics::default();
        let bytes = read(path)?;
        let policy = parse(path, &bytes, &metrics)?;
        Ok(Self {
            in_force: InForce::new(policy, *blake3::hash(&bytes).as_bytes()),
            path: Some(path.to_path_buf()),
            metrics,
        })
    }

    /// A policy that no file backs.
    pub fn fixed(policy: Policy) -> Self {
        Self {
            metrics: policy.metrics.clone(),
            in_force: InForce::new(policy, [0; 32]),
            path: None,
        }
    }

    /// Where its decisions and reloads are counted.
    pub fn metrics(&self) -> &PolicyMetrics {
        &self.metrics
    }

    /// Registers its metrics in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// The policy in force now.
    pub fn current(&self) -> Guard<Arc<Policy>> {
        self.in_force.current()
    }

    /// The file it comes from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reads the file again and puts its policy in force when it changed
    /// and loads. (A new policy starts its callers' rate limits afresh.)
    pub fn reload(&self) -> Reloaded {
        let Some(path) = &self.path else {
            return Reloaded::Unchanged;
        };
        let bytes = match read(path) {
            Ok(bytes) => bytes,
            Err(why) => return Reloaded::Refused(why),
        };
        let digest = *blake3::hash(&bytes).as_bytes();
        self.in_force
            .replace_if_changed(digest, || parse(path, &bytes, &self.metrics))
    }
}

impl LivePolicy {
    /// Reloads the policy whenever its file changes (watched, and checked
    /// every `every` as well), saying and counting each outcome in
    /// `gateway_policy_reloads_total{outcome}`. `None` when no file backs it.
    pub fn watch(self: Arc<Self>, every: Duration) -> Option<reload::Watch> {
        let path = self.path.clone()?;
        Some(reload::spawn(&[path], every, move || {
            self.metrics
                .reloads()
                .report("caller policy", self.reload());
        }))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("policy {}: {e}", path.display()))
}

/// The policy `bytes` hold, or why not, naming the file. A panic while
/// checking it is a refusal too: at start-up a bad configuration (exit 2),
/// on a reload a file refused.
fn parse(path: &Path, bytes: &[u8], metrics: &PolicyMetrics) -> Result<Policy, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| format!("policy {}: not UTF-8", path.display()))?;
    reload::catching_panics(|| Policy::parse_counted(text, metrics))
        .map_err(|e| format!("policy {}: {e}", path.display()))
}
