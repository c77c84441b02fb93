//! A stand-in for the one fault the emulator cannot show: a connection that
//! is accepted and never answered, whose closing the test can observe. It is
//! a test double, named as such; every other fault comes from the emulator.

use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// A loopback HTTP endpoint that accepts connections and reads requests but
/// never answers, as a hung upstream does. It lives as long as the test's
/// runtime.
pub struct SilentEndpoint {
    /// Its URL.
    pub url: String,
    closed: Arc<Notify>,
}

impl SilentEndpoint {
    /// Starts one.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let closed = Arc::new(Notify::new());
        let notify = closed.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let notify = notify.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                    notify.notify_one();
                });
            }
        });
        Self { url, closed }
    }

    /// Resolves when a client has closed a connection to it.
    pub async fn connection_closed(&self) {
        self.closed.notified().await;
    }
}

/// The URL of a [`SilentEndpoint`], for tests that only need it to hang.
pub async fn silent_endpoint() -> String {
    SilentEndpoint::start().await.url
}
