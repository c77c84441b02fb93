//! The code generated from `proto/` by `build.rs`: messages, the service's
//! server and client, and the API's method names and paths.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("cognito_identity_gateway.v1");

include!(concat!(env!("OUT_DIR"), "/api_methods.rs"));

/// The encoded descriptor set of `proto/`, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/gateway_descriptor.bin"));

/// The codec of the generated services: prost's, but a request whose bytes
/// are not a valid message of its type (bad protobuf, a string that is not
/// UTF-8) is the caller's fault, INVALID_ARGUMENT with the reason
/// MALFORMED_REQUEST naming the field where the bytes allow, rather than
/// prost's INTERNAL.
pub mod codec {
    use std::marker::PhantomData;

    use tonic::Status;
    use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
    use tonic_prost::ProstEncoder;

    use crate::domain::Error;

    /// [`tonic_prost::ProstCodec`] with [`MessageDecoder`].
    #[derive(Debug)]
    pub struct MessageCodec<T, U>(PhantomData<(T, U)>);

    impl<T, U> Default for MessageCodec<T, U> {
        fn default() -> Self {
            Self(PhantomData)
        }
    }

    impl<T, U> Codec for MessageCodec<T, U>
    where
        T: prost::Message + Send + 'static,
        U: prost::Message + Default + Send + 'static,
    {
        type Encode = T;
        type Decode = U;
        type Encoder = ProstEncoder<T>;
        type Decoder = MessageDecoder<U>;

        fn encoder(&mut self) -> Self::Encoder {
            ProstEncoder::default()
        }

        fn decoder(&mut self) -> Self::Decoder {
            MessageDecoder(PhantomData)
        }
    }

    /// Decodes `U`; see the module.
    #[derive(Debug)]
    pub struct MessageDecoder<U>(PhantomData<U>);

    impl<U: prost::Message + Default> Decoder for MessageDecoder<U> {
        type Item = U;
        type Error = Status;

        fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
            U::decode(buf)
                .map(Some)
                .map_err(|e| Status::from(malformed(&e)))
        }

        fn buffer_settings(&self) -> BufferSettings {
            BufferSettings::default()
        }
    }

    /// The domain's error for a decode error: prost says where it failed as
    /// `Message.field: ` segments, innermost first, then what was wrong
    /// (static text: never the bytes themselves).
    pub fn malformed(error: &prost::DecodeError) -> Error {
        let text = error.to_string();
        let detail = text
            .strip_prefix("failed to decode Protobuf message: ")
            .unwrap_or(&text)
            .to_owned();
        let field = detail
            .split(": ")
            .filter_map(|segment| segment.split_once('.'))
            .filter(|(message, field)| {
                !message.is_empty()
                    && !field.is_empty()
                    && field.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            })
            .map(|(_, field)| field.to_owned())
            .last();
        Error::MalformedRequest { field, detail }
    }

    #[cfg(test)]
    mod tests {
        use prost::Message;

        use super::*;
        use crate::proto::{GetIdRequest, GetOpenIdTokenForDeveloperIdentityRequest};

        fn decode<M: Message + Default + std::fmt::Debug>(bytes: &[u8]) -> Error {
            malformed(&M::decode(bytes).unwrap_err())
        }

        #[test]
        fn a_string_that_is_not_utf8_names_its_field() {
            // Field 1 (identity_pool_id), length 2, bytes that are not UTF-8.
            let err = decode::<GetIdRequest>(&[0x0a, 0x02, 0xc3, 0x28]);
            let Error::MalformedRequest { field, detail } = &err else {
                panic!("{err:?}");
            };
            assert_eq!(field.as_deref(), Some("identity_pool_id"));
            assert!(detail.contains("UTF-8"), "{detail}");
            // A map entry's value: the request's field is named.
            let entry = [0x0a, 0x01, b'p', 0x12, 0x01, 0xff];
            let mut bytes = vec![0x1a, entry.len() as u8];
            bytes.extend_from_slice(&entry);
            let err = decode::<GetIdRequest>(&bytes);
            assert!(
                matches!(&err, Error::MalformedRequest { field: Some(f), .. } if f == "logins"),
                "{err:?}"
            );
        }

        #[test]
        fn bytes_that_are_no_message_say_so_without_a_field_or_the_bytes() {
            let secret = b"\xff\xffsecret-token-value";
            let err = decode::<GetOpenIdTokenForDeveloperIdentityRequest>(secret);
            let shown = format!("{err} {err:?}");
            assert!(matches!(err, Error::MalformedRequest { .. }), "{shown}");
            assert!(!shown.contains("secret-token"), "{shown}");
            let status = Status::from(err);
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
        }
    }
}
