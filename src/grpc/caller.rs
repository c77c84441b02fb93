//! Who is calling, as the request's connection says it: over TLS, the
//! client certificate the handshake checked (the server puts it in the
//! connection's [`Peer`]); over plaintext, the identity a service mesh that
//! already does mutual TLS puts in a header it sets itself
//! (`--caller-identity-header`). The gateway trusts that header, so it is
//! read only where the operator asked for it, and never on a TLS
//! connection, whose caller could set it to anything.

use tonic::Request;

use crate::domain::{Caller, Peer};

/// Envoy's and Istio's header, whose `URI=` field holds the client
/// certificate's SPIFFE id.
const XFCC: &str = "x-forwarded-client-cert";

/// The caller of `request`: its connection's certificate over TLS, else
/// the one it names in `header` (when one is trusted); anonymous when it
/// names none.
pub(super) fn caller<T>(request: &Request<T>, header: Option<&http::HeaderName>) -> Caller {
    if let Some(certified) = request
        .extensions()
        .get::<Peer>()
        .and_then(|peer| peer.certified.as_ref())
    {
        return certified.clone();
    }
    header
        .and_then(|name| request.metadata().as_ref().get(name))
        .and_then(|value| value.to_str().ok())
        .and_then(|value| match header {
            Some(name) if name.as_str() == XFCC => xfcc_uri(value).map(identity),
            _ => Some(identity(value.trim())),
        })
        .unwrap_or(Caller::Anonymous)
}

/// A SPIFFE id, or else a DNS-like name (Linkerd's `l5d-client-id` is one).
fn identity(value: &str) -> Caller {
    if value.starts_with("spiffe://") {
        Caller::Spiffe(value.into())
    } else {
        Caller::Dns(value.into())
    }
}

/// The `URI=` field of the last element of an `x-forwarded-client-cert`
/// value: each proxy appends an element, and the last is the one the proxy
/// in front of the gateway added for the connection it accepted.
fn xfcc_uri(value: &str) -> Option<&str> {
    let element = value.rsplit(',').next()?;
    element.split(';').find_map(|field| {
        let (key, value) = field.trim().split_once('=')?;
        key.eq_ignore_ascii_case("uri")
            .then(|| value.trim_matches('"'))
            .filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(header: &str, value: &str) -> Request<()> {
        let mut request = Request::new(());
        request.metadata_mut().insert(
            header.parse::<tonic::metadata::MetadataKey<_>>().unwrap(),
            value.parse().unwrap(),
        );
        request
    }

    #[test]
    fn a_trusted_header_names_the_caller() {
        let l5d = http::HeaderName::from_static("l5d-client-id");
        let r = request(
            "l5d-client-id",
            "web.shop.serviceaccount.identity.linkerd.cluster.local",
        );
        assert_eq!(
            caller(&r, Some(&l5d)),
            Caller::Dns("web.shop.serviceaccount.identity.linkerd.cluster.local".into())
        );
        // Not trusted, not read.
        assert_eq!(caller(&r, None), Caller::Anonymous);
        // Over TLS the certificate speaks, whatever the header says.
        let mut tls = r;
        let checkout = Caller::Spiffe("spiffe://example.org/ns/shop/sa/checkout".into());
        tls.extensions_mut().insert(Peer {
            certified: Some(checkout.clone()),
            ..Peer::default()
        });
        assert_eq!(caller(&tls, Some(&l5d)), checkout);
        tls.extensions_mut().insert(Peer {
            certified: Some(Caller::Anonymous),
            ..Peer::default()
        });
        assert_eq!(caller(&tls, Some(&l5d)), Caller::Anonymous);
        let absent = Request::new(());
        assert_eq!(caller(&absent, Some(&l5d)), Caller::Anonymous);
    }

    #[test]
    fn envoys_header_gives_its_uri() {
        let xfcc = http::HeaderName::from_static(XFCC);
        let r = request(
            XFCC,
            "By=spiffe://td/ns/a/sa/gw;URI=spiffe://td/ns/x/sa/old,\
             By=spiffe://td/ns/a/sa/gw;Hash=abc;Subject=\"CN=x\";URI=spiffe://td/ns/shop/sa/checkout",
        );
        assert_eq!(
            caller(&r, Some(&xfcc)),
            Caller::Spiffe("spiffe://td/ns/shop/sa/checkout".into())
        );
        let no_uri = request(XFCC, "By=spiffe://td/ns/a/sa/gw;Hash=abc");
        assert_eq!(caller(&no_uri, Some(&xfcc)), Caller::Anonymous);
    }
}
