//! The gateway's binary as a child process: reading its log as it comes and
//! connecting once it listens.

use std::process::Child;
use std::thread::JoinHandle;
use std::time::Duration;

use tonic::transport::Channel;

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
