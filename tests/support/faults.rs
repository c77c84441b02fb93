//! Stand-ins for faults at an exact moment, which no real server shows on
//! demand. They are test doubles, named as such; everything else in the
//! suite runs against real servers.

use std::time::Duration;

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

/// How long a [`SlowUpstream`] takes.
pub const SLOW: Duration = Duration::from_millis(600);

/// A real upstream made slow: each call waits [`SLOW`] (or `delay`) before
/// going on, so that a test can act while calls are in flight.
pub struct SlowUpstream<U> {
    /// The real upstream.
    pub inner: U,
    /// Added before each call.
    pub delay: Duration,
}

use cognito_identity_gateway::domain::{
    GetCredentialsForIdentityInput, GetCredentialsForIdentityOutput, GetIdInput, GetIdOutput,
    GetOpenIdTokenForDeveloperIdentityInput, GetOpenIdTokenInput, OpenIdToken, Upstream,
};
use cognito_identity_gateway::error::Error;

impl<U: Upstream> Upstream for SlowUpstream<U> {
    async fn get_id(&self, input: &GetIdInput) -> Result<GetIdOutput, Error> {
        tokio::time::sleep(self.delay).await;
        self.inner.get_id(input).await
    }

    async fn get_open_id_token(&self, input: &GetOpenIdTokenInput) -> Result<OpenIdToken, Error> {
        tokio::time::sleep(self.delay).await;
        self.inner.get_open_id_token(input).await
    }

    async fn get_open_id_token_for_developer_identity(
        &self,
        input: &GetOpenIdTokenForDeveloperIdentityInput,
    ) -> Result<OpenIdToken, Error> {
        tokio::time::sleep(self.delay).await;
        self.inner
            .get_open_id_token_for_developer_identity(input)
            .await
    }

    async fn get_credentials_for_identity(
        &self,
        input: &GetCredentialsForIdentityInput,
    ) -> Result<GetCredentialsForIdentityOutput, Error> {
        tokio::time::sleep(self.delay).await;
        self.inner.get_credentials_for_identity(input).await
    }
}
