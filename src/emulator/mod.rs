//! An embedded Cognito Identity emulator with real semantics: the real
//! awsJson1_1 protocol, stable identities, JWTs signed RS512 with Cognito's
//! claims that honour TokenDuration, the service model's validation (the
//! same code the gateway uses), SigV4 checking on the developer operation,
//! and injectable faults. Behind the default cargo feature `emulator`.
//!
//! Modules: `api` (routes and dispatch), `operations` (the four identity
//! operations), `pools` (pool administration), `store` (pools, identities
//! and Cognito's rules over them), `claims` (what a token says), `tokens`
//! (signing and verifying them, the JWKS), `sigv4` (the signature check),
//! `faults`, `wire` (awsJson1_1 errors and members).
//!
//! Routes: `POST /` (the API, by `X-Amz-Target`), `GET /.well-known/jwks_uri`
//! (the signing keys), `GET`/`PUT /_emulator/faults`,
//! `PUT /_emulator/faults/presets/cognito-default` and `GET /_emulator/calls`
//! (calls per operation, faults included).

mod api;
pub(crate) mod claims;
pub(crate) mod faults;
mod operations;
mod pools;
pub mod sigv4;
pub(crate) mod store;
pub(crate) mod tokens;
pub(crate) mod wire;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub(crate) use faults::Faults;
pub use faults::{FaultSettings, OperationFaults};
pub(crate) use store::{Pool, Store};
pub(crate) use tokens::Signer;

/// The id of the ready pool of `--emulator` mode, fixed so that the README
/// and examples can name it.
pub const DEFAULT_POOL_ID: &str = "us-east-1:0a0a0a0a-0000-4000-8000-000000000001";
/// The developer provider of the ready pool.
pub const DEFAULT_DEVELOPER_PROVIDER: &str = "login.gateway.example";
/// The access key the emulator accepts unless told otherwise.
pub const DEFAULT_ACCESS_KEY: (&str, &str) = ("test", "test");
/// The AWS account the emulator's pools belong to, as their ARNs (the
/// tokens' `identity-pool-arn` claim) name it. The emulator has no accounts,
/// so a fake one: twelve zeros, which no real account has.
pub(crate) const ACCOUNT_ID: &str = "000000000000";
/// Largest request body read: ten Logins values of 50,000 characters, as
/// UTF-8, fit with room to spare.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How an emulator is set up.
#[derive(Clone)]
pub struct EmulatorSettings {
    /// The region ids are made in.
    pub region: String,
    /// Access key id to secret key, for the SigV4 check.
    pub access_keys: HashMap<String, String>,
    /// PEM text of the RSA signing key; `None` makes one at start.
    pub signing_key_pem: Option<String>,
    /// Faults at start.
    pub faults: FaultSettings,
}

/// The ids of access keys, sorted, for a `Debug` that must not show their
/// secrets.
fn key_ids(access_keys: &HashMap<String, String>) -> Vec<&str> {
    let mut ids: Vec<&str> = access_keys.keys().map(String::as_str).collect();
    ids.sort_unstable();
    ids
}

/// The access key ids and the faults, not the secrets nor the signing key.
impl std::fmt::Debug for EmulatorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorSettings")
            .field("region", &self.region)
            .field("access_key_ids", &key_ids(&self.access_keys))
            .field(
                "signing_key_pem",
                &self.signing_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("faults", &self.faults)
            .finish()
    }
}

impl Default for EmulatorSettings {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            access_keys: HashMap::from([(
                DEFAULT_ACCESS_KEY.0.to_owned(),
                DEFAULT_ACCESS_KEY.1.to_owned(),
            )]),
            signing_key_pem: None,
            faults: FaultSettings::default(),
        }
    }
}

/// The emulator's state.
pub struct Emulator {
    store: Mutex<Store>,
    signer: Signer,
    access_keys: HashMap<String, String>,
    faults: Faults,
    calls: Mutex<BTreeMap<String, u64>>,
    throttled: Mutex<BTreeMap<String, u64>>,
}

/// Everything but the access keys' secrets.
impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("store", &self.store)
            .field("signer", &self.signer)
            .field("access_key_ids", &key_ids(&self.access_keys))
            .field("faults", &self.faults)
            .field("calls", &self.calls)
            .field("throttled", &self.throttled)
            .finish()
    }
}

/// A connection to close without answering (the drop switch).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

impl Emulator {
    /// An emulator with no pools.
    pub fn new(settings: EmulatorSettings) -> Result<Arc<Self>, String> {
        settings.faults.check()?;
        let signer = match &settings.signing_key_pem {
            Some(pem) => Signer::from_pem(pem)?,
            None => Signer::generate()?,
        };
        Ok(Arc::new(Self {
            store: Mutex::new(Store::new(settings.region)),
            signer,
            access_keys: settings.access_keys,
            faults: Faults::new(settings.faults),
            calls: Mutex::new(BTreeMap::new()),
            throttled: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Adds the ready pool of `--emulator` mode.
    pub fn add_default_pool(&self) {
        if let Ok(mut store) = self.store.lock() {
            store.insert_pool(Pool {
                id: DEFAULT_POOL_ID.to_owned(),
                name: "default".to_owned(),
                allow_unauthenticated: true,
                developer_provider: Some(DEFAULT_DEVELOPER_PROVIDER.to_owned()),
                supported_login_providers: BTreeMap::new(),
                tags: BTreeMap::new(),
            });
        }
    }

    /// Calls received per operation so far, faults included.
    pub fn calls(&self, operation: &str) -> u64 {
        self.calls
            .lock()
            .map_or(0, |c| c.get(operation).copied().unwrap_or(0))
    }

    /// Calls answered TooManyRequestsException per operation so far.
    pub fn throttled(&self, operation: &str) -> u64 {
        self.throttled
            .lock()
            .map_or(0, |c| c.get(operation).copied().unwrap_or(0))
    }

    /// The live faults.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Dropped> {
        // Only API calls are dropped: the admin routes stay reachable so the
        // switch can be turned off again.
        if self.faults.dropping() && req.uri().path() == "/" {
            return Err(Dropped);
        }
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return Ok(json_response(
                    413,
                    &serde_json::json!({"message": "request body too large"}),
                ));
            }
        };
        Ok(self.answer(&parts, &body).await)
    }

    /// The answer to one request whose body has been read: the routing,
    /// the parsing of the AWS JSON protocol and the SigV4 check, as a
    /// connection's requests get them (public for the fuzz target, which
    /// feeds it arbitrary requests).
    pub async fn answer(
        &self,
        parts: &http::request::Parts,
        body: &Bytes,
    ) -> Response<Full<Bytes>> {
        api::route(self, parts, body).await
    }
}

fn json_response(status: u16, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}

/// Serves `emulator` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    emulator: Arc<Emulator>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    // Its connections end with it, as a killed process's do.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => return,
            // Reap finished connections as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("emulator accept failed: {e}");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let emulator = emulator.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| emulator.clone().handle(req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Starts an emulator on `listener` in the background; it stops with the runtime.
pub fn spawn(listener: TcpListener, emulator: Arc<Emulator>) {
    tokio::spawn(serve(listener, emulator, std::future::pending::<()>()));
}

/// The emulator of `--emulator` mode: default settings and the ready pool,
/// on a loopback port the OS picks. Returns its URL and a handle on it (to
/// change its faults or count its calls).
pub async fn start_embedded() -> Result<(String, Arc<Emulator>), String> {
    let emulator = Emulator::new(EmulatorSettings::default())?;
    emulator.add_default_pool();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot bind the embedded emulator: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("embedded emulator address: {e}"))?;
    spawn(listener, emulator.clone());
    Ok((format!("http://{addr}"), emulator))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_no_secret() {
        let settings = EmulatorSettings {
            access_keys: HashMap::from([("AKIDSHOWN".to_owned(), "hidden-secret".to_owned())]),
            signing_key_pem: Some("-----BEGIN PRIVATE KEY-----\nhidden-key".to_owned()),
            ..EmulatorSettings::default()
        };
        let shown = format!("{settings:?}");
        let emulator = Emulator::new(EmulatorSettings {
            signing_key_pem: None,
            ..settings
        })
        .unwrap();
        let shown = format!("{shown} {emulator:?}");
        assert!(shown.contains("AKIDSHOWN"), "{shown}");
        assert!(!shown.contains("hidden"), "{shown}");
    }
}
