//! Generates the gRPC code from `proto/` with protox, a pure-Rust protobuf
//! compiler, so a machine with only the Rust toolchain builds the crate. The
//! encoded descriptor set is kept too: gRPC reflection serves it.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/cognito_identity_gateway/v1/gateway.proto";
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("gateway_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
