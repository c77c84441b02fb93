//! The emulator's request handling: routing, the AWS JSON protocol's
//! parsing, the SigV4 check and the operations, on arbitrary requests
//! written as `METHOD PATH`, header lines, a blank line and the body.

#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use cognito_identity_gateway::emulator::{Emulator, EmulatorSettings};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

#[path = "request.rs"]
mod request;

/// A fixed signing key: making one per input would be most of the work.
const SIGNING_KEY: &str = include_str!("../fixtures/emulator-signing-key.pem");

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        // Paused time: an injected delay costs nothing.
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((parts, body)) = request::parse(data) else {
        return;
    };
    // A fresh emulator per input: state from one input never leaks into
    // the next, and memory does not grow with the run.
    let emulator = Emulator::new(EmulatorSettings {
        signing_key_pem: Some(SIGNING_KEY.to_owned()),
        ..EmulatorSettings::default()
    })
    .expect("the emulator starts");
    emulator.add_default_pool();
    runtime().block_on(async {
        let response = emulator.answer(&parts, &Bytes::from(body)).await;
        let status = response.status();
        let body = response.into_body().collect().await.expect("a full body");
        assert!(status.as_u16() >= 200, "{status}");
        let _ = body.to_bytes();
    });
});
