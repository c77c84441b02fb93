//! Who may call, as configured: TLS and client certificates, the caller
//! policy, a mesh's identity header, and the audit log.

use std::net::SocketAddr;
use std::path::Path;

use super::Cli;
use super::problems::Problems;
use crate::audit::{AuditSettings, AuditSink, HmacKey};
use crate::grpc::{IdentityHeader, TrustedPeers};
use crate::policy::LoadedPolicy;
use crate::server::tls::{LoadedTls, TlsFiles};

/// The shortest audit key accepted: an HMAC key guessed is a user
/// identifier recovered by trying candidates.
const MIN_AUDIT_KEY: usize = 16;

/// Who may call, as configured.
pub(super) struct Callers {
    pub(super) policy: Option<LoadedPolicy>,
    pub(super) identity_header: Option<IdentityHeader>,
    pub(super) tls: Option<LoadedTls>,
    pub(super) audit: Option<AuditSettings>,
}

impl Cli {
    /// The policy, the identity header, TLS and the audit log. Without a
    /// policy every caller may call everything: that is allowed only where
    /// it is explicit (loopback, the emulator, or --allow-all-callers).
    pub(super) fn callers(&self, listen: SocketAddr, p: &mut Problems) -> Option<Callers> {
        let policy = match &self.policy {
            Some(path) => Some(p.check_as_is(LoadedPolicy::from_file(path))?),
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
        // Checked with or without the header: a bad value is a mistake
        // either way.
        let trusted_peers = p.check(
            "caller-identity-header-trusted-peers",
            self.caller_identity_header_trusted_peers
                .parse::<TrustedPeers>(),
        );
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
            Some(name) => {
                let name = p.check(
                    "caller-identity-header",
                    http::HeaderName::try_from(name.trim().to_ascii_lowercase())
                        .map_err(|_| format!("{name:?} is not a header name")),
                );
                Some(IdentityHeader::new(name?).trusted_from(trusted_peers?))
            }
            None => {
                trusted_peers?;
                None
            }
        };
        Some(Callers {
            policy,
            identity_header,
            tls: tls?,
            audit: audit?,
        })
    }

    /// `Some(None)`: plaintext.
    fn tls(&self, p: &mut Problems) -> Option<Option<LoadedTls>> {
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
        Some(Some(p.check_as_is(LoadedTls::load(files))?))
    }

    /// `Some(None)`: no audit log.
    fn audit(&self, p: &mut Problems) -> Option<Option<AuditSettings>> {
        let queue = p.number(
            "audit-queue-capacity",
            &self.audit_queue_capacity,
            1..=1 << 20,
        );
        let fallback_after = p.duration("audit-fallback-after", &self.audit_fallback_after);
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
            fallback_after: fallback_after?,
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::{ConfigError, Settings};

    fn settings(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["cognito-identity-gateway", "--listen", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .expect("flags parse")
            .into_settings()
    }

    fn problems(args: &[&str]) -> String {
        settings(args).unwrap_err().to_string()
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("callers-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn tls_takes_a_certificate_and_its_key_and_refuses_the_header() {
        let d = dir("tls");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (crt, pem, ca) = (d.join("tls.crt"), d.join("tls.key"), d.join("ca.crt"));
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&pem, key.serialize_pem()).unwrap();
        std::fs::write(&ca, cert.pem()).unwrap();
        let (crt, pem, ca) = (
            crt.display().to_string(),
            pem.display().to_string(),
            ca.display().to_string(),
        );

        let s = settings(&[
            "--tls-cert",
            &crt,
            "--tls-key",
            &pem,
            "--tls-client-ca",
            &ca,
        ])
        .unwrap();
        let tls = s.server.tls.expect("TLS on");
        assert!(tls.files().asks_for_client_certificates());
        // Debug names the files and shows no key.
        let debug = format!("{tls:?}");
        assert!(
            debug.contains("tls.key") && !debug.contains("PRIVATE"),
            "{debug}"
        );

        assert!(problems(&["--tls-cert", &crt]).contains("--tls-cert: needs --tls-key"));
        assert!(problems(&["--tls-key", &pem]).contains("--tls-key: needs --tls-cert"));
        assert!(problems(&["--tls-client-ca", &ca]).contains("--tls-client-ca: needs"));
        let header = problems(&[
            "--tls-cert",
            &crt,
            "--tls-key",
            &pem,
            "--caller-identity-header",
            "l5d-client-id",
        ]);
        assert!(header.contains("plaintext listeners only"), "{header}");
        // The key's file as a certificate, the certificate as a key: each
        // message names the file, none shows what it holds.
        let swapped = problems(&["--tls-cert", &pem, "--tls-key", &crt]);
        assert!(
            swapped.contains("tls.key") && !swapped.contains("PRIVATE"),
            "{swapped}"
        );
        // A key whose newlines were escaped on its way into a Secret: one
        // long malformed line, which the PEM parser's own message quotes.
        let escaped = d.join("escaped.key");
        let body = key.serialize_pem().replace('\n', "\\n");
        std::fs::write(&escaped, &body).unwrap();
        let one_line = problems(&[
            "--tls-cert",
            &crt,
            "--tls-key",
            &escaped.display().to_string(),
        ]);
        let base64_line = key.serialize_pem().lines().nth(1).unwrap().to_owned();
        assert!(one_line.contains("escaped.key"), "{one_line}");
        assert!(!one_line.contains(&base64_line[..20]), "{one_line}");
        let bytes = base64_line
            .bytes()
            .take(8)
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        assert!(!one_line.contains(&bytes), "the key's bytes in: {one_line}");
        let missing = problems(&["--tls-cert", "/nonexistent/tls.crt", "--tls-key", &pem]);
        assert!(missing.contains("/nonexistent/tls.crt"), "{missing}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_identity_header_is_believed_from_its_trusted_peers() {
        let header = |args: &[&str]| settings(args).unwrap().server.caller_identity_header;
        let linkerd = header(&["--caller-identity-header", "l5d-client-id"]).unwrap();
        assert_eq!(linkerd.trusted_peers, TrustedPeers::default());
        let pods = header(&[
            "--caller-identity-header",
            "X-Forwarded-Client-Cert",
            "--caller-identity-header-trusted-peers",
            "10.0.0.0/8, 192.168.0.1",
        ])
        .unwrap();
        assert_eq!(pods.name.as_str(), "x-forwarded-client-cert");
        assert_eq!(pods.trusted_peers.to_string(), "10.0.0.0/8,192.168.0.1/32");
        assert!(header(&[]).is_none());

        let bad = problems(&[
            "--caller-identity-header",
            "l5d-client-id",
            "--caller-identity-header-trusted-peers",
            "10.0.0.0/33",
        ]);
        assert!(
            bad.contains("--caller-identity-header-trusted-peers: \"10.0.0.0/33\""),
            "{bad}"
        );
        // A bad list is refused without the header too, beside a bad name.
        let both = settings(&[
            "--caller-identity-header",
            "bad header",
            "--caller-identity-header-trusted-peers",
            "loopback",
        ])
        .unwrap_err();
        assert_eq!(both.0.len(), 2, "{both}");
        assert!(both.0[0].starts_with("--caller-identity-header-trusted-peers: \"loopback\""));
        assert!(both.0[1].starts_with("--caller-identity-header: \"bad header\""));
        let alone = problems(&["--caller-identity-header-trusted-peers", ""]);
        assert!(alone.contains("names no peer"), "{alone}");
    }

    #[test]
    fn the_audit_log_needs_a_key_of_sixteen_bytes() {
        let d = dir("audit");
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
