//! The flags of who may call: the caller policy, TLS and client
//! certificates, and a mesh's identity header.

use std::net::SocketAddr;

use super::problems::{Invalid, Problems};
use crate::grpc::{IdentityHeader, TrustedPeers};
use crate::policy::LoadedPolicy;
use crate::server::tls::{LoadedTls, TlsFiles};

/// Flags of who may call.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Callers and TLS")]
pub(crate) struct CallersArgs {
    /// The caller policy, a YAML file: who may call which operation, for
    /// which pools, login providers, principal tags and token lifetimes.
    #[arg(long, env = "COGNITO_GATEWAY_POLICY")]
    pub policy: Option<std::path::PathBuf>,

    /// Without --policy, serve every caller even on an address other than
    /// loopback (true/false).
    #[arg(
        long,
        env = "COGNITO_GATEWAY_ALLOW_ALL_CALLERS",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub(crate) allow_all_callers: String,

    /// Take the caller's identity from this header, which a service mesh
    /// doing mutual TLS in front of the gateway sets (l5d-client-id for
    /// Linkerd, x-forwarded-client-cert for Envoy and Istio), on calls from
    /// --caller-identity-header-trusted-peers. Plaintext listeners only.
    #[arg(long, env = "COGNITO_GATEWAY_CALLER_IDENTITY_HEADER")]
    pub caller_identity_header: Option<String>,

    /// The peers --caller-identity-header is believed from: comma-separated
    /// CIDR ranges (a bare address is one host). The default, loopback, is
    /// where a sidecar proxy connects from; from any other peer the header
    /// is ignored (the caller is anonymous) and counted.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CALLER_IDENTITY_HEADER_TRUSTED_PEERS",
        default_value = crate::grpc::DEFAULT_TRUSTED_PEERS
    )]
    pub(crate) caller_identity_header_trusted_peers: String,

    /// The API listener's certificate chain (PEM): with --tls-key, the API
    /// speaks TLS 1.2/1.3 (ALPN h2). Reloaded when it changes.
    #[arg(long, env = "COGNITO_GATEWAY_TLS_CERT")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,

    /// The private key of --tls-cert (PEM). Reloaded when it changes.
    #[arg(long, env = "COGNITO_GATEWAY_TLS_KEY")]
    pub(crate) tls_key: Option<std::path::PathBuf>,

    /// CA bundle (PEM) that client certificates must chain to: callers
    /// presenting one are identified by its SPIFFE URI SAN or first DNS
    /// SAN, callers presenting none are anonymous. Reloaded when it changes.
    #[arg(long, env = "COGNITO_GATEWAY_TLS_CLIENT_CA")]
    pub(crate) tls_client_ca: Option<std::path::PathBuf>,
}

/// Who may call, as configured.
pub(super) struct Callers {
    pub(super) policy: Option<LoadedPolicy>,
    pub(super) identity_header: Option<IdentityHeader>,
    pub(super) tls: Option<LoadedTls>,
}

impl CallersArgs {
    /// The policy (read and checked), the identity header and TLS (its
    /// files read and checked). Without a policy every caller may call
    /// everything: that is allowed only where it is explicit (loopback,
    /// the embedded emulator, or --allow-all-callers); `listen` is the
    /// API's address, if valid.
    pub(super) fn settings(
        &self,
        p: &mut Problems,
        listen: Option<SocketAddr>,
        embedded_emulator: bool,
    ) -> Option<Callers> {
        let policy = match &self.policy {
            None => Ok(None),
            Some(path) => p
                .check_as_is(LoadedPolicy::from_file(path))
                .map(Some)
                .ok_or(Invalid),
        };
        let allow_all = p.boolean("allow-all-callers", &self.allow_all_callers);
        let explicit = match (&policy, allow_all, listen) {
            (Ok(None), Some(allow_all), Some(listen))
                if !(allow_all || embedded_emulator || listen.ip().is_loopback()) =>
            {
                p.0.push(format!(
                    "--policy: none is given, so every caller could mint any developer token; \
                     without a policy the gateway serves only on a loopback address, with \
                     --emulator, or with --allow-all-callers (listening on {listen})"
                ));
                None
            }
            _ => allow_all,
        };
        let tls = self.tls(p);
        let identity_header = self.identity_header(p);
        explicit?;
        Some(Callers {
            policy: policy.ok()?,
            identity_header: identity_header.ok()?,
            tls: tls.ok()?,
        })
    }

    /// The mesh's identity header; `Ok(None)`: none, callers are named by
    /// their certificates or anonymous.
    fn identity_header(&self, p: &mut Problems) -> Result<Option<IdentityHeader>, Invalid> {
        // Checked with or without the header: a bad value is a mistake
        // either way.
        let trusted_peers = p.check(
            "caller-identity-header-trusted-peers",
            self.caller_identity_header_trusted_peers
                .parse::<TrustedPeers>(),
        );
        match &self.caller_identity_header {
            Some(_) if self.tls_cert.is_some() => {
                p.0.push(
                    "--caller-identity-header: a TLS listener identifies callers by their \
                     certificates; the header is trusted on plaintext listeners only, behind a \
                     mesh that sets it"
                        .to_owned(),
                );
                Err(Invalid)
            }
            Some(name) => {
                let name = p.check(
                    "caller-identity-header",
                    http::HeaderName::try_from(name.trim().to_ascii_lowercase())
                        .map_err(|_| format!("{name:?} is not a header name")),
                );
                match (name, trusted_peers) {
                    (Some(name), Some(peers)) => {
                        Ok(Some(IdentityHeader::new(name).trusted_from(peers)))
                    }
                    _ => Err(Invalid),
                }
            }
            None => trusted_peers.map(|_| None).ok_or(Invalid),
        }
    }

    /// The listener's TLS, its files read and checked; `Ok(None)`:
    /// plaintext, as no certificate is given.
    fn tls(&self, p: &mut Problems) -> Result<Option<LoadedTls>, Invalid> {
        let files = match (&self.tls_cert, &self.tls_key) {
            (None, None) => {
                if self.tls_client_ca.is_some() {
                    p.0.push("--tls-client-ca: needs --tls-cert and --tls-key".to_owned());
                    return Err(Invalid);
                }
                return Ok(None);
            }
            (Some(cert), Some(key)) => TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            },
            (Some(_), None) => {
                p.0.push("--tls-cert: needs --tls-key".to_owned());
                return Err(Invalid);
            }
            (None, Some(_)) => {
                p.0.push("--tls-key: needs --tls-cert".to_owned());
                return Err(Invalid);
            }
        };
        p.check_as_is(LoadedTls::load(files))
            .map(Some)
            .ok_or(Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{problems, settings};

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
}
