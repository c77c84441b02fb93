//! The token cache end to end: a real gRPC client, the gateway, and the
//! emulator counting upstream calls. Time is moved with the cache's own
//! clock (see `cache::Clock` for why tokio's paused clock cannot be used
//! with real sockets).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cognito_identity_gateway::cache::{CacheSettings, Clock, TokenCache};
use cognito_identity_gateway::domain::{OpenIdToken, Secret, Upstreamed};
use cognito_identity_gateway::emulator::{
    DEFAULT_DEVELOPER_PROVIDER, DEFAULT_POOL_ID, Emulator, OperationFaults,
};
use cognito_identity_gateway::proto as pb;
use cognito_identity_gateway::proto::cognito_identity_service_client::CognitoIdentityServiceClient;
use cognito_identity_gateway::server::ServerSettings;
use cognito_identity_gateway::service::Gateway;
use cognito_identity_gateway::upstream::CognitoUpstream;
use support::{TestGateway, developer, emulator_upstream, set_faults, start_emulator};
use tonic::Code;
use tonic::transport::Channel;

const DEVELOPER: &str = "GetOpenIdTokenForDeveloperIdentity";

struct Rig {
    gateway: Arc<Gateway<CognitoUpstream>>,
    server: TestGateway,
    emulator: Arc<Emulator>,
    clock: Clock,
}

impl Rig {
    async fn start(settings: CacheSettings) -> Self {
        let (url, emulator) = start_emulator().await;
        let clock = Clock::default();
        let gateway = Arc::new(Gateway::new(
            emulator_upstream(&url).await,
            settings,
            clock.clone(),
        ));
        let server = TestGateway::serve(gateway.clone(), ServerSettings::default()).await;
        Self {
            gateway,
            server,
            emulator,
            clock,
        }
    }

    fn cache(&self) -> &TokenCache {
        self.gateway.cache().expect("cache on")
    }

    async fn client(&self) -> CognitoIdentityServiceClient<Channel> {
        self.server.client().await
    }
}

async fn token(
    client: &mut CognitoIdentityServiceClient<Channel>,
    request: pb::GetOpenIdTokenForDeveloperIdentityRequest,
) -> Result<pb::GetOpenIdTokenForDeveloperIdentityResponse, tonic::Status> {
    client
        .get_open_id_token_for_developer_identity(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_repeat_makes_no_second_call() {
    let rig = Rig::start(CacheSettings::default()).await;
    let mut client = rig.client().await;
    let first = token(&mut client, developer("u1", 900)).await.unwrap();
    let second = token(&mut client, developer("u1", 900)).await.unwrap();
    assert_eq!(first.token, second.token);
    assert_eq!(
        first.expires_at, second.expires_at,
        "expires_at is the true expiry"
    );
    assert_eq!(rig.emulator.calls(DEVELOPER), 1);
    let stats = rig.cache().stats();
    assert_eq!((stats.misses, stats.hits), (1, 1));
}

#[tokio::test]
async fn five_hundred_concurrent_identical_requests_make_one_call() {
    let rig = Rig::start(CacheSettings::default()).await;
    // Keep the one upstream call in flight while the others arrive.
    set_faults(
        &rig.emulator,
        DEVELOPER,
        OperationFaults {
            latency_ms: 200,
            ..Default::default()
        },
    );
    let channel = rig.server.channel().await;
    let calls: Vec<_> = (0..500)
        .map(|_| {
            let mut client = CognitoIdentityServiceClient::new(channel.clone());
            tokio::spawn(async move { token(&mut client, developer("crowd", 900)).await })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for call in calls {
        tokens.insert(call.await.unwrap().unwrap().token);
    }
    assert_eq!(tokens.len(), 1, "every caller got the same token");
    assert_eq!(rig.emulator.calls(DEVELOPER), 1);
    let stats = rig.cache().stats();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.hits + stats.coalesced, 499);
}

#[tokio::test]
async fn concurrent_identical_misses_share_one_failure() {
    let rig = Rig::start(CacheSettings::default()).await;
    set_faults(
        &rig.emulator,
        DEVELOPER,
        OperationFaults {
            latency_ms: 200,
            error_rate: 1.0,
            ..Default::default()
        },
    );
    let channel = rig.server.channel().await;
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let mut client = CognitoIdentityServiceClient::new(channel.clone());
            tokio::spawn(async move { token(&mut client, developer("doomed", 900)).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap_err().code(), Code::Unavailable);
    }
    // One fetch, which the SDK attempted twice (max_attempts 2); errors are
    // not cached, so the next request tries again.
    assert_eq!(rig.emulator.calls(DEVELOPER), 2);
    let mut client = rig.client().await;
    assert!(token(&mut client, developer("doomed", 900)).await.is_err());
    assert_eq!(rig.emulator.calls(DEVELOPER), 4);
}

#[tokio::test]
async fn requests_differing_in_one_field_never_share_an_entry() {
    let rig = Rig::start(CacheSettings::default()).await;
    let mut client = rig.client().await;
    let base = developer("u1", 900);
    let identity = token(&mut client, base.clone()).await.unwrap().identity_id;
    let mut variants = vec![base.clone()];
    let mut v = base.clone();
    v.logins
        .insert(DEFAULT_DEVELOPER_PROVIDER.into(), "u2".into());
    variants.push(v);
    let mut v = base.clone();
    v.identity_id = identity;
    variants.push(v);
    let mut v = base.clone();
    v.principal_tags.insert("team".into(), "a".into());
    variants.push(v);
    let mut v = base.clone();
    v.principal_tags.insert("team".into(), "b".into());
    variants.push(v);
    let mut v = base.clone();
    v.token_duration_seconds = Some(901);
    variants.push(v);
    let mut v = base.clone();
    v.token_duration_seconds = None;
    variants.push(v);
    for request in &variants {
        token(&mut client, request.clone()).await.unwrap();
    }
    assert_eq!(rig.emulator.calls(DEVELOPER), variants.len() as u64);
    // And each of them is now cached under its own key.
    for request in &variants {
        token(&mut client, request.clone()).await.unwrap();
    }
    assert_eq!(rig.emulator.calls(DEVELOPER), variants.len() as u64);

    // GetCredentialsForIdentity: the CustomRoleArn is part of the key too.
    let t = token(&mut client, base).await.unwrap();
    let credentials = |role: &str| pb::GetCredentialsForIdentityRequest {
        identity_id: t.identity_id.clone(),
        logins: HashMap::from([("cognito-identity.amazonaws.com".into(), t.token.clone())]),
        custom_role_arn: role.into(),
    };
    for role in [
        "",
        "arn:aws:iam::123456789012:role/a",
        "",
        "arn:aws:iam::123456789012:role/a",
    ] {
        client
            .get_credentials_for_identity(credentials(role))
            .await
            .unwrap();
    }
    assert_eq!(rig.emulator.calls("GetCredentialsForIdentity"), 2);
}

#[tokio::test]
async fn tokens_are_served_only_while_enough_life_remains() {
    // 300 s tokens, served while 150 s remain; no refresh before 0.49.
    let settings = CacheSettings {
        refresh_after_share: 0.49,
        ..CacheSettings::default()
    };
    let rig = Rig::start(settings).await;
    let mut client = rig.client().await;
    let first = token(&mut client, developer("edge", 300)).await.unwrap();
    rig.clock.advance(Duration::from_secs(145));
    let still = token(&mut client, developer("edge", 300)).await.unwrap();
    assert_eq!(still.token, first.token);
    assert_eq!(rig.emulator.calls(DEVELOPER), 1);
    rig.clock.advance(Duration::from_secs(6));
    // 151 s in: less than half its life left, so a new token is fetched.
    // (The emulator's tokens are deterministic within a second, so the
    // upstream call count, not the token, shows the renewal.)
    token(&mut client, developer("edge", 300)).await.unwrap();
    assert_eq!(rig.emulator.calls(DEVELOPER), 2);
    assert_eq!(rig.cache().stats().misses, 2);
}

#[tokio::test]
async fn valid_tokens_are_served_when_the_upstream_fails_and_expired_ones_are_not() {
    let rig = Rig::start(CacheSettings::default()).await;
    let mut client = rig.client().await;
    let first = token(&mut client, developer("stale", 300)).await.unwrap();
    set_faults(
        &rig.emulator,
        DEVELOPER,
        OperationFaults {
            error_rate: 1.0,
            ..Default::default()
        },
    );
    // Past the share (200 of 300 s) but before expiry minus the margin.
    rig.clock.advance(Duration::from_secs(200));
    let served = token(&mut client, developer("stale", 300)).await.unwrap();
    assert_eq!(served.token, first.token);
    assert_eq!(served.expires_at, first.expires_at);
    assert_eq!(rig.cache().stats().stale_served, 1);
    // Within the safety margin of its expiry: no longer valid.
    rig.clock.advance(Duration::from_secs(75));
    let err = token(&mut client, developer("stale", 300))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(rig.cache().stats().stale_served, 1);
}

#[tokio::test]
async fn past_the_refresh_point_callers_get_the_cached_token_while_it_renews_once() {
    let rig = Rig::start(CacheSettings::default()).await;
    let mut client = rig.client().await;
    let first = token(&mut client, developer("busy", 300)).await.unwrap();
    set_faults(
        &rig.emulator,
        DEVELOPER,
        OperationFaults {
            latency_ms: 200,
            ..Default::default()
        },
    );
    // 40 % of 300 s is the earliest refresh point; a busy key is renewed
    // as late as is safe: 5 s before it stops being served (at half its
    // life, 150 s).
    rig.clock.advance(Duration::from_secs(130));
    for _ in 0..5 {
        let served = token(&mut client, developer("busy", 300)).await.unwrap();
        assert_eq!(served.token, first.token);
    }
    assert_eq!(rig.emulator.calls(DEVELOPER), 1, "too early to renew");
    rig.clock.advance(Duration::from_secs(16));
    for _ in 0..5 {
        let served = token(&mut client, developer("busy", 300)).await.unwrap();
        // The cached token, not one that waited for the upstream.
        assert_eq!(served.token, first.token);
    }
    // One background refresh, however many callers passed the point.
    let mut waited = Duration::ZERO;
    while rig.cache().stats().refreshes == 0 && waited < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    assert_eq!(rig.cache().stats().refreshes, 1);
    assert_eq!(rig.emulator.calls(DEVELOPER), 2);
    // The renewed entry is served fresh: no further upstream call, even
    // though the old one is past its refresh point.
    token(&mut client, developer("busy", 300)).await.unwrap();
    assert_eq!(rig.emulator.calls(DEVELOPER), 2);
    assert_eq!(rig.cache().stats().misses, 1);
}

#[tokio::test]
async fn the_memory_budget_holds_with_100_000_entries() {
    const BUDGET: u64 = 4 * 1024 * 1024;
    let cache = TokenCache::new(
        CacheSettings {
            max_bytes: BUDGET,
            ..CacheSettings::default()
        },
        Clock::default(),
    );
    let token = "t".repeat(900);
    for i in 0..100_000u32 {
        let key = cache.key(
            &cognito_identity_gateway::domain::GetIdInput::parse(
                Some("us-east-1:0a0a0a0a-0000-4000-8000-000000000001".into()),
                None,
                vec![("login.example".into(), format!("user-{i}"))],
            )
            .unwrap(),
        );
        let value = OpenIdToken {
            identity_id: format!("us-east-1:{i:08x}-0000-4000-8000-000000000000"),
            token: Secret::new(token.clone()),
            expires_at: Some(SystemTime::now() + Duration::from_secs(900)),
        };
        let got: OpenIdToken = cache
            .get_or_fetch(
                key,
                None,
                || Ok(()),
                move |_| std::future::ready(Upstreamed::unrecorded(Ok(value.clone()))),
            )
            .await
            .result
            .unwrap();
        assert_eq!(got.token.len(), 900);
    }
    cache.run_pending_tasks().await;
    let stats = cache.stats();
    assert!(stats.bytes <= BUDGET, "{stats:?}");
    assert!(stats.evictions > 90_000, "{stats:?}");
    assert!(stats.entries < 5_000, "{stats:?}");
}

#[tokio::test]
async fn unauthenticated_get_id_is_never_cached() {
    // Cognito makes a new identity for each unauthenticated GetId; a cache
    // would hand one identity to every anonymous caller.
    let rig = Rig::start(CacheSettings::default()).await;
    let mut client = rig.client().await;
    let a = client
        .get_id(support::get_id(DEFAULT_POOL_ID))
        .await
        .unwrap()
        .into_inner();
    let b = client
        .get_id(support::get_id(DEFAULT_POOL_ID))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(a.identity_id, b.identity_id);
    assert_eq!(rig.emulator.calls("GetId"), 2);
}

#[tokio::test]
async fn with_the_cache_off_every_call_goes_upstream() {
    let (url, emulator) = start_emulator().await;
    let off = CacheSettings {
        enabled: false,
        ..CacheSettings::default()
    };
    let gateway = Arc::new(Gateway::new(
        emulator_upstream(&url).await,
        off,
        Clock::default(),
    ));
    assert!(gateway.cache().is_none());
    let server = TestGateway::serve(gateway, ServerSettings::default()).await;
    let mut client = server.client().await;
    for _ in 0..3 {
        token(&mut client, developer("nocache", 900)).await.unwrap();
    }
    assert_eq!(emulator.calls(DEVELOPER), 3);
}

#[tokio::test]
async fn an_answer_is_not_served_past_the_login_token_it_was_obtained_with() {
    // Credentials last an hour; the developer token they were obtained
    // with, 120 s. Served only while half of those 120 s remain (and not
    // renewed in the background before 0.49 of them).
    let rig = Rig::start(CacheSettings {
        refresh_after_share: 0.49,
        ..CacheSettings::default()
    })
    .await;
    let mut client = rig.client().await;
    let minted = token(&mut client, developer("short-lived", 120))
        .await
        .unwrap();
    let credentials = || pb::GetCredentialsForIdentityRequest {
        identity_id: minted.identity_id.clone(),
        logins: HashMap::from([(
            "cognito-identity.amazonaws.com".to_owned(),
            minted.token.clone(),
        )]),
        ..Default::default()
    };
    const CREDENTIALS: &str = "GetCredentialsForIdentity";
    for _ in 0..2 {
        client
            .get_credentials_for_identity(credentials())
            .await
            .unwrap();
    }
    assert_eq!(rig.emulator.calls(CREDENTIALS), 1, "the second was a hit");
    rig.clock.advance(Duration::from_secs(55));
    client
        .get_credentials_for_identity(credentials())
        .await
        .unwrap();
    assert_eq!(rig.emulator.calls(CREDENTIALS), 1, "55 s in: still a hit");
    // 65 s in: less than half the token's life left. Before the cap the
    // credentials' own hour kept them served until after the token had
    // expired, when Cognito refuses the request.
    rig.clock.advance(Duration::from_secs(10));
    client
        .get_credentials_for_identity(credentials())
        .await
        .unwrap();
    assert_eq!(rig.emulator.calls(CREDENTIALS), 2);
}
