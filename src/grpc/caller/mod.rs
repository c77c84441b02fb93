//! Who is calling, as the request's connection says it: over TLS, the
//! client certificate the handshake checked (the server puts it in the
//! connection's [`Peer`]); over plaintext, the identity a service mesh that
//! already does mutual TLS puts in a header it sets itself
//! (`--caller-identity-header`). That header is only as good as the proxy
//! that set it, so it is read only where the operator asked for it, only
//! from the peers the mesh's proxies connect from
//! (`--caller-identity-header-trusted-peers`), never on a TLS connection,
//! whose caller could set it to anything, and only when it is exactly one
//! header field that parses and names exactly one well-formed identity.
//! Anything else makes the caller anonymous, and is counted and logged
//! ([`rejections`]).

mod names;
mod peers;
mod rejections;
mod xfcc;

use std::net::SocketAddr;

use tonic::Request;

use crate::domain::{Caller, Peer};

pub(crate) use peers::{DEFAULT_TRUSTED_PEERS, TrustedPeers};
pub use rejections::Rejections;

/// Envoy's and Istio's header, whose last element's `URI=` holds the
/// client certificate's SPIFFE id.
const XFCC: &str = "x-forwarded-client-cert";

/// The header a service mesh in front of the gateway names each caller
/// in, and the peers (the mesh's proxies) it is believed from.
#[derive(Clone, Debug)]
pub struct IdentityHeader {
    /// The header (`--caller-identity-header`): Envoy's
    /// `x-forwarded-client-cert` is read as Envoy writes it; any other
    /// holds one SPIFFE id or DNS name (Linkerd's `l5d-client-id`).
    pub name: http::HeaderName,
    /// Where the header is believed from
    /// (`--caller-identity-header-trusted-peers`); from any other peer it
    /// is ignored.
    pub trusted_peers: TrustedPeers,
}

impl IdentityHeader {
    /// `name`, believed from the loopback ranges, where a sidecar proxy
    /// connects from.
    pub fn new(name: http::HeaderName) -> Self {
        Self {
            name,
            trusted_peers: TrustedPeers::default(),
        }
    }

    /// Believes the header from `trusted_peers` only.
    pub fn trusted_from(mut self, trusted_peers: TrustedPeers) -> Self {
        self.trusted_peers = trusted_peers;
        self
    }

    /// The caller the header in `headers` names, on a plaintext
    /// connection from `peer`; anonymous when the header is absent, or
    /// there but not to be believed, which is counted and logged.
    pub fn caller(
        &self,
        headers: &http::HeaderMap,
        peer: Option<SocketAddr>,
        rejections: &Rejections,
    ) -> Caller {
        self.read(headers, peer).unwrap_or_else(|reason| {
            let value = headers.get(&self.name).map(http::HeaderValue::as_bytes);
            rejections.note(&self.name, peer, reason, value);
            Caller::Anonymous
        })
    }

    /// The caller the header in `headers` names, on a connection from
    /// `peer`: anonymous without the header, a [`Rejection`] when it is
    /// there but cannot be believed.
    fn read(
        &self,
        headers: &http::HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Caller, Rejection> {
        let mut fields = headers.get_all(&self.name).iter();
        let Some(value) = fields.next() else {
            return Ok(Caller::Anonymous);
        };
        if !peer.is_some_and(|peer| self.trusted_peers.contains(peer.ip())) {
            return Err(Rejection::UntrustedPeer);
        }
        // A mesh sets one field; a second is a client's own, sent ahead of
        // or after the mesh's, and which is which cannot be told.
        if fields.next().is_some() {
            return Err(Rejection::Repeated);
        }
        let value = value.to_str().map_err(|_| Rejection::Malformed)?;
        if self.name.as_str() == XFCC {
            xfcc::caller(value)
        } else {
            names::identity(value).ok_or(Rejection::NotAnIdentity)
        }
    }
}

/// Why an identity header present on a call named no caller: the values
/// of `gateway_caller_identity_header_rejected_total`'s `reason` label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Rejection {
    /// It came from a peer not in the trusted peers, or one whose address
    /// is unknown.
    UntrustedPeer,
    /// It does not parse (an unterminated quote, a pair without `=`, a
    /// value that is not visible ASCII).
    Malformed,
    /// It came as more than one header field.
    Repeated,
    /// It holds more than one value where one is expected (two `URI`s in
    /// an element, or several `DNS` names and no SPIFFE id).
    Ambiguous,
    /// It parses but names no well-formed SPIFFE id or DNS name.
    NotAnIdentity,
}

impl Rejection {
    const ALL: [Rejection; 5] = [
        Rejection::UntrustedPeer,
        Rejection::Malformed,
        Rejection::Repeated,
        Rejection::Ambiguous,
        Rejection::NotAnIdentity,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Rejection::UntrustedPeer => "untrusted_peer",
            Rejection::Malformed => "malformed",
            Rejection::Repeated => "repeated",
            Rejection::Ambiguous => "ambiguous",
            Rejection::NotAnIdentity => "not_an_identity",
        }
    }
}

/// The caller of `request`: its connection's certificate over TLS, else
/// the one `header` names (when a header is trusted at all); anonymous
/// when it names none.
pub(super) fn caller<T>(
    request: &Request<T>,
    header: Option<&IdentityHeader>,
    rejections: &Rejections,
) -> Caller {
    let peer = request.extensions().get::<Peer>();
    if let Some(certified) = peer.and_then(|peer| peer.certified.as_ref()) {
        return certified.clone();
    }
    match header {
        Some(header) => header.caller(
            request.metadata().as_ref(),
            peer.and_then(|peer| peer.remote),
            rejections,
        ),
        None => Caller::Anonymous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "spiffe://td/ns/admin/sa/root";

    /// A plaintext call from `remote` carrying each of `values` as a field
    /// of `header`.
    fn request(remote: Option<&str>, header: &str, values: &[&str]) -> Request<()> {
        let mut request = Request::new(());
        for value in values {
            request.metadata_mut().append(
                header.parse::<tonic::metadata::MetadataKey<_>>().unwrap(),
                value.parse().unwrap(),
            );
        }
        request.extensions_mut().insert(Peer {
            remote: remote.map(|r| r.parse().unwrap()),
            ..Peer::default()
        });
        request
    }

    fn header(name: &'static str) -> IdentityHeader {
        IdentityHeader::new(http::HeaderName::from_static(name))
    }

    fn read(header: &IdentityHeader, request: &Request<()>) -> Result<Caller, Rejection> {
        let remote = request.extensions().get::<Peer>().and_then(|p| p.remote);
        header.read(request.metadata().as_ref(), remote)
    }

    #[test]
    fn a_trusted_header_names_the_caller() {
        let l5d = header("l5d-client-id");
        let linkerd = "web.shop.serviceaccount.identity.linkerd.cluster.local";
        let r = request(Some("127.0.0.1:40000"), "l5d-client-id", &[linkerd]);
        assert_eq!(
            caller(&r, Some(&l5d), &Rejections::default()),
            Caller::Dns(linkerd.into())
        );
        let spiffe = request(Some("[::1]:40000"), "l5d-client-id", &[ADMIN]);
        assert_eq!(
            caller(&spiffe, Some(&l5d), &Rejections::default()),
            Caller::Spiffe(ADMIN.into())
        );
        // Not trusted, not read.
        assert_eq!(caller(&r, None, &Rejections::default()), Caller::Anonymous);
        // Over TLS the certificate speaks, whatever the header says.
        let mut tls = r;
        let checkout = Caller::Spiffe("spiffe://example.org/ns/shop/sa/checkout".into());
        tls.extensions_mut().insert(Peer {
            certified: Some(checkout.clone()),
            remote: Some("127.0.0.1:40000".parse().unwrap()),
            ..Peer::default()
        });
        assert_eq!(caller(&tls, Some(&l5d), &Rejections::default()), checkout);
        tls.extensions_mut().insert(Peer {
            certified: Some(Caller::Anonymous),
            ..Peer::default()
        });
        assert_eq!(
            caller(&tls, Some(&l5d), &Rejections::default()),
            Caller::Anonymous
        );
        let absent = request(Some("127.0.0.1:40000"), "x-other", &["admin.svc"]);
        assert_eq!(read(&l5d, &absent), Ok(Caller::Anonymous));
    }

    #[test]
    fn envoys_header_gives_the_uri_of_its_last_element() {
        let xfcc = header(XFCC);
        let r = request(
            Some("127.0.0.1:40000"),
            XFCC,
            &["By=spiffe://td/ns/a/sa/gw;URI=spiffe://td/ns/x/sa/old,\
               By=spiffe://td/ns/a/sa/gw;Hash=abc;Subject=\"CN=x\";\
               URI=spiffe://td/ns/shop/sa/checkout"],
        );
        assert_eq!(
            caller(&r, Some(&xfcc), &Rejections::default()),
            Caller::Spiffe("spiffe://td/ns/shop/sa/checkout".into())
        );
        let no_uri = request(
            Some("127.0.0.1:1"),
            XFCC,
            &["By=spiffe://td/ns/a/sa/gw;Hash=abc"],
        );
        assert_eq!(read(&xfcc, &no_uri), Err(Rejection::NotAnIdentity));
        // Another header holds the identity alone: Envoy's syntax is no
        // identity there.
        let l5d_xfcc = request(
            Some("127.0.0.1:1"),
            "l5d-client-id",
            &[&format!("URI={ADMIN}")],
        );
        assert_eq!(
            read(&header("l5d-client-id"), &l5d_xfcc),
            Err(Rejection::NotAnIdentity)
        );
    }

    #[test]
    fn a_header_from_a_peer_that_is_not_trusted_is_ignored() {
        let l5d = header("l5d-client-id");
        for remote in [Some("10.0.0.7:40000"), Some("[fd00::7]:40000"), None] {
            let r = request(remote, "l5d-client-id", &[ADMIN]);
            assert_eq!(read(&l5d, &r), Err(Rejection::UntrustedPeer), "{remote:?}");
            assert_eq!(
                caller(&r, Some(&l5d), &Rejections::default()),
                Caller::Anonymous
            );
        }
        // No Peer at all: no address to trust.
        let mut bare = Request::new(());
        bare.metadata_mut()
            .insert("l5d-client-id", ADMIN.parse().unwrap());
        assert_eq!(read(&l5d, &bare), Err(Rejection::UntrustedPeer));
        // An IPv4 peer on a dual-stack socket is its IPv4 address.
        let mapped = request(Some("[::ffff:127.0.0.1]:40000"), "l5d-client-id", &[ADMIN]);
        assert_eq!(read(&l5d, &mapped), Ok(Caller::Spiffe(ADMIN.into())));
        // Other trusted peers: loopback is no longer one.
        let pods = l5d.trusted_from("10.0.0.0/8".parse().unwrap());
        let from_pod = request(Some("10.1.2.3:5000"), "l5d-client-id", &[ADMIN]);
        assert_eq!(read(&pods, &from_pod), Ok(Caller::Spiffe(ADMIN.into())));
        let from_loopback = request(Some("127.0.0.1:5000"), "l5d-client-id", &[ADMIN]);
        assert_eq!(read(&pods, &from_loopback), Err(Rejection::UntrustedPeer));
    }

    #[test]
    fn two_header_fields_name_no_one() {
        for (name, values) in [
            ("l5d-client-id", ["admin.ops.svc", "web.shop.svc"]),
            ("l5d-client-id", ["web.shop.svc", "web.shop.svc"]),
            (
                XFCC,
                [
                    "URI=spiffe://td/ns/admin/sa/root",
                    "URI=spiffe://td/ns/shop/sa/checkout",
                ],
            ),
        ] {
            let r = request(Some("127.0.0.1:1"), name, &values);
            let h = IdentityHeader::new(http::HeaderName::from_static(name));
            assert_eq!(read(&h, &r), Err(Rejection::Repeated), "{name}");
            assert_eq!(
                caller(&r, Some(&h), &Rejections::default()),
                Caller::Anonymous
            );
        }
    }

    #[test]
    fn a_value_that_is_no_identity_names_no_one() {
        let l5d = header("l5d-client-id");
        for value in [
            "",
            "admin.ops.svc,web.shop.svc",
            "*.svc",
            "spiffe://td/",
            "a b",
        ] {
            let r = request(Some("127.0.0.1:1"), "l5d-client-id", &[value]);
            assert_eq!(read(&l5d, &r), Err(Rejection::NotAnIdentity), "{value:?}");
        }
        // Bytes that are not visible ASCII do not parse.
        let mut r = request(Some("127.0.0.1:1"), "x-other", &[]);
        r.metadata_mut().insert(
            "l5d-client-id",
            tonic::metadata::MetadataValue::try_from(&b"admin\xff.svc"[..]).unwrap(),
        );
        assert_eq!(read(&l5d, &r), Err(Rejection::Malformed));
    }
}
