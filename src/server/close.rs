//! What ends a connection whatever happens on it, and why: its maximum
//! age, its client certificate's expiry, or a client CA that no longer
//! vouches for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use tokio::sync::watch;

use super::tls::{self, LiveTls};

/// Why a connection is closed while its caller still uses it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Reason {
    /// It reached `--max-connection-age` (less its jitter).
    MaxAge,
    /// Its client certificate expired.
    CertificateExpired,
    /// The client CA in force no longer vouches for its certificate.
    ClientCaChanged,
}

impl Reason {
    /// Every reason.
    pub(crate) const ALL: [Reason; 3] = [
        Reason::MaxAge,
        Reason::CertificateExpired,
        Reason::ClientCaChanged,
    ];

    /// Its name in metrics and logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::MaxAge => "max_age",
            Reason::CertificateExpired => "certificate_expired",
            Reason::ClientCaChanged => "client_ca_changed",
        }
    }
}

/// What ends a connection whatever happens on it: a time (its maximum age,
/// or its certificate's expiry if that comes first), and on TLS with a
/// client certificate, each new client CA that does not vouch for it.
#[derive(Clone)]
pub(crate) struct Close {
    at: (tokio::time::Instant, Reason),
    recheck: Option<Recheck>,
}

/// A certificate to check again against each new TLS configuration.
#[derive(Clone)]
struct Recheck {
    tls: Arc<LiveTls>,
    changes: watch::Receiver<u64>,
    chain: Arc<[CertificateDer<'static>]>,
}

impl Close {
    /// Closed at `max_age` from now at the latest, less a jitter of up to a
    /// tenth, so that connections opened together are not all closed (and
    /// reopened) together.
    pub(super) fn new(max_age: Duration) -> Self {
        use std::hash::BuildHasher;
        let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
        let jitter = max_age.mul_f64(0.1 * (random % 10_000) as f64 / 10_000.0);
        Self {
            at: (
                tokio::time::Instant::now() + (max_age - jitter),
                Reason::MaxAge,
            ),
            recheck: None,
        }
    }

    /// Also closed when the certificate `chain` (leaf first) expires, or
    /// when a new configuration of `tls` does not vouch for it.
    pub(super) fn certificate(
        mut self,
        tls: Arc<LiveTls>,
        chain: Vec<CertificateDer<'static>>,
    ) -> Self {
        if let Some(expires) = chain.first().and_then(tls::not_after) {
            let left = expires
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            if let Some(at) = tokio::time::Instant::now().checked_add(left)
                && at < self.at.0
            {
                self.at = (at, Reason::CertificateExpired);
            }
        }
        self.recheck = Some(Recheck {
            changes: tls.changes(),
            tls,
            chain: chain.into(),
        });
        self
    }

    /// Resolves when the connection is to be closed, with why.
    pub(crate) async fn due(&mut self) -> Reason {
        let (at, reason) = self.at;
        let sleep = tokio::time::sleep_until(at);
        tokio::pin!(sleep);
        loop {
            let Some(recheck) = &mut self.recheck else {
                sleep.as_mut().await;
                return reason;
            };
            let changed = tokio::select! {
                () = sleep.as_mut() => return reason,
                changed = recheck.changes.changed() => changed.is_ok(),
            };
            if !changed {
                // The configuration is gone with the server.
                self.recheck = None;
            } else if !recheck.tls.vouches_for(&recheck.chain) {
                return Reason::ClientCaChanged;
            }
        }
    }
}
