//! Who may call, as configured: TLS and client certificates, the caller
//! policy, a mesh's identity header, and the audit log.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::Cli;
use super::problems::Problems;
use crate::audit::{AuditSettings, AuditSink, HmacKey};
use crate::policy::LivePolicy;
use crate::server::tls::{LiveTls, TlsFiles};

/// The shortest audit key accepted: an HMAC key guessed is a user
/// identifier recovered by trying candidates.
const MIN_AUDIT_KEY: usize = 16;

/// Who may call, as configured.
pub(super) struct Callers {
    pub(super) policy: Option<Arc<LivePolicy>>,
    pub(super) identity_header: Option<http::HeaderName>,
    pub(super) tls: Option<Arc<LiveTls>>,
    pub(super) audit: Option<AuditSettings>,
}

impl Cli {
    /// The policy, the identity header, TLS and the audit log. Without a
    /// policy every caller may call everything: that is allowed only where
    /// it is explicit (loopback, the emulator, or --allow-all-callers).
    pub(super) fn callers(&self, listen: SocketAddr, p: &mut Problems) -> Option<Callers> {
        let policy = match &self.policy {
            Some(path) => Some(p.check_as_is(LivePolicy::load(path).map(Arc::new))?),
            None => None,
        };
        let allow_all = p.boolean("allow-all-callers", &self.allow_all_callers)?;
        #[cfg(feature = "emulator")]
        let explicit = allow_all || self.emulator || listen.ip().is_loopback();
        #[cfg(not(feature = "emulator"))]
        let explicit = allow_all || listen.ip().is_loopback();
        if policy.is_none() && !explicit {
            p.0.push(format!(
                "--policy: none is given, so every caller could mint any developer token; \
                 without a policy the gateway serves only on a loopback address, with \
                 --emulator, or with --allow-all-callers (listening on {listen})"
            ));
            return None;
        }
        let tls = self.tls(p);
        let audit = self.audit(p);
        let identity_header = match &self.caller_identity_header {
            Some(_) if self.tls_cert.is_some() => {
                p.0.push(
                    "--caller-identity-header: a TLS listener identifies callers by their \
                     certificates; the header is trusted on plaintext listeners only, behind a \
                     mesh that sets it"
                        .to_owned(),
                );
                return None;
            }
            Some(name) => Some(
                p.check(
                    "caller-identity-header",
                    http::HeaderName::try_from(name.trim().to_ascii_lowercase())
                        .map_err(|_| format!("{name:?} is not a header name")),
                )?,
            ),
            None => None,
        };
        Some(Callers {
            policy,
            identity_header,
            tls: tls?,
            audit: audit?,
        })
    }

    /// `Some(None)`: plaintext.
    fn tls(&self, p: &mut Problems) -> Option<Option<Arc<LiveTls>>> {
        let files = match (&self.tls_cert, &self.tls_key) {
            (None, None) => {
                if self.tls_client_ca.is_some() {
                    p.0.push("--tls-client-ca: needs --tls-cert and --tls-key".to_owned());
                    return None;
                }
                return Some(None);
            }
            (Some(cert), Some(key)) => TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            },
            (Some(_), None) => {
                p.0.push("--tls-cert: needs --tls-key".to_owned());
                return None;
            }
            (None, Some(_)) => {
                p.0.push("--tls-key: needs --tls-cert".to_owned());
                return None;
            }
        };
        Some(Some(p.check_as_is(LiveTls::load(files).map(Arc::new))?))
    }

    /// `Some(None)`: no audit log.
    fn audit(&self, p: &mut Problems) -> Option<Option<AuditSettings>> {
        let queue = p.number(
            "audit-queue-capacity",
            &self.audit_queue_capacity,
            1..=1 << 20,
        );
        let Some(log) = &self.audit_log else {
            return Some(None);
        };
        let sink = match log.as_str() {
            "-" => AuditSink::Stdout,
            path => AuditSink::File(path.into()),
        };
        let Some(key_file) = &self.audit_hmac_key_file else {
            p.0.push(
                "--audit-hmac-key-file: required with --audit-log (the key of the user hash, \
                 the same on every replica)"
                    .to_owned(),
            );
            return None;
        };
        let key = p.check_as_is(audit_key(key_file))?;
        Some(Some(AuditSettings {
            sink,
            key,
            queue: queue?,
        }))
    }
}

/// The key in `path`: its bytes, a trailing newline left out. The message
/// names the file, never what it holds.
fn audit_key(path: &Path) -> Result<HmacKey, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("--audit-hmac-key-file: {}: {e}", path.display()))?;
    let key = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let key = key.strip_suffix(b"\r").unwrap_or(key);
    if key.len() < MIN_AUDIT_KEY {
        return Err(format!(
            "--audit-hmac-key-file: {}: holds {} bytes; at least {MIN_AUDIT_KEY} are needed",
            path.display(),
            key.len()
        ));
    }
    Ok(HmacKey::new(key))
}
