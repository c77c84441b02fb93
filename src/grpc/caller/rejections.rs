//! Telling operators that an identity header was set aside. Every one is
//! counted (`gateway_caller_identity_header_rejected_total{reason}`); a
//! warning is logged at most once a minute per peer address, and a few a
//! second in all, so that a client sending a bad header on every call, or
//! from many addresses, cannot flood the log.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::Rejection;

/// How long a peer that was logged stays quiet.
const PER_PEER: Duration = Duration::from_secs(60);

/// Peers remembered at most; the memory is cleared when it is full, which
/// at worst logs a peer again before its minute is up (the lines a second
/// still bound the log).
const MAX_PEERS: usize = 4096;

/// Lines a second at most, all peers together.
const LINES_PER_SECOND: u32 = 5;

/// Bytes of the header's value a line shows at most.
const MAX_SHOWN: usize = 200;

/// Which peers were logged when, and the lines of the current second.
#[derive(Debug, Default)]
struct Limiter {
    /// By peer address (`None`: a connection whose address is unknown).
    logged: HashMap<Option<IpAddr>, Instant>,
    second: Option<Instant>,
    lines: u32,
}

impl Limiter {
    /// Whether a rejection from `peer` at `now` may be logged; if so, it
    /// counts as logged.
    fn admit(&mut self, peer: Option<IpAddr>, now: Instant) -> bool {
        if self
            .logged
            .get(&peer)
            .is_some_and(|at| now.saturating_duration_since(*at) < PER_PEER)
        {
            return false;
        }
        match self.second {
            Some(start) if now.saturating_duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                self.second = Some(now);
                self.lines = 0;
            }
        }
        if self.lines >= LINES_PER_SECOND {
            // Not remembered as logged: the peer's next rejection may be.
            return false;
        }
        if self.logged.len() >= MAX_PEERS {
            self.logged.clear();
        }
        self.logged.insert(peer, now);
        self.lines += 1;
        true
    }
}

impl EncodeLabelValue for Rejection {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: Rejection,
}

/// The identity headers set aside: counted, and logged within limits.
#[derive(Debug, Default)]
pub struct Rejections {
    counted: Family<ReasonLabel, Counter>,
    logged: Mutex<Limiter>,
}

impl Rejections {
    /// Registers `gateway_caller_identity_header_rejected_total` in
    /// `registry`, each reason at 0.
    pub fn register(&self, registry: &mut Registry) {
        for reason in Rejection::ALL {
            let _ = self.counted.get_or_create(&ReasonLabel { reason });
        }
        registry.register(
            "gateway_caller_identity_header_rejected",
            "Calls whose --caller-identity-header was set aside, leaving the caller anonymous, \
             by reason (untrusted_peer: not from --caller-identity-header-trusted-peers; \
             malformed: does not parse; repeated: more than one header field; ambiguous: more \
             than one identity; not_an_identity: no well-formed SPIFFE id or DNS name)",
            self.counted.clone(),
        );
    }

    /// Counts a header `header` from `peer` set aside for `reason`, and
    /// logs it when the limits allow, with the start of its (first)
    /// `value`, escaped.
    pub(super) fn note(
        &self,
        header: &http::HeaderName,
        peer: Option<SocketAddr>,
        reason: Rejection,
        value: Option<&[u8]>,
    ) {
        self.counted.get_or_create(&ReasonLabel { reason }).inc();
        let admitted = self
            .logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(peer.map(|p| p.ip()), Instant::now());
        if admitted {
            log(header, peer, reason, value.unwrap_or_default());
        }
    }
}

/// Logs a header set aside, with the start of its value, escaped.
fn log(header: &http::HeaderName, peer: Option<SocketAddr>, reason: Rejection, value: &[u8]) {
    let shown = String::from_utf8_lossy(&value[..value.len().min(MAX_SHOWN)]);
    let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    // The value comes from the client: `?` escapes quotes, backslashes and
    // control characters, so it cannot forge a line or a field.
    tracing::warn!(
        %peer,
        %header,
        reason = reason.as_str(),
        value = ?shown,
        value_bytes = value.len(),
        "caller identity header set aside: the call is anonymous (logged once a minute per peer)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_peer_is_logged_once_a_minute() {
        let mut limiter = Limiter::default();
        let start = Instant::now();
        assert!(limiter.admit(ip("10.0.0.1"), start));
        assert!(!limiter.admit(ip("10.0.0.1"), start + Duration::from_secs(1)));
        assert!(!limiter.admit(ip("10.0.0.1"), start + Duration::from_secs(59)));
        assert!(limiter.admit(ip("10.0.0.2"), start + Duration::from_secs(59)));
        assert!(limiter.admit(None, start + Duration::from_secs(59)));
        assert!(!limiter.admit(None, start + Duration::from_secs(60)));
        assert!(limiter.admit(ip("10.0.0.1"), start + Duration::from_secs(60)));
    }

    #[test]
    fn a_few_lines_a_second_in_all() {
        let mut limiter = Limiter::default();
        let start = Instant::now();
        let admitted = (0..100u8)
            .filter(|i| limiter.admit(Some(IpAddr::from([10, 0, 0, *i])), start))
            .count();
        assert_eq!(admitted, LINES_PER_SECOND as usize);
        // A peer turned away for the rate was not remembered: it is logged
        // in the next second.
        assert!(limiter.admit(ip("10.0.0.99"), start + Duration::from_secs(1)));
    }

    #[test]
    fn the_memory_of_peers_is_bounded() {
        let mut limiter = Limiter::default();
        let mut now = Instant::now();
        for i in 0..(MAX_PEERS as u32 * 2) {
            if i % LINES_PER_SECOND == 0 {
                now += Duration::from_secs(1);
            }
            assert!(limiter.admit(Some(IpAddr::from(i.to_be_bytes())), now));
            assert!(limiter.logged.len() <= MAX_PEERS);
        }
    }
}
