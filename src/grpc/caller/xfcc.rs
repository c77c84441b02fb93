//! Envoy's `x-forwarded-client-cert` (XFCC), parsed as Envoy defines it:
//! elements separated by commas, one per proxy that handled the request,
//! each appended by that proxy; within an element, `key=value` pairs
//! separated by semicolons, keys case-insensitive. A value holding `,`,
//! `;` or `=` is double-quoted, and a quote inside it is written `\"`.
//!
//! Quoting is what the header's safety rests on: Envoy quotes the client
//! certificate's Subject, which the certificate's holder chose, so a
//! Subject such as `CN=x,URI=spiffe://td/ns/admin/sa/root` is one value of
//! the element, not a second element. A header is read whole or not at
//! all: an unterminated quote, a quote in the middle of a bare value, a
//! pair without `=`, or an empty element or pair makes it unreadable, and
//! the caller anonymous, rather than read by a guess.
//!
//! The grammar, with OWS the optional spaces and tabs around delimiters:
//!
//! ```text
//! header  = OWS element *( OWS "," OWS element ) OWS
//! element = pair *( OWS ";" OWS pair )
//! pair    = key "=" OWS value
//! key     = 1*( ALPHA / DIGIT / "-" / "_" )
//! value   = quoted / bare
//! quoted  = DQUOTE *( any but DQUOTE and "\" / "\" any ) DQUOTE
//! bare    = *( any but DQUOTE, "," and ";" )   ; surrounding OWS dropped
//! ```
//!
//! Inside quotes a backslash takes the next character as it is, so `\"` is
//! a quote and `\\` a backslash (the Subject, as Envoy prints it, escapes
//! its own backslashes).

use std::borrow::Cow;

use super::Rejection;
use super::names::{is_dns_name, is_spiffe_id};
use crate::domain::Caller;

/// One `key=value` pair of an element, its value unquoted.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Pair<'a> {
    /// The key, as written (compared without regard to case).
    pub(super) key: &'a str,
    /// The value, its quotes and escapes removed.
    pub(super) value: Cow<'a, str>,
}

/// The element's pairs, in order.
pub(super) type Element<'a> = Vec<Pair<'a>>;

/// The header did not parse.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Malformed;

/// The caller the element the nearest proxy added (the last) names: its
/// `URI` when that is a SPIFFE id, else its `DNS` name.
///
/// - Two `URI` pairs are refused as ambiguous: a SPIFFE certificate
///   carries exactly one URI SAN, and Envoy writes one pair per URI SAN.
/// - A `URI` that is not a SPIFFE id names no one (an empty `URI=` is how
///   Envoy says the certificate has none); the `DNS` pairs are read then.
/// - Two or more `DNS` pairs are refused as ambiguous too: the policy
///   names a caller by one DNS name, and which of a certificate's several
///   names it should be judged by is not the gateway's to guess.
pub(super) fn caller(header: &str) -> Result<Caller, Rejection> {
    let elements = parse(header).map_err(|Malformed| Rejection::Malformed)?;
    let Some(element) = elements.last() else {
        return Err(Rejection::Malformed);
    };
    let mut uris = values(element, "uri");
    let uri = match (uris.next(), uris.next()) {
        (_, Some(_)) => return Err(Rejection::Ambiguous),
        (uri, None) => uri,
    };
    if let Some(uri) = uri.filter(|uri| is_spiffe_id(uri)) {
        return Ok(Caller::Spiffe(uri.into()));
    }
    let mut names = values(element, "dns");
    match (names.next(), names.next()) {
        (_, Some(_)) => Err(Rejection::Ambiguous),
        (Some(name), None) if is_dns_name(name) => Ok(Caller::Dns(name.into())),
        _ => Err(Rejection::NotAnIdentity),
    }
}

/// The values of `element`'s pairs whose key is `key` (lowercase).
fn values<'e>(element: &'e [Pair<'_>], key: &'static str) -> impl Iterator<Item = &'e str> {
    element
        .iter()
        .filter(move |pair| pair.key.eq_ignore_ascii_case(key))
        .map(|pair| &*pair.value)
}

/// Every element of `header`, in order (the last is the nearest proxy's).
pub(super) fn parse(header: &str) -> Result<Vec<Element<'_>>, Malformed> {
    let mut cursor = Cursor {
        text: header,
        at: 0,
    };
    let mut elements = Vec::new();
    let mut pairs = Vec::new();
    loop {
        cursor.skip_ows();
        let key = cursor.key()?;
        if cursor.next() != Some(b'=') {
            return Err(Malformed);
        }
        cursor.skip_ows();
        let value = cursor.value()?;
        pairs.push(Pair { key, value });
        cursor.skip_ows();
        match cursor.next() {
            None => {
                elements.push(pairs);
                return Ok(elements);
            }
            Some(b';') => {}
            Some(b',') => elements.push(std::mem::take(&mut pairs)),
            // Only after a quoted value: a bare one runs to a delimiter.
            Some(_) => return Err(Malformed),
        }
    }
}

/// A position in the header. Every delimiter is ASCII, and an ASCII byte
/// is never part of a longer UTF-8 character, so slicing at delimiters
/// stays on character boundaries.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn key(&mut self) -> Result<&'a str, Malformed> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            self.at += 1;
        }
        match &self.text[start..self.at] {
            "" => Err(Malformed),
            key => Ok(key),
        }
    }

    fn value(&mut self) -> Result<Cow<'a, str>, Malformed> {
        if self.peek() == Some(b'"') {
            self.at += 1;
            return self.quoted();
        }
        let start = self.at;
        while let Some(byte) = self.peek() {
            match byte {
                b',' | b';' => break,
                b'"' => return Err(Malformed),
                _ => self.at += 1,
            }
        }
        Ok(Cow::Borrowed(
            self.text[start..self.at].trim_end_matches([' ', '\t']),
        ))
    }

    /// The rest of a quoted value, its opening quote read.
    fn quoted(&mut self) -> Result<Cow<'a, str>, Malformed> {
        let mut start = self.at;
        let mut unescaped: Option<String> = None;
        loop {
            match self.next().ok_or(Malformed)? {
                b'"' => {
                    let tail = &self.text[start..self.at - 1];
                    return Ok(match unescaped {
                        Some(mut value) => {
                            value.push_str(tail);
                            Cow::Owned(value)
                        }
                        None => Cow::Borrowed(tail),
                    });
                }
                b'\\' => {
                    unescaped
                        .get_or_insert_with(String::new)
                        .push_str(&self.text[start..self.at - 1]);
                    // The escaped character starts the next run; stepping
                    // over one byte keeps a quote or backslash from being
                    // read as a delimiter (the later bytes of a longer
                    // character are never either).
                    start = self.at;
                    self.next().ok_or(Malformed)?;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "spiffe://td/ns/admin/sa/root";
    const CHECKOUT: &str = "spiffe://td/ns/shop/sa/checkout";

    fn pairs(header: &str) -> Vec<Vec<(String, String)>> {
        parse(header)
            .unwrap()
            .into_iter()
            .map(|element| {
                element
                    .into_iter()
                    .map(|p| (p.key.to_owned(), p.value.into_owned()))
                    .collect()
            })
            .collect()
    }

    fn spiffe(id: &str) -> Result<Caller, Rejection> {
        Ok(Caller::Spiffe(id.into()))
    }

    #[test]
    fn envoys_documented_examples_parse() {
        let one = "By=http://frontend.lyft.com;\
            Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;\
            Subject=\"/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client\";\
            URI=http://testclient.lyft.com";
        assert_eq!(
            pairs(one),
            [[
                ("By", "http://frontend.lyft.com"),
                (
                    "Hash",
                    "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688"
                ),
                (
                    "Subject",
                    "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client"
                ),
                ("URI", "http://testclient.lyft.com"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))]
        );
        // Their URIs are no SPIFFE ids: they name no caller.
        assert_eq!(caller(one), Err(Rejection::NotAnIdentity));

        let two = "By=http://frontend.lyft.com;\
            Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;\
            URI=http://testclient.lyft.com,\
            By=http://backend.lyft.com;\
            Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;\
            URI=http://frontend.lyft.com";
        let elements = pairs(two);
        assert_eq!(elements.len(), 2);
        assert_eq!(
            elements[1][2],
            ("URI".to_owned(), "http://frontend.lyft.com".to_owned())
        );
        assert_eq!(caller(two), Err(Rejection::NotAnIdentity));

        let dns = "By=http://frontend.lyft.com;\
            Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;\
            Subject=\"/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client\";\
            URI=http://testclient.lyft.com;DNS=lyft.com;DNS=www.lyft.com";
        assert_eq!(pairs(dns)[0].len(), 6);
        assert_eq!(caller(dns), Err(Rejection::Ambiguous));
    }

    #[test]
    fn istios_header_names_the_caller_of_the_last_element() {
        let istio = format!(
            "By=spiffe://cluster.local/ns/identity/sa/gateway;\
             Hash=2d3a8c4f;Subject=\"\";URI={CHECKOUT}"
        );
        assert_eq!(caller(&istio), spiffe(CHECKOUT));
        // APPEND_FORWARD: an earlier proxy's element, then the sidecar's.
        let forwarded = format!("By=spiffe://td/ns/edge/sa/edge;URI={ADMIN},{istio}");
        assert_eq!(caller(&forwarded), spiffe(CHECKOUT));
        // Keys are case-insensitive; spaces around delimiters, and after
        // the equals sign, are dropped.
        assert_eq!(
            caller(&format!(" by=spiffe://td/ns/x/sa/y ; uri= {ADMIN} ")),
            spiffe(ADMIN)
        );
    }

    #[test]
    fn a_quoted_subject_holding_a_uri_is_one_value() {
        let forged = format!(
            "By=spiffe://td/ns/identity/sa/gateway;Hash=4f1c;\
             Subject=\"CN=x,URI={ADMIN}\";URI={CHECKOUT}"
        );
        let elements = pairs(&forged);
        assert_eq!(elements.len(), 1);
        assert_eq!(elements[0][2].1, format!("CN=x,URI={ADMIN}"));
        assert_eq!(caller(&forged), spiffe(CHECKOUT));
        // With no URI of its own, the element names no one.
        let alone = format!("By=spiffe://td/ns/a/sa/b;Subject=\"CN=x;URI={ADMIN}\"");
        assert_eq!(caller(&alone), Err(Rejection::NotAnIdentity));
    }

    #[test]
    fn a_quoted_uri_holding_a_second_uri_names_no_one() {
        let forged = format!("By=spiffe://td/ns/a/sa/b;URI=\"{CHECKOUT},URI={ADMIN}\"");
        assert_eq!(pairs(&forged)[0][1].1, format!("{CHECKOUT},URI={ADMIN}"));
        assert_eq!(caller(&forged), Err(Rejection::NotAnIdentity));
        // A quoted value that is a SPIFFE id once unquoted still is one.
        assert_eq!(caller(&format!("URI=\"{ADMIN}\"")), spiffe(ADMIN));
    }

    #[test]
    fn escaped_quotes_stay_inside_their_value() {
        let forged = format!(r#"Subject="CN=\",URI={ADMIN},\"";URI={CHECKOUT}"#);
        let elements = pairs(&forged);
        assert_eq!(elements.len(), 1);
        assert_eq!(elements[0][0].1, format!(r#"CN=",URI={ADMIN},""#));
        assert_eq!(caller(&forged), spiffe(CHECKOUT));
        // An escaped backslash before the closing quote ends the value.
        assert_eq!(
            pairs(r#"Subject="CN=a\\";URI=x"#)[0],
            [
                ("Subject".to_owned(), r"CN=a\".to_owned()),
                ("URI".to_owned(), "x".to_owned())
            ]
        );
        // Escapes around characters of more than one byte.
        assert_eq!(pairs("Subject=\"\\é\u{1F600}\"")[0][0].1, "é\u{1F600}");
    }

    #[test]
    fn a_uri_that_is_no_spiffe_id_is_never_an_identity() {
        for uri in [
            "admin.ops.svc",
            "checkout.shop.svc",
            "https://td/ns/admin",
            "spiffe://td/ns/admin/",
            "spiffe://td/ns/ad%6Din",
        ] {
            assert_eq!(
                caller(&format!("By=spiffe://td/ns/a/sa/b;URI={uri}")),
                Err(Rejection::NotAnIdentity),
                "{uri}"
            );
        }
        // A DNS SAN beside it names the caller, as the certificate's DNS
        // name; the URI is never read as one.
        assert_eq!(
            caller("URI=admin.ops.svc;DNS=web.shop.svc"),
            Ok(Caller::Dns("web.shop.svc".into()))
        );
    }

    #[test]
    fn a_dns_name_alone_names_the_caller() {
        assert_eq!(
            caller("By=spiffe://td/ns/a/sa/b;Hash=ab;DNS=web.shop.svc"),
            Ok(Caller::Dns("web.shop.svc".into()))
        );
        // Envoy writes an empty URI= when the certificate has no URI SAN.
        assert_eq!(
            caller("By=spiffe://td/ns/a/sa/b;URI=;DNS=web.shop.svc"),
            Ok(Caller::Dns("web.shop.svc".into()))
        );
        for bad in [
            "DNS=",
            "DNS=*.shop.svc",
            "DNS=\"web.shop.svc,admin.ops.svc\"",
        ] {
            assert_eq!(caller(bad), Err(Rejection::NotAnIdentity), "{bad}");
        }
        assert_eq!(
            caller("By=spiffe://td/ns/a/sa/b;Hash=ab"),
            Err(Rejection::NotAnIdentity)
        );
    }

    #[test]
    fn two_values_where_one_is_expected_name_no_one() {
        assert_eq!(
            caller(&format!("URI={CHECKOUT};URI={ADMIN}")),
            Err(Rejection::Ambiguous)
        );
        assert_eq!(
            caller(&format!("uri={ADMIN};URI={ADMIN}")),
            Err(Rejection::Ambiguous)
        );
        assert_eq!(
            caller("DNS=web.shop.svc;DNS=admin.ops.svc"),
            Err(Rejection::Ambiguous)
        );
        // A SPIFFE URI settles it, whatever the DNS names.
        assert_eq!(
            caller(&format!("URI={CHECKOUT};DNS=a.svc;DNS=b.svc")),
            spiffe(CHECKOUT)
        );
        // Only the last element counts: two URIs across elements are two
        // proxies' certificates.
        assert_eq!(
            caller(&format!("URI={ADMIN},URI={CHECKOUT}")),
            spiffe(CHECKOUT)
        );
    }

    #[test]
    fn a_header_that_does_not_parse_names_no_one() {
        for bad in [
            "".to_owned(),
            " ".to_owned(),
            ",".to_owned(),
            format!("URI={ADMIN},"),
            format!(",URI={ADMIN}"),
            format!("URI={ADMIN};"),
            format!("By=x;;URI={ADMIN}"),
            format!("By=x,,URI={ADMIN}"),
            format!("URI={ADMIN};Subject"),
            format!("Subject;URI={ADMIN}"),
            format!("=x;URI={ADMIN}"),
            format!("Subject=\"CN=x;URI={ADMIN}"),
            format!("URI={ADMIN};Subject=\"CN=x\\\""),
            format!("URI={ADMIN};Subject=\"CN=x\\"),
            format!("URI={ADMIN};Subject=\"CN=x\"junk"),
            format!("URI={ADMIN};Subject=CN=\"x\""),
            format!("URI=\"{ADMIN}\"\"\""),
            format!("U RI={ADMIN}"),
            format!("URI ={ADMIN}"),
            format!("URI:{ADMIN}"),
        ] {
            assert_eq!(parse(&bad), Err(Malformed), "{bad:?}");
            assert_eq!(caller(&bad), Err(Rejection::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn bare_values_may_hold_equals_signs_and_quoted_ones_anything() {
        assert_eq!(
            pairs("Cert=a%3Db=;Chain=\"x;y,z=w\"")[0],
            [
                ("Cert".to_owned(), "a%3Db=".to_owned()),
                ("Chain".to_owned(), "x;y,z=w".to_owned())
            ]
        );
        assert_eq!(pairs("Subject=\"\"")[0][0].1, "");
    }
}
