//! TLS on the API listener (rustls, TLS 1.2 and 1.3, ALPN `h2`), with a
//! certificate, key and client CA that change without a restart.
//!
//! tonic's own TLS cannot change its certificate once serving, so the
//! server accepts TLS itself ([`super::conn`]) with the configuration in
//! force at each handshake: a rotated certificate or CA applies to the next
//! handshake; a connection already open keeps the server certificate it
//! was shown, and its client certificate is checked against the new CA.
//!
//! With a client CA, callers are asked for a certificate: one that chains to
//! the CA and is in date identifies its caller ([`caller`]); none leaves the
//! caller anonymous; any other is refused in the handshake.
//!
//! An identity lasts no longer than its certificate: sessions are never
//! resumed (a resumed session skips the certificate's check, and would
//! carry an expired certificate's caller on), and a connection is closed
//! when its certificate expires or when the CA in force no longer vouches
//! for it ([`LiveTls::vouches_for`], asked on every change of the files).
//!
//! The configuration reads and checks the files once ([`LoadedTls`]); the
//! server puts them in force ([`LiveTls`]) and reloads them when they
//! change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use x509_parser::extensions::GeneralName;

use crate::domain::Caller;
use crate::reload::{Files, Live, Loaded};

/// The files TLS is served from (`--tls-cert`, `--tls-key`,
/// `--tls-client-ca`), PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CAs a client certificate must chain to; `None`: no client
    /// certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether callers are asked for a certificate.
    pub(crate) fn asks_for_client_certificates(&self) -> bool {
        self.client_ca.is_some()
    }
}

impl Files for TlsFiles {
    type Value = TlsConfig;
    /// Certificate, key, CA (empty without one).
    type Bytes = [Vec<u8>; 3];
    const WHAT: &'static str = "TLS certificate and client CA";

    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        paths.extend(self.client_ca.clone());
        paths
    }

    fn read(&self) -> Result<([Vec<u8>; 3], [u8; 32]), String> {
        read(self)
    }

    /// Checked: the key matches the certificate, the CA bundle holds at
    /// least one CA. An error names the file, never what a key holds.
    fn build(&self, bytes: &[Vec<u8>; 3]) -> Result<TlsConfig, String> {
        build(self, bytes)
    }
}

/// What the files build: the configuration for handshakes, and the client
/// certificate verifier in it, for checking connections already open.
pub struct TlsConfig {
    config: Arc<ServerConfig>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// When the served certificate (the chain's first) expires, in seconds
    /// since the Unix epoch, if it says.
    expires: Option<u64>,
}

/// The TLS files read and checked: plain data, put in force by
/// [`Live::new`].
pub type LoadedTls = Loaded<TlsFiles>;

/// The TLS configuration in force, and the files it comes from. Its
/// `Debug` names the files, and shows nothing of the key.
pub(crate) type LiveTls = Live<TlsFiles>;

impl Live<TlsFiles> {
    /// Registers its metrics (`gateway_tls_reloads_total`, and
    /// `gateway_tls_certificate_expiry_timestamp_seconds` read from the
    /// certificate in force at each scrape) in `registry`.
    pub fn register(self: &Arc<Self>, registry: &mut prometheus_client::registry::Registry) {
        self.reloads().register(
            registry,
            "gateway_tls_reloads",
            "Changes of the TLS certificate, key or client CA files, by outcome (ok: in \
             force for new handshakes; error: refused, the ones in force stay)",
        );
        registry.register_collector(Box::new(Expiry(self.clone())));
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current().config.clone()
    }

    /// Whether the client CA in force vouches, now, for a certificate
    /// `chain` (leaf first) that was accepted in an earlier handshake: it
    /// chains to a CA in force and is in date. Without a client CA no
    /// certificate is asked for, and none is vouched for.
    pub(crate) fn vouches_for(&self, chain: &[CertificateDer<'static>]) -> bool {
        let built = self.current();
        match (&built.verifier, chain.split_first()) {
            (Some(verifier), Some((leaf, intermediates))) => verifier
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .is_ok(),
            _ => false,
        }
    }
}

/// The files' bytes (certificate, key, CA) and one digest of them all.
fn read(files: &TlsFiles) -> Result<([Vec<u8>; 3], [u8; 32]), String> {
    let load =
        |path: &Path| std::fs::read(path).map_err(|e| format!("TLS file {}: {e}", path.display()));
    let cert = load(&files.cert)?;
    let key = load(&files.key)?;
    let ca = files.client_ca.as_deref().map(load).transpose()?;
    let mut hasher = blake3::Hasher::new();
    for part in [&cert[..], &key[..], ca.as_deref().unwrap_or_default()] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    Ok((
        [cert, key, ca.unwrap_or_default()],
        *hasher.finalize().as_bytes(),
    ))
}

fn build(files: &TlsFiles, [cert, key, ca]: &[Vec<u8>; 3]) -> Result<TlsConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let named = |path: &Path, what: &str| format!("TLS file {}: {what}", path.display());
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            named(
                &files.cert,
                &format!("not a PEM certificate chain ({})", pem_problem(&e)),
            )
        })?;
    if chain.is_empty() {
        return Err(named(&files.cert, "holds no certificate"));
    }
    let expires = chain
        .first()
        .and_then(not_after)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    // The error names the key's file, never its bytes.
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        named(
            &files.key,
            &format!("not a PEM private key ({})", pem_problem(&e)),
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?;
    let mut verifier = None;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for der in CertificateDer::pem_slice_iter(ca) {
                let der = der.map_err(|e| {
                    named(path, &format!("not a PEM CA bundle ({})", pem_problem(&e)))
                })?;
                roots
                    .add(der)
                    .map_err(|e| named(path, &format!("not a usable CA ({e})")))?;
            }
            if roots.is_empty() {
                return Err(named(path, "holds no CA certificate"));
            }
            let client_verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    // No certificate: an anonymous caller, for the policy to judge.
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| named(path, &format!("cannot verify clients with it ({e})")))?;
            verifier = Some(client_verifier.clone());
            builder.with_client_cert_verifier(client_verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        let why = match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                "the key is not the certificate's".to_owned()
            }
            other => other.to_string(),
        };
        format!(
            "TLS files {} and {}: {why}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No resumption, by session id or by ticket: every connection shows
    // its certificate, and has it checked, in a full handshake.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(TlsConfig {
        config: Arc::new(config),
        verifier,
        expires,
    })
}

/// The served certificate's expiry, as a gauge read at each scrape.
struct Expiry(Arc<LiveTls>);

impl std::fmt::Debug for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Expiry")
    }
}

impl prometheus_client::collector::Collector for Expiry {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        use prometheus_client::encoding::EncodeMetric;
        let Some(expires) = self.0.current().expires else {
            return Ok(());
        };
        let gauge = prometheus_client::metrics::gauge::ConstGauge::new(
            i64::try_from(expires).unwrap_or(i64::MAX),
        );
        gauge.encode(encoder.encode_descriptor(
            "gateway_tls_certificate_expiry_timestamp_seconds",
            "When the served TLS certificate expires, in seconds since the Unix epoch",
            None,
            gauge.metric_type(),
        )?)
    }
}

/// When the certificate `der` stops being valid, if it says.
pub fn not_after(der: &CertificateDer<'_>) -> Option<std::time::SystemTime> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der).ok()?;
    let seconds = u64::try_from(parsed.validity().not_after.timestamp()).ok()?;
    std::time::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// What is wrong with a PEM file, in words of our own: the parser's own
/// messages may quote the file's bytes (a malformed first line of a key,
/// its newlines escaped, is the whole key), and no key may reach a log.
fn pem_problem(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "a PEM section does not end",
        Error::IllegalSectionStart { .. } => "a line that starts a PEM section is malformed",
        Error::Base64Decode(_) => "a PEM section is not base64",
        Error::NoItemsFound => "no PEM item of the kind needed",
        _ => "unreadable PEM",
    }
}

/// The caller a verified client certificate names: its first URI SAN that
/// is a SPIFFE id, else its first DNS SAN; anonymous when it names neither
/// (the policy then judges it as it judges a caller with no certificate).
pub fn caller(certificate: &CertificateDer<'_>) -> Caller {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate) else {
        return Caller::Anonymous;
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Caller::Anonymous;
    };
    let names = &san.value.general_names;
    let spiffe = names.iter().find_map(|name| match name {
        GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
            Some(Caller::Spiffe((*uri).into()))
        }
        _ => None,
    });
    let dns = || {
        names.iter().find_map(|name| match name {
            GeneralName::DNSName(dns) => Some(Caller::Dns((*dns).into())),
            _ => None,
        })
    };
    spiffe.or_else(dns).unwrap_or(Caller::Anonymous)
}
