//! Finished spans encoded straight into an OTLP `ExportTraceServiceRequest`
//! (opentelemetry-proto's `collector/trace/v1`), field by field into one
//! reused buffer: no intermediate message structs, no string copies. The
//! gateway's spans have a fixed shape, so the encoder knows each of them.
//!
//! Field numbers are those of `opentelemetry/proto/trace/v1/trace.proto`,
//! `common/v1/common.proto` and `resource/v1/resource.proto`; the unit tests
//! decode the output with the `opentelemetry-proto` crate.

use std::fmt::Write as _;
use std::net::SocketAddr;

use opentelemetry::{Key, Value};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use super::finished::{FinishedSpan, Side};
use crate::proto::cognito_identity_service_server::SERVICE_NAME;

/// `Span.SpanKind`.
const KIND_SERVER: u64 = 2;
const KIND_CLIENT: u64 = 3;
/// `Status.StatusCode`: ERROR.
const STATUS_ERROR: u64 = 2;
/// `Span.attributes` and `Resource.attributes`/`InstrumentationScope.attributes`.
const SPAN_ATTRIBUTES: u32 = 9;
const RESOURCE_ATTRIBUTES: u32 = 1;

/// The parts of every export that do not change: the resource and the
/// instrumentation scope, encoded once.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    /// `ResourceSpans.resource` as an encoded field.
    resource: Vec<u8>,
    /// `ScopeSpans.scope` as an encoded field.
    scope: Vec<u8>,
}

impl Header {
    /// The resource's attributes (from the environment) and the scope.
    pub(crate) fn new<'a>(resource: impl IntoIterator<Item = (&'a Key, &'a Value)>) -> Self {
        let mut attributes = Vec::new();
        for (key, value) in resource {
            match value {
                Value::Bool(b) => bool_attr(&mut attributes, RESOURCE_ATTRIBUTES, key, *b),
                Value::I64(i) => int_attr(&mut attributes, RESOURCE_ATTRIBUTES, key, *i),
                Value::String(s) => str_attr(&mut attributes, RESOURCE_ATTRIBUTES, key, s.as_str()),
                other => str_attr(
                    &mut attributes,
                    RESOURCE_ATTRIBUTES,
                    key,
                    &other.to_string(),
                ),
            }
        }
        let mut resource = Vec::new();
        bytes_field(&mut resource, 1, &attributes);
        let mut scope_body = Vec::new();
        bytes_field(&mut scope_body, 1, super::SCOPE_NAME.as_bytes());
        bytes_field(&mut scope_body, 2, env!("CARGO_PKG_VERSION").as_bytes());
        let mut scope = Vec::new();
        bytes_field(&mut scope, 1, &scope_body);
        Self { resource, scope }
    }
}

/// Reusable buffers for encoding exports.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    spans: Vec<u8>,
    span: Vec<u8>,
    text: String,
}

impl Encoder {
    /// `spans` as one `ExportTraceServiceRequest`, written into `out`
    /// (cleared first).
    pub(crate) fn encode(&mut self, header: &Header, spans: &[FinishedSpan], out: &mut Vec<u8>) {
        self.spans.clear();
        for span in spans {
            self.span.clear();
            encode_span(span, &mut self.span, &mut self.text);
            bytes_field(&mut self.spans, 2, &self.span);
        }
        let scope_spans = header.scope.len() + self.spans.len();
        let resource_spans = header.resource.len() + field_len(scope_spans);
        out.clear();
        out.reserve(field_len(resource_spans));
        len_prefix(out, 1, resource_spans);
        out.extend_from_slice(&header.resource);
        len_prefix(out, 2, scope_spans);
        out.extend_from_slice(&header.scope);
        out.extend_from_slice(&self.spans);
    }
}

fn encode_span(span: &FinishedSpan, buf: &mut Vec<u8>, text: &mut String) {
    bytes_field(buf, 1, &span.trace_id);
    bytes_field(buf, 2, &span.span_id);
    if let Some(state) = &span.trace_state {
        bytes_field(buf, 3, state.as_bytes());
    }
    if let Some(parent) = &span.parent_span_id {
        bytes_field(buf, 4, parent);
    }
    let error = match &span.side {
        Side::Server {
            name,
            method,
            status,
            server,
            client,
            cache_outcome,
        } => {
            bytes_field(buf, 5, name.as_bytes());
            varint_field(buf, 6, KIND_SERVER);
            times(buf, span);
            let a = SPAN_ATTRIBUTES;
            str_attr(buf, a, "rpc.system", "grpc");
            str_attr(buf, a, "rpc.service", SERVICE_NAME);
            str_attr(buf, a, "rpc.method", method);
            int_attr(buf, a, "rpc.grpc.status_code", i64::from(*status));
            address(buf, ["server.address", "server.port"], *server, text);
            address(buf, ["client.address", "client.port"], *client, text);
            if let Some(outcome) = cache_outcome {
                str_attr(buf, a, "cache.outcome", outcome);
            }
            // The RPC conventions: on a server, only these codes are errors
            // of the server (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
            // INTERNAL, UNAVAILABLE, DATA_LOSS); the others are the caller's.
            matches!(status, 2 | 4 | 12 | 13 | 14 | 15)
        }
        Side::Client {
            operation,
            region,
            request_id,
            http_status,
        } => {
            let name = ["CognitoIdentity/", operation];
            len_prefix(buf, 5, name.iter().map(|s| s.len()).sum());
            name.iter()
                .for_each(|s| buf.extend_from_slice(s.as_bytes()));
            varint_field(buf, 6, KIND_CLIENT);
            times(buf, span);
            let a = SPAN_ATTRIBUTES;
            str_attr(buf, a, "rpc.system", "aws-api");
            str_attr(buf, a, "rpc.service", "CognitoIdentity");
            str_attr(buf, a, "rpc.method", operation);
            str_attr(buf, a, "cloud.region", region);
            if let Some(id) = request_id {
                str_attr(buf, a, "aws.request_id", id);
            }
            if let Some(status) = http_status {
                int_attr(buf, a, "http.response.status_code", i64::from(*status));
            }
            span.error_type.is_some()
        }
    };
    if let Some(error) = &span.error_type {
        str_attr(buf, SPAN_ATTRIBUTES, "error.type", error);
    }
    if error {
        // Status { code = ERROR }
        len_prefix(buf, 15, 2);
        varint_field(buf, 3, STATUS_ERROR);
    }
}

fn times(buf: &mut Vec<u8>, span: &FinishedSpan) {
    encode_key(7, WireType::SixtyFourBit, buf);
    buf.extend_from_slice(&span.start_unix_nanos.to_le_bytes());
    encode_key(8, WireType::SixtyFourBit, buf);
    buf.extend_from_slice(&span.end_unix_nanos.to_le_bytes());
}

/// An address and a port, the address formatted here rather than on the
/// request's path.
fn address(
    buf: &mut Vec<u8>,
    [address, port]: [&str; 2],
    addr: Option<SocketAddr>,
    text: &mut String,
) {
    let Some(addr) = addr else { return };
    text.clear();
    let _ = write!(text, "{}", addr.ip());
    str_attr(buf, SPAN_ATTRIBUTES, address, text);
    int_attr(buf, SPAN_ATTRIBUTES, port, i64::from(addr.port()));
}

/// Every tag used here is below 16, so a key takes one byte.
const KEY_LEN: usize = 1;

/// The bytes of a length-delimited field whose content is `len` bytes.
fn field_len(len: usize) -> usize {
    KEY_LEN + encoded_len_varint(len as u64) + len
}

fn len_prefix(buf: &mut Vec<u8>, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn bytes_field(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    len_prefix(buf, tag, bytes.len());
    buf.extend_from_slice(bytes);
}

fn varint_field(buf: &mut Vec<u8>, tag: u32, value: u64) {
    encode_key(tag, WireType::Varint, buf);
    encode_varint(value, buf);
}

/// A `KeyValue` whose `AnyValue` is `value_len` bytes, up to the value.
fn key_value(buf: &mut Vec<u8>, tag: u32, key: &str, value_len: usize) {
    len_prefix(buf, tag, field_len(key.len()) + field_len(value_len));
    bytes_field(buf, 1, key.as_bytes());
    len_prefix(buf, 2, value_len);
}

fn str_attr(buf: &mut Vec<u8>, tag: u32, key: impl AsRef<str>, value: &str) {
    key_value(buf, tag, key.as_ref(), field_len(value.len()));
    bytes_field(buf, 1, value.as_bytes()); // AnyValue.string_value
}

fn int_attr(buf: &mut Vec<u8>, tag: u32, key: impl AsRef<str>, value: i64) {
    key_value(
        buf,
        tag,
        key.as_ref(),
        KEY_LEN + encoded_len_varint(value as u64),
    );
    varint_field(buf, 3, value as u64); // AnyValue.int_value
}

fn bool_attr(buf: &mut Vec<u8>, tag: u32, key: impl AsRef<str>, value: bool) {
    key_value(buf, tag, key.as_ref(), KEY_LEN + 1);
    varint_field(buf, 2, u64::from(value)); // AnyValue.bool_value
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    use prost::Message;

    fn attrs(
        list: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    ) -> Vec<(String, Option<Any>)> {
        list.iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().and_then(|v| v.value)))
            .collect()
    }

    fn s(v: &str) -> Option<Any> {
        Some(Any::StringValue(v.to_owned()))
    }

    #[test]
    fn decodes_as_otlp() {
        let resource = [
            KeyValue::new("service.name", "gw"),
            KeyValue::new("replicas", 3),
            KeyValue::new("canary", true),
        ];
        let header = Header::new(resource.iter().map(|kv| (&kv.key, &kv.value)));
        let server = FinishedSpan {
            trace_id: [7; 16],
            span_id: [1; 8],
            parent_span_id: Some([2; 8]),
            trace_state: Some("vendor=x".into()),
            start_unix_nanos: 1_700_000_000_000_000_000,
            end_unix_nanos: 1_700_000_000_000_123_456,
            error_type: Some("ResourceNotFoundException".into()),
            side: Side::Server {
                name: "cognito_identity_gateway.v1.CognitoIdentityService/GetId",
                method: "GetId",
                status: 5,
                server: Some("127.0.0.1:50051".parse().unwrap()),
                client: Some("[::1]:40000".parse().unwrap()),
                cache_outcome: Some("miss"),
            },
        };
        let client = FinishedSpan {
            trace_id: [7; 16],
            span_id: [3; 8],
            parent_span_id: Some([1; 8]),
            trace_state: None,
            start_unix_nanos: 5,
            end_unix_nanos: 9,
            error_type: None,
            side: Side::Client {
                operation: "GetId",
                region: "eu-west-1".into(),
                request_id: Some("req-1".into()),
                http_status: Some(200),
            },
        };
        let mut out = Vec::new();
        Encoder::default().encode(&header, &[server, client], &mut out);
        let export = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();

        assert_eq!(export.resource_spans.len(), 1);
        let rs = &export.resource_spans[0];
        assert_eq!(
            attrs(&rs.resource.as_ref().unwrap().attributes),
            vec![
                ("service.name".into(), s("gw")),
                ("replicas".into(), Some(Any::IntValue(3))),
                ("canary".into(), Some(Any::BoolValue(true))),
            ]
        );
        let scope = &rs.scope_spans[0];
        assert_eq!(
            scope.scope.as_ref().unwrap().name,
            "cognito-identity-gateway"
        );
        let [server, client] = &scope.spans[..] else {
            panic!("two spans: {:?}", scope.spans)
        };
        assert_eq!(server.trace_id, vec![7; 16]);
        assert_eq!(server.span_id, vec![1; 8]);
        assert_eq!(server.parent_span_id, vec![2; 8]);
        assert_eq!(server.trace_state, "vendor=x");
        assert_eq!(
            server.name,
            "cognito_identity_gateway.v1.CognitoIdentityService/GetId"
        );
        assert_eq!(server.kind, SpanKind::Server as i32);
        assert_eq!(server.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(server.end_time_unix_nano, 1_700_000_000_000_123_456);
        assert_eq!(
            attrs(&server.attributes),
            vec![
                ("rpc.system".into(), s("grpc")),
                (
                    "rpc.service".into(),
                    s("cognito_identity_gateway.v1.CognitoIdentityService")
                ),
                ("rpc.method".into(), s("GetId")),
                ("rpc.grpc.status_code".into(), Some(Any::IntValue(5))),
                ("server.address".into(), s("127.0.0.1")),
                ("server.port".into(), Some(Any::IntValue(50051))),
                ("client.address".into(), s("::1")),
                ("client.port".into(), Some(Any::IntValue(40000))),
                ("cache.outcome".into(), s("miss")),
                ("error.type".into(), s("ResourceNotFoundException")),
            ]
        );
        // NOT_FOUND is the caller's error, not the server's.
        assert_eq!(server.status, None);

        assert_eq!(client.name, "CognitoIdentity/GetId");
        assert_eq!(client.kind, SpanKind::Client as i32);
        assert_eq!(client.parent_span_id, vec![1; 8]);
        assert!(client.trace_state.is_empty());
        assert_eq!(
            attrs(&client.attributes),
            vec![
                ("rpc.system".into(), s("aws-api")),
                ("rpc.service".into(), s("CognitoIdentity")),
                ("rpc.method".into(), s("GetId")),
                ("cloud.region".into(), s("eu-west-1")),
                ("aws.request_id".into(), s("req-1")),
                ("http.response.status_code".into(), Some(Any::IntValue(200))),
            ]
        );
        assert_eq!(client.status, None);
    }

    #[test]
    fn failures_of_the_server_and_of_the_upstream_are_errors() {
        let header = Header::new([]);
        let span = |side, error_type: Option<&str>| FinishedSpan {
            trace_id: [1; 16],
            span_id: [1; 8],
            parent_span_id: None,
            trace_state: None,
            start_unix_nanos: 0,
            end_unix_nanos: 0,
            error_type: error_type.map(Into::into),
            side,
        };
        let server = span(
            Side::Server {
                name: "n",
                method: "GetId",
                status: 14,
                server: None,
                client: None,
                cache_outcome: None,
            },
            Some("UNAVAILABLE"),
        );
        let client = span(
            Side::Client {
                operation: "GetId",
                region: "r".into(),
                request_id: None,
                http_status: None,
            },
            Some("UPSTREAM_TIMEOUT"),
        );
        let mut out = Vec::new();
        Encoder::default().encode(&header, &[server, client], &mut out);
        let export = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
        for span in &export.resource_spans[0].scope_spans[0].spans {
            assert!(span.parent_span_id.is_empty());
            assert_eq!(
                span.status.as_ref().map(|s| s.code),
                Some(StatusCode::Error as i32),
                "{span:?}"
            );
        }
    }
}
