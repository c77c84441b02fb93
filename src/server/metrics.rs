//! The server's own metrics: TLS handshakes by outcome, connections told
//! to close by reason, and whether the upstream could be reached.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::close::Reason;

/// How a TLS handshake ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(super) enum Handshake {
    Ok,
    /// The client's certificate (or its TLS) was refused.
    Refused,
    /// Not finished within the handshake timeout.
    Timeout,
}

impl EncodeLabelValue for Handshake {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(
            encoder,
            match self {
                Handshake::Ok => "ok",
                Handshake::Refused => "refused",
                Handshake::Timeout => "timeout",
            },
        )
    }
}

impl EncodeLabelValue for Reason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabel {
    outcome: Handshake,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: Reason,
}

/// The server's metrics, shared by its listeners and connections.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServerMetrics {
    handshakes: Family<HandshakeLabel, Counter>,
    closed: Family<ReasonLabel, Counter>,
    upstream_up: Gauge,
}

impl ServerMetrics {
    /// Registers the families in `registry`, each outcome and reason at 0.
    pub(crate) fn register(&self, registry: &mut Registry) {
        for outcome in [Handshake::Ok, Handshake::Refused, Handshake::Timeout] {
            let _ = self.handshakes.get_or_create(&HandshakeLabel { outcome });
        }
        for reason in Reason::ALL {
            let _ = self.closed.get_or_create(&ReasonLabel { reason });
        }
        registry.register(
            "gateway_tls_handshakes",
            "TLS handshakes on the API listener, by outcome (ok, refused, timeout)",
            self.handshakes.clone(),
        );
        registry.register(
            "gateway_connections_closed",
            "API connections the gateway told to close (GOAWAY) while in use, by reason \
             (max_age, certificate_expired: its client certificate expired, \
             client_ca_changed: the client CA in force no longer vouches for it)",
            self.closed.clone(),
        );
        registry.register(
            "gateway_upstream_up",
            "1 when the upstream circuit breaker was closed and a connection to the \
             upstream could be opened at the last check (every 10 s, and on /upstreamz), \
             0 otherwise",
            self.upstream_up.clone(),
        );
    }

    /// A TLS handshake ended.
    pub(super) fn handshake(&self, outcome: Handshake) {
        self.handshakes
            .get_or_create(&HandshakeLabel { outcome })
            .inc();
    }

    /// A connection was told to close, for `reason`.
    pub(super) fn closed(&self, reason: Reason) {
        self.closed.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Whether the upstream could be reached at the last check.
    pub(super) fn upstream_up(&self, up: bool) {
        self.upstream_up.set(i64::from(up));
    }
}
