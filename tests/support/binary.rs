//! The gateway's binary as a child process: reading its log as it comes and
//! connecting once it listens.

use std::process::Child;
use std::thread::JoinHandle;
use std::time::Duration;

use tonic::transport::Channel;

/// The gateway's binary started with `args` and `env` (and no instance
/// metadata lookups), its standard error read as it comes.
pub fn gateway(args: &[&str], env: &[(&str, &str)]) -> (Child, JoinHandle<String>) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cognito-identity-gateway"))
        .args(args)
        .envs(env.iter().copied())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the gateway starts");
    let log = collect_stderr(&mut child);
    (child, log)
}

/// Reads the child's standard error (piped) until it ends, on a thread of
/// its own: a full pipe would block the gateway.
pub fn collect_stderr(child: &mut Child) -> JoinHandle<String> {
    let mut stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).expect("the log is UTF-8");
        text
    })
}

/// A channel to the gateway on 127.0.0.1:`port`, once it listens (10 s at
/// most).
pub async fn connect(port: u16) -> Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("a valid URL");
    for _ in 0..200 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never listened on port {port}");
}
