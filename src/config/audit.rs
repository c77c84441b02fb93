//! The flags of the audit log: where it goes, the key of its user hash,
//! how many lines may wait for it, and how long its sink may fail.

use std::path::Path;

use super::problems::{Invalid, Problems};
use crate::audit::{AuditSettings, AuditSink, HmacKey};

/// The shortest audit key accepted: an HMAC key guessed is a user
/// identifier recovered by trying candidates.
const MIN_AUDIT_KEY: usize = 16;

/// Flags of [`AuditSettings`].
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Audit")]
pub(crate) struct AuditArgs {
    /// The audit log: a file appended to, or - for standard output. One
    /// JSON line per developer-identity call and per refused call.
    #[arg(long, env = "COGNITO_GATEWAY_AUDIT_LOG")]
    pub(crate) audit_log: Option<String>,

    /// The key (a file's bytes, trailing newline ignored; at least 16) of
    /// the audit log's user hash, HMAC-SHA256. Required with --audit-log.
    #[arg(long, env = "COGNITO_GATEWAY_AUDIT_HMAC_KEY_FILE")]
    pub(crate) audit_hmac_key_file: Option<std::path::PathBuf>,

    /// Audit lines that may wait for the sink; when they are all taken,
    /// developer calls are refused UNAVAILABLE (AUDIT_UNAVAILABLE).
    #[arg(
        long,
        env = "COGNITO_GATEWAY_AUDIT_QUEUE_CAPACITY",
        default_value = "8192"
    )]
    pub(crate) audit_queue_capacity: String,

    /// How long the audit log's sink may fail (developer calls are refused
    /// meanwhile) before the lines of calls already answered go to standard
    /// error, each after "audit-fallback: ", rather than wait for it.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_AUDIT_FALLBACK_AFTER",
        default_value = "10s"
    )]
    pub(crate) audit_fallback_after: String,
}

impl AuditArgs {
    /// Checks the flags and reads the key; `Ok(None)`: no audit log, as
    /// none is asked for. Its other flags are checked either way.
    pub(super) fn settings(&self, p: &mut Problems) -> Result<Option<AuditSettings>, Invalid> {
        let queue = p.number(
            "audit-queue-capacity",
            &self.audit_queue_capacity,
            1..=1 << 20,
        );
        let fallback_after = p.duration("audit-fallback-after", &self.audit_fallback_after);
        let Some(log) = &self.audit_log else {
            return Ok(None);
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
            return Err(Invalid);
        };
        let key = p.check_as_is(audit_key(key_file)).ok_or(Invalid)?;
        match (queue, fallback_after) {
            (Some(queue), Some(fallback_after)) => Ok(Some(AuditSettings {
                sink,
                key,
                queue,
                fallback_after,
            })),
            _ => Err(Invalid),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{problems, settings};

    #[test]
    fn the_audit_log_needs_a_key_of_sixteen_bytes() {
        let d = std::env::temp_dir().join(format!("config-audit-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (short, good) = (d.join("short.key"), d.join("good.key"));
        std::fs::write(&short, "0123456789\n").unwrap();
        std::fs::write(&good, "0123456789abcdef\n").unwrap();
        let log = d.join("audit.jsonl").display().to_string();

        let s = settings(&[
            "--audit-log",
            &log,
            "--audit-hmac-key-file",
            &good.display().to_string(),
        ])
        .unwrap();
        let audit = s.audit.expect("audit on");
        assert_eq!(audit.sink, AuditSink::File(log.clone().into()));
        assert_eq!(audit.queue, 8192);
        assert_eq!(audit.fallback_after, std::time::Duration::from_secs(10));
        assert_eq!(format!("{:?}", audit.key), "HmacKey(..)");
        let stdout = settings(&[
            "--audit-log",
            "-",
            "--audit-hmac-key-file",
            &good.display().to_string(),
        ]);
        assert_eq!(stdout.unwrap().audit.unwrap().sink, AuditSink::Stdout);

        assert!(problems(&["--audit-log", &log]).contains("--audit-hmac-key-file: required"));
        let too_short = problems(&[
            "--audit-log",
            &log,
            "--audit-hmac-key-file",
            &short.display().to_string(),
        ]);
        assert!(too_short.contains("holds 10 bytes"), "{too_short}");
        assert!(!too_short.contains("0123456789"), "{too_short}");
        assert!(problems(&["--audit-queue-capacity", "0"]).contains("--audit-queue-capacity"));
        let sooner = settings(&[
            "--audit-log",
            &log,
            "--audit-hmac-key-file",
            &good.display().to_string(),
            "--audit-fallback-after",
            "1m 30s",
        ]);
        assert_eq!(
            sooner.unwrap().audit.unwrap().fallback_after,
            std::time::Duration::from_secs(90)
        );
        for wrong in ["0s", "soon"] {
            let problem = problems(&["--audit-fallback-after", wrong]);
            assert!(problem.contains("--audit-fallback-after"), "{problem}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
