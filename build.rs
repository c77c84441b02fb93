//! Generates the gRPC code from `proto/` with protox, a pure-Rust protobuf
//! compiler, so a machine with only the Rust toolchain builds the crate. The
//! encoded descriptor set is kept too: gRPC reflection serves it. The API
//! service's method names and paths are written out as constants, so that
//! the code that labels and routes calls takes them from the proto. And the
//! commit the binary is built from is kept for `--version`.

use std::fmt::Write as _;

use prost::Message;

/// The service whose methods are written out.
const API_SERVICE: &str = "CognitoIdentityService";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/cognito_identity_gateway/v1/gateway.proto";
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
    revision();
    let descriptors = protox::compile([proto], ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("gateway_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    let (package, service) = descriptors
        .file
        .iter()
        .find_map(|file| {
            let service = file.service.iter().find(|s| s.name() == API_SERVICE)?;
            Some((file.package().to_owned(), service.clone()))
        })
        .ok_or("the proto defines no CognitoIdentityService")?;
    let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
    let mut names = String::new();
    writeln!(
        names,
        "/// The API service's methods, in the order the proto declares them: a\n\
         /// static, so that each name has one address (metrics match it by address).\n\
         pub static API_METHODS: [&str; {n}] = {methods:?};\n\
         /// Their gRPC paths, `/{{package}}.{{service}}/{{method}}`, in the same order.\n\
         pub static API_PATHS: [&str; {n}] = {paths:?};\n\
         /// The prefix of the API's paths; health checks and reflection have others.\n\
         pub const API_PREFIX: &str = {prefix:?};",
        n = methods.len(),
        paths = methods
            .iter()
            .map(|m| format!("/{package}.{API_SERVICE}/{m}"))
            .collect::<Vec<_>>(),
        prefix = format!("/{package}.{API_SERVICE}/"),
    )?;
    std::fs::write(out_dir.join("api_methods.rs"), names)?;

    // Malformed request bytes are the caller's fault: see proto::codec.
    tonic_prost_build::configure()
        .codec_path("crate::proto::codec::MessageCodec")
        .compile_fds(descriptors)?;
    Ok(())
}

/// Sets `GATEWAY_REVISION` for the crate: the variable of that name when
/// the build is given one (an image built from a source archive), else the
/// checkout's commit, else `unknown`.
fn revision() {
    println!("cargo:rerun-if-env-changed=GATEWAY_REVISION");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    let revision = std::env::var("GATEWAY_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=GATEWAY_REVISION={revision}");
    // A new commit moves HEAD's branch: the revision is read again.
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["symbolic-ref", "-q", "HEAD"])
            .and_then(|branch| git(&["rev-parse", "--git-path", &branch])),
        git(&["rev-parse", "--git-path", "packed-refs"]),
    ]
    .into_iter()
    .flatten()
    {
        println!("cargo:rerun-if-changed={path}");
    }
}
