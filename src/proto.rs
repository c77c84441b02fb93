//! The code generated from `proto/` by `build.rs`: messages, the service's
//! server and client, and the API's method names and paths.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("cognito_identity_gateway.v1");

include!(concat!(env!("OUT_DIR"), "/api_methods.rs"));

/// The encoded descriptor set of `proto/`, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/gateway_descriptor.bin"));
