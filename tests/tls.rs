//! Mutual TLS on the API listener, through real tonic clients (rustls):
//! callers named by their certificates' SPIFFE URI SAN or DNS SAN, judged
//! by the policy call by call; certificates that do not chain or have
//! expired refused in the handshake; the server certificate, the client CA
//! and the policy changed under a steady load of calls without one failing.
//! Certificates are made here (rcgen); files are swapped the way Kubernetes
//! updates a mounted Secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cognito_identity_gateway::cache::{CacheSettings, Clock};
use cognito_identity_gateway::emulator::{DEFAULT_DEVELOPER_PROVIDER, DEFAULT_POOL_ID, Emulator};
use cognito_identity_gateway::policy::LivePolicy;
use cognito_identity_gateway::proto as pb;
use cognito_identity_gateway::proto::cognito_identity_service_client::CognitoIdentityServiceClient;
use cognito_identity_gateway::reload::Watch;
use cognito_identity_gateway::server::ServerSettings;
use cognito_identity_gateway::server::tls::{LoadedTls, TlsFiles};
use cognito_identity_gateway::service::Gateway;
use support::certs::{Ca, Pem};
use support::loopback::series;
use support::{TestGateway, emulator_upstream, kubernetes_update, start_emulator, temp_dir};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const DEVELOPER: &str = "GetOpenIdTokenForDeveloperIdentity";
const OPERATIONS: [&str; 4] = [
    "GetId",
    "GetOpenIdToken",
    DEVELOPER,
    "GetCredentialsForIdentity",
];
const OTHER_POOL: &str = "us-east-1:0a0a0a0a-0000-4000-8000-000000000002";
const CHECKOUT: &str = "spiffe://example.org/ns/shop/sa/checkout";
const STRANGER: &str = "spiffe://example.org/ns/other/sa/stranger";
const COGNITO: &str = "cognito-identity.amazonaws.com";

fn policy(batch_may_mint: bool) -> String {
    let batch_ops = if batch_may_mint {
        format!("[GetId, {DEVELOPER}]")
    } else {
        "[GetId]".to_owned()
    };
    format!(
        r#"
mode: enforce
callers:
  - name: checkout
    spiffe_ids: ["{CHECKOUT}"]
    allow:
      - operations: [{DEVELOPER}, GetCredentialsForIdentity]
        identity_pools: ["{DEFAULT_POOL_ID}"]
        login_providers: ["{DEFAULT_DEVELOPER_PROVIDER}", "{COGNITO}"]
        principal_tag_keys: ["team"]
        max_token_duration: 1h
  - name: batch
    dns_names: ["batch.jobs.svc"]
    allow:
      - operations: {batch_ops}
        identity_pools: ["*"]
        principal_tag_keys: ["team"]
anonymous:
  allow:
    - operations: [GetOpenIdToken]
      identity_pools: ["*"]
"#
    )
}

/// The Secret's files: the server's certificate and key, and the CA bundle
/// client certificates must chain to.
fn write_tls(secret: &Path, cert: &str, key: &str, client_ca: &str) {
    kubernetes_update(
        secret,
        &[("tls.crt", cert), ("tls.key", key), ("ca.crt", client_ca)],
    );
}

/// A gateway under test, with the directories its files are mounted from.
struct Mounted {
    server: TestGateway,
    emulator: Arc<Emulator>,
    /// The Secret: tls.crt, tls.key, ca.crt.
    secret: std::path::PathBuf,
    /// The ConfigMap: policy.yaml.
    config: std::path::PathBuf,
    _policy_watch: Watch,
}

/// The gateway over the emulator, serving mutual TLS with `server_pem` to
/// clients of `client_ca`, and judging callers by `policy(false)`: both
/// mounted as Kubernetes mounts them (directories named after `name`),
/// and watched.
async fn serve(name: &str, server_pem: &Pem, client_ca: &str) -> Mounted {
    let secret = temp_dir(&format!("{name}-secret"));
    write_tls(&secret, &server_pem.cert, &server_pem.key, client_ca);
    let config = temp_dir(&format!("{name}-policy"));
    kubernetes_update(&config, &[("policy.yaml", &policy(false))]);
    // The server puts the files in force and watches them itself.
    let tls = LoadedTls::load(TlsFiles {
        cert: secret.join("tls.crt"),
        key: secret.join("tls.key"),
        client_ca: Some(secret.join("ca.crt")),
    })
    .unwrap();
    let policy = Arc::new(LivePolicy::load(&config.join("policy.yaml")).unwrap());
    let policy_watch = policy.clone().watch(Duration::from_secs(1)).unwrap();
    let (url, emulator) = start_emulator().await;
    let gateway = Gateway::new(
        emulator_upstream(&url).await,
        CacheSettings::default(),
        Clock::default(),
    )
    .with_policy(Some(policy));
    let settings = ServerSettings {
        tls: Some(tls),
        shutdown_grace: Duration::from_secs(2),
        ..ServerSettings::default()
    };
    Mounted {
        server: TestGateway::serve_gateway(Arc::new(gateway), settings).await,
        emulator,
        secret,
        config,
        _policy_watch: policy_watch,
    }
}

/// A channel to the gateway trusting `ca`, showing `identity` if any.
async fn channel(
    server: &TestGateway,
    ca: &str,
    identity: Option<&Pem>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(pem) = identity {
        tls = tls.identity(Identity::from_pem(&pem.cert, &pem.key));
    }
    Channel::from_shared(format!("https://127.0.0.1:{}", server.addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

async fn client(
    server: &TestGateway,
    ca: &str,
    identity: Option<&Pem>,
) -> CognitoIdentityServiceClient<Channel> {
    CognitoIdentityServiceClient::new(channel(server, ca, identity).await.unwrap())
}

fn upstream_calls(emulator: &Emulator) -> u64 {
    OPERATIONS.iter().map(|op| emulator.calls(op)).sum()
}

fn developer(pool: &str, provider: &str, tag: &str, seconds: i64) -> Request {
    Request::Developer(pb::GetOpenIdTokenForDeveloperIdentityRequest {
        identity_pool_id: pool.into(),
        logins: HashMap::from([(provider.into(), "secret-user-2b7c".into())]),
        principal_tags: HashMap::from([(tag.into(), "secret-tag-value".into())]),
        token_duration_seconds: Some(seconds),
        ..Default::default()
    })
}

#[derive(Clone, Debug)]
enum Request {
    GetId(pb::GetIdRequest),
    OpenId(pb::GetOpenIdTokenRequest),
    Developer(pb::GetOpenIdTokenForDeveloperIdentityRequest),
    Credentials(pb::GetCredentialsForIdentityRequest),
}

impl Request {
    async fn send(self, client: &mut CognitoIdentityServiceClient<Channel>) -> Code {
        let result = match self {
            Request::GetId(r) => client.get_id(r).await.map(drop),
            Request::OpenId(r) => client.get_open_id_token(r).await.map(drop),
            Request::Developer(r) => client
                .get_open_id_token_for_developer_identity(r)
                .await
                .map(drop),
            Request::Credentials(r) => client.get_credentials_for_identity(r).await.map(drop),
        };
        result.map_or_else(|status| status.code(), |()| Code::Ok)
    }
}

#[tokio::test]
async fn callers_named_by_their_certificates_get_what_the_policy_allows() {
    let ca = Ca::new("shop CA");
    let mounted = serve("matrix", &ca.server(), &ca.pem()).await;
    let (server, emulator) = (&mounted.server, &mounted.emulator);

    let checkout_pem = ca.spiffe_client(CHECKOUT);
    // The first DNS SAN names the caller; the second does not count.
    let batch_pem = ca.dns_client(&["batch.jobs.svc", "checkout.shop.svc"]);
    let stranger_pem = ca.spiffe_client(STRANGER);
    let mut checkout = client(server, &ca.pem(), Some(&checkout_pem)).await;

    // A developer token and its identity, for the identity operations.
    let ok = developer(DEFAULT_POOL_ID, DEFAULT_DEVELOPER_PROVIDER, "team", 3600);
    let Request::Developer(ok_message) = ok.clone() else {
        unreachable!()
    };
    let minted = checkout
        .get_open_id_token_for_developer_identity(ok_message)
        .await
        .unwrap()
        .into_inner();
    let logins = HashMap::from([(COGNITO.to_owned(), minted.token.clone())]);
    let requests = [
        ("developer", ok.clone()),
        (
            "developer, other pool",
            developer(OTHER_POOL, DEFAULT_DEVELOPER_PROVIDER, "team", 3600),
        ),
        (
            "developer, other provider",
            developer(DEFAULT_POOL_ID, "graph.facebook.com", "team", 3600),
        ),
        (
            "developer, other tag",
            developer(DEFAULT_POOL_ID, DEFAULT_DEVELOPER_PROVIDER, "cost", 3600),
        ),
        (
            "developer, 2 h",
            developer(DEFAULT_POOL_ID, DEFAULT_DEVELOPER_PROVIDER, "team", 7200),
        ),
        ("GetId", Request::GetId(support::get_id(DEFAULT_POOL_ID))),
        (
            "GetOpenIdToken",
            Request::OpenId(pb::GetOpenIdTokenRequest {
                identity_id: minted.identity_id.clone(),
                logins: logins.clone(),
            }),
        ),
        (
            "GetCredentialsForIdentity",
            Request::Credentials(pb::GetCredentialsForIdentityRequest {
                identity_id: minted.identity_id.clone(),
                logins,
                ..Default::default()
            }),
        ),
    ];
    use Code::{Ok as OK, PermissionDenied as DENIED, Unauthenticated as UNAUTH};
    //                 dev  pool    prov    tag     2h      GetId   OpenId  Creds
    let matrix: [(&str, Option<&Pem>, [Code; 8]); 4] = [
        (
            "checkout",
            Some(&checkout_pem),
            [OK, DENIED, DENIED, DENIED, DENIED, DENIED, DENIED, OK],
        ),
        (
            "batch",
            Some(&batch_pem),
            [DENIED, DENIED, DENIED, DENIED, DENIED, OK, DENIED, DENIED],
        ),
        ("stranger", Some(&stranger_pem), [DENIED; 8]),
        (
            "anonymous",
            None,
            [UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, OK, UNAUTH],
        ),
    ];
    for (caller, identity, expected) in matrix {
        let mut client = client(server, &ca.pem(), identity).await;
        for ((what, request), code) in requests.iter().zip(expected) {
            let before = upstream_calls(emulator);
            let got = request.clone().send(&mut client).await;
            assert_eq!(got, code, "{caller} asking {what}");
            if code != Code::Ok {
                assert_eq!(
                    upstream_calls(emulator),
                    before,
                    "{caller}'s refused {what} reached the upstream"
                );
            }
        }
    }
    mounted.server.stop().await;
}

#[tokio::test]
async fn certificates_that_do_not_chain_or_have_expired_are_refused_in_the_handshake() {
    let ca = Ca::new("shop CA");
    let other = Ca::new("someone else's CA");
    let mounted = serve("refused", &ca.server(), &ca.pem()).await;
    let (server, emulator) = (&mounted.server, &mounted.emulator);

    for (what, pem) in [
        ("another CA's", other.spiffe_client(CHECKOUT)),
        ("an expired", ca.expired_client(CHECKOUT)),
    ] {
        // Under TLS 1.3 the client learns of the refusal on its first read.
        let outcome = match channel(server, &ca.pem(), Some(&pem)).await {
            Err(e) => Err(e.to_string()),
            Ok(channel) => {
                let mut client = CognitoIdentityServiceClient::new(channel);
                let ok = developer(DEFAULT_POOL_ID, DEFAULT_DEVELOPER_PROVIDER, "team", 900);
                match ok.send(&mut client).await {
                    Code::Ok => Ok(()),
                    code => Err(format!("{code:?}")),
                }
            }
        };
        assert!(outcome.is_err(), "{what} certificate was let in");
    }
    assert_eq!(upstream_calls(emulator), 0);
    assert_eq!(
        counted(server, "gateway_tls_handshakes_total", "refused"),
        2.0,
        "{}",
        server.metrics.encode(None)
    );
    mounted.server.stop().await;
}

/// `server`'s counter `metric` with `{outcome="..."}`, 0 when absent.
fn counted(server: &TestGateway, metric: &str, outcome: &str) -> f64 {
    let text = server.metrics.encode(None);
    series(&text, metric)
        .find_map(|(l, v)| (l == format!(r#"{{outcome="{outcome}"}}"#)).then_some(v))
        .unwrap_or(0.0)
}

/// `server`'s series of `metric` with the label `reason`, 0 when absent.
fn counted_reason(server: &TestGateway, metric: &str, reason: &str) -> f64 {
    let text = server.metrics.encode(None);
    series(&text, metric)
        .find_map(|(l, v)| (l == format!(r#"{{reason="{reason}"}}"#)).then_some(v))
        .unwrap_or(0.0)
}

/// The certificate the gateway shows a new handshake, DER.
async fn served_certificate(server: &TestGateway, ca: &str, identity: &Pem) -> Vec<u8> {
    use rustls::pki_types::ServerName;
    let config = support::certs::client_config(ca, identity);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// Waits up to `within` for `done`, polling.
async fn eventually<F: std::future::Future<Output = bool>>(
    within: Duration,
    mut done: impl FnMut() -> F,
) -> Duration {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < within, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn certificates_and_policy_change_under_load_and_no_call_fails() {
    let ca1 = Ca::new("CA 2026");
    let ca2 = Ca::new("CA 2027");
    let mounted = serve("rotate", &ca1.server(), &ca1.pem()).await;
    let (server, secret, config) = (&mounted.server, &mounted.secret, &mounted.config);

    // The clients trust both CAs' servers from the start, as a fleet does
    // before a rotation; checkout has a certificate from each CA.
    let trusted = format!("{}{}", ca1.pem(), ca2.pem());
    let checkout1 = ca1.spiffe_client(CHECKOUT);
    let checkout2 = ca2.spiffe_client(CHECKOUT);
    // Which certificate new connections show: CA 1's, then CA 2's.
    let new_identity = Arc::new(std::sync::Mutex::new(checkout1.clone()));

    let stop = Arc::new(AtomicBool::new(false));
    // The kept connections' callers stop before CA 1 leaves the bundle:
    // their connections are closed then, and their certificate refused.
    let stop_kept = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    let request = developer(DEFAULT_POOL_ID, DEFAULT_DEVELOPER_PROVIDER, "team", 3600);
    // Two callers on connections kept open, and one that opens a new
    // connection for every call.
    for fresh in [false, false, true] {
        let stop = if fresh {
            stop.clone()
        } else {
            stop_kept.clone()
        };
        let (calls, request) = (calls.clone(), request.clone());
        let new_identity = new_identity.clone();
        let server_addr = server.addr;
        let trusted = trusted.clone();
        let mut kept = client(server, &trusted, Some(&checkout1)).await;
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let code = if fresh {
                    let identity = new_identity.lock().unwrap().clone();
                    let tls = ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(&trusted))
                        .domain_name("localhost")
                        .identity(Identity::from_pem(&identity.cert, &identity.key));
                    let channel = Channel::from_shared(format!("https://{server_addr}"))
                        .unwrap()
                        .tls_config(tls)
                        .unwrap()
                        .connect()
                        .await;
                    match channel {
                        Ok(channel) => {
                            let mut client = CognitoIdentityServiceClient::new(channel);
                            request.clone().send(&mut client).await
                        }
                        Err(e) => {
                            failures.push(format!("connect: {e}"));
                            continue;
                        }
                    }
                } else {
                    request.clone().send(&mut kept).await
                };
                calls.fetch_add(1, Ordering::Relaxed);
                if code != Code::Ok {
                    failures.push(format!("{code:?}"));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. The server certificate rotates: new handshakes see the new one.
    let second = ca1.server();
    write_tls(secret, &second.cert, &second.key, &ca1.pem());
    let took = eventually(Duration::from_secs(3), || async {
        served_certificate(server, &trusted, &checkout1).await == der(&second.cert)
    })
    .await;
    println!("new server certificate served after {took:?}");

    // 2. A file that does not load keeps what is in force.
    write_tls(secret, "not a certificate", &second.key, &ca1.pem());
    eventually(Duration::from_secs(3), || async {
        counted(server, "gateway_tls_reloads_total", "error") > 0.0
    })
    .await;
    assert_eq!(
        served_certificate(server, &trusted, &checkout1).await,
        der(&second.cert)
    );

    // 3. The client CA rotates, through a bundle of both: CA 2's clients
    // are let in, then CA 1's are refused at new handshakes, and the
    // connections they opened before are closed (GOAWAY).
    let both = format!("{}{}", ca1.pem(), ca2.pem());
    let third = ca2.server();
    write_tls(secret, &third.cert, &third.key, &both);
    eventually(Duration::from_secs(3), || async {
        served_certificate(server, &trusted, &checkout2).await == der(&third.cert)
    })
    .await;
    *new_identity.lock().unwrap() = checkout2.clone();
    let mut kept_across = client(server, &trusted, Some(&checkout1)).await;
    assert_eq!(request.clone().send(&mut kept_across).await, Code::Ok);
    stop_kept.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for task in load.drain(..2) {
        failures.extend(task.await.unwrap());
    }
    write_tls(secret, &third.cert, &third.key, &ca2.pem());
    eventually(Duration::from_secs(5), || async {
        counted_reason(
            server,
            "gateway_connections_closed_total",
            "client_ca_changed",
        ) >= 1.0
    })
    .await;
    // Its client reconnects, showing CA 1's certificate: refused.
    assert_ne!(request.clone().send(&mut kept_across).await, Code::Ok);
    eventually(Duration::from_secs(3), || async {
        let mut probe = match channel(server, &trusted, Some(&checkout1)).await {
            Err(_) => return true,
            Ok(channel) => CognitoIdentityServiceClient::new(channel),
        };
        request.clone().send(&mut probe).await != Code::Ok
    })
    .await;

    // 4. The policy is rewritten: batch may mint tokens within 2 s.
    let mut batch = client(server, &trusted, Some(&ca2.dns_client(&["batch.jobs.svc"]))).await;
    assert_eq!(
        request.clone().send(&mut batch).await,
        Code::PermissionDenied
    );
    kubernetes_update(config, &[("policy.yaml", &policy(true))]);
    let took = eventually(Duration::from_secs(2), || {
        let (mut batch, request) = (batch.clone(), request.clone());
        async move { request.send(&mut batch).await == Code::Ok }
    })
    .await;
    println!("policy change in force after {took:?}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        failures.extend(task.await.unwrap());
    }
    let calls = calls.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {calls} failed: {failures:?}",
        failures.len()
    );
    assert!(calls > 50, "only {calls} calls under load");
    // Three changes put in force (a file written while another is not
    // yet may be seen, refused, in between).
    assert!(counted(server, "gateway_tls_reloads_total", "ok") >= 3.0);
    mounted.server.stop().await;
}

#[tokio::test]
async fn a_connection_is_closed_when_its_certificate_expires() {
    let ca = Ca::new("shop CA");
    let mounted = serve("expiry", &ca.server(), &ca.pem()).await;
    let short = ca.client_expiring_in(CHECKOUT, Duration::from_secs(3));
    let mut kept = client(&mounted.server, &ca.pem(), Some(&short)).await;
    let request = developer(DEFAULT_POOL_ID, DEFAULT_DEVELOPER_PROVIDER, "team", 3600);
    assert_eq!(request.clone().send(&mut kept).await, Code::Ok);
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Closed at the expiry; the client's reconnection shows the expired
    // certificate, which the handshake refuses.
    assert_eq!(
        counted_reason(
            &mounted.server,
            "gateway_connections_closed_total",
            "certificate_expired"
        ),
        1.0
    );
    assert_ne!(request.send(&mut kept).await, Code::Ok);
    mounted.server.stop().await;
}

#[tokio::test]
async fn sessions_are_never_resumed_so_an_expired_certificate_is_refused() {
    use rustls::pki_types::ServerName;
    use tokio::io::AsyncReadExt;
    let ca = Ca::new("shop CA");
    let mounted = serve("resume", &ca.server(), &ca.pem()).await;
    let short = ca.client_expiring_in(CHECKOUT, Duration::from_secs(3));
    // One client configuration, whose session cache would resume.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(support::certs::client_config(
        &ca.pem(),
        &short,
    )));
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(mounted.server.addr)
            .await
            .unwrap();
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    };
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let mut tls = connect().await.expect("a certificate in date is taken");
        // Whatever the server sends after the handshake (tickets, if it
        // issued any) is read into the client's session cache.
        let _ = tokio::time::timeout(Duration::from_millis(200), tls.read(&mut [0; 64])).await;
        kinds.push(tls.get_ref().1.handshake_kind());
    }
    assert!(
        kinds
            .iter()
            .all(|kind| *kind == Some(rustls::HandshakeKind::Full)),
        "{kinds:?}"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Expired: a full handshake, refused (TLS 1.3 says so at the first
    // read, after the client's side of the handshake is done).
    let refused = match connect().await {
        Err(_) => true,
        Ok(mut tls) => matches!(
            tokio::time::timeout(Duration::from_secs(2), tls.read(&mut [0; 64])).await,
            Ok(Err(_)) | Ok(Ok(0))
        ),
    };
    assert!(refused, "an expired certificate was taken");
    mounted.server.stop().await;
}
