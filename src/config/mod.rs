//! Configuration: command-line flags, each also read from an environment
//! variable, and the OpenTelemetry environment, checked as a whole so that
//! one message lists every problem before any port is bound. Each settings
//! type belongs to the module it configures; this module only assembles
//! them, and only `lib` and `main` import it.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::audit::AuditSettings;
use crate::cache::CacheSettings;
use crate::guard::GuardSettings;
use crate::policy::LoadedPolicy;
use crate::server::ServerSettings;
use crate::telemetry::{LogFormat, TelemetrySettings, TraceSettings};
use crate::upstream::UpstreamSettings;

/// Attempts the SDK's standard retry mode makes by default; the ceiling is
/// ours: more attempts than this only burn the caller's deadline.
const MAX_ATTEMPTS_CEILING: u32 = 10;

/// One attempt's bound when none is set: long enough for Cognito's slowest
/// normal answers (well under a second), short enough that a stuck
/// connection leaves time for a retry within the default 5 s operation.
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// The command line, as typed. Values that need checking are kept as text
/// here so that every problem can be reported at once, not only the first.
#[derive(Debug, Parser)]
#[command(name = "cognito-identity-gateway", version, about)]
pub struct Cli {
    /// Run something other than the gateway.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Start an embedded Cognito Identity emulator on a loopback port, with a
    /// ready identity pool, and use it as the upstream (no AWS account needed).
    #[cfg(feature = "emulator")]
    #[arg(long, env = "COGNITO_GATEWAY_EMULATOR")]
    pub emulator: bool,

    /// Address the gRPC server listens on.
    #[arg(long, env = "COGNITO_GATEWAY_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: String,

    /// Admin HTTP address for /metrics, /healthz and /readyz; `off` for none.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_ADMIN_LISTEN",
        default_value = "0.0.0.0:9464"
    )]
    pub admin_listen: String,

    /// Cognito Identity endpoint, instead of the region's (an emulator, a VPC
    /// endpoint). Unset: the SDK's own AWS_ENDPOINT_URL_COGNITO_IDENTITY, then
    /// the region's endpoint.
    #[arg(long, env = "COGNITO_GATEWAY_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,

    /// AWS region. Unset: the SDK's default chain (AWS_REGION, profile).
    #[arg(long, env = "COGNITO_GATEWAY_REGION")]
    pub region: Option<String>,

    /// Bound on one upstream operation, retries included (e.g. 5s, 1500ms).
    #[arg(long, env = "COGNITO_GATEWAY_UPSTREAM_TIMEOUT", default_value = "5s")]
    pub upstream_timeout: String,

    /// Bound on one upstream attempt; at most --upstream-timeout. Unset: 2s,
    /// or --upstream-timeout when that is shorter.
    #[arg(long, env = "COGNITO_GATEWAY_UPSTREAM_ATTEMPT_TIMEOUT")]
    pub upstream_attempt_timeout: Option<String>,

    /// Bound on opening a connection to the upstream.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_UPSTREAM_CONNECT_TIMEOUT",
        default_value = "1s"
    )]
    pub upstream_connect_timeout: String,

    /// Attempts per upstream operation, the first included (1 to 10).
    #[arg(long, env = "COGNITO_GATEWAY_MAX_ATTEMPTS", default_value = "3")]
    pub max_attempts: String,

    /// Bound on a whole gRPC call; a shorter grpc-timeout from the caller wins.
    #[arg(long, env = "COGNITO_GATEWAY_REQUEST_TIMEOUT", default_value = "10s")]
    pub request_timeout: String,

    /// Calls served at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CONCURRENCY_LIMIT",
        default_value = "1024"
    )]
    pub concurrency_limit: String,

    /// On SIGTERM or SIGINT, how long in-flight calls may take to finish.
    #[arg(long, env = "COGNITO_GATEWAY_SHUTDOWN_GRACE", default_value = "20s")]
    pub shutdown_grace: String,

    /// Cache answers at all (true/false); off sends every call upstream.
    #[arg(long, env = "COGNITO_GATEWAY_CACHE", default_value = "true")]
    pub cache: String,

    /// Cache GetOpenIdToken (the developer operation always is).
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_OPEN_ID_TOKENS",
        default_value = "true"
    )]
    pub cache_open_id_tokens: String,

    /// Cache GetCredentialsForIdentity, until the credentials expire.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_CREDENTIALS",
        default_value = "true"
    )]
    pub cache_credentials: String,

    /// Cache GetId for authenticated logins (unauthenticated ones never are).
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_IDENTITY_IDS",
        default_value = "true"
    )]
    pub cache_identity_ids: String,

    /// How long a GetId answer is kept.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_IDENTITY_ID_TTL",
        default_value = "1h"
    )]
    pub cache_identity_id_ttl: String,

    /// Entries expire this long before their token does.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_SAFETY_MARGIN",
        default_value = "30s"
    )]
    pub cache_safety_margin: String,

    /// Serve a cached token only while this share of its life remains (0 to 1).
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_MIN_REMAINING",
        default_value = "0.5"
    )]
    pub cache_min_remaining: String,

    /// Renew an entry in the background from this share of its life on (0
    /// to 1, below 1 minus --cache-min-remaining), when a request comes:
    /// as late as is safe (by 5 s or a hundredth of its life before it stops
    /// being served), judged by the gap between its requests.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_REFRESH_AFTER",
        default_value = "0.4"
    )]
    pub cache_refresh_after: String,

    /// At most this many background refreshes a second.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_REFRESH_RATE",
        default_value = "100"
    )]
    pub cache_refresh_rate: String,

    /// Memory budget of the cache: bytes, or with KiB, MiB, GiB.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CACHE_MAX_BYTES",
        default_value = "256MiB"
    )]
    pub cache_max_bytes: String,

    /// Log format; RUST_LOG sets the filter (default: info).
    #[arg(long, env = "COGNITO_GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The caller policy, a YAML file: who may call which operation, for
    /// which pools, login providers, principal tags and token lifetimes.
    #[arg(long, env = "COGNITO_GATEWAY_POLICY")]
    pub policy: Option<std::path::PathBuf>,

    /// Without --policy, serve every caller even on an address other than
    /// loopback (true/false).
    #[arg(
        long,
        env = "COGNITO_GATEWAY_ALLOW_ALL_CALLERS",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub allow_all_callers: String,

    /// Take the caller's identity from this header, which a service mesh
    /// doing mutual TLS in front of the gateway sets (l5d-client-id for
    /// Linkerd, x-forwarded-client-cert for Envoy and Istio), on calls from
    /// --caller-identity-header-trusted-peers. Plaintext listeners only.
    #[arg(long, env = "COGNITO_GATEWAY_CALLER_IDENTITY_HEADER")]
    pub caller_identity_header: Option<String>,

    /// The peers --caller-identity-header is believed from: comma-separated
    /// CIDR ranges (a bare address is one host). The default, loopback, is
    /// where a sidecar proxy connects from; from any other peer the header
    /// is ignored (the caller is anonymous) and counted.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CALLER_IDENTITY_HEADER_TRUSTED_PEERS",
        default_value = crate::grpc::DEFAULT_TRUSTED_PEERS
    )]
    pub caller_identity_header_trusted_peers: String,

    /// The API listener's certificate chain (PEM): with --tls-key, the API
    /// speaks TLS 1.2/1.3 (ALPN h2). Reloaded when it changes.
    #[arg(long, env = "COGNITO_GATEWAY_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key of --tls-cert (PEM). Reloaded when it changes.
    #[arg(long, env = "COGNITO_GATEWAY_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,

    /// CA bundle (PEM) that client certificates must chain to: callers
    /// presenting one are identified by its SPIFFE URI SAN or first DNS
    /// SAN, callers presenting none are anonymous. Reloaded when it changes.
    #[arg(long, env = "COGNITO_GATEWAY_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<std::path::PathBuf>,

    /// The guard in front of the upstream.
    #[command(flatten)]
    pub guard: GuardArgs,

    /// The API listener's connections.
    #[command(flatten)]
    pub connections: ConnectionArgs,

    /// The audit log: a file appended to, or - for standard output. One
    /// JSON line per developer-identity call and per refused call.
    #[arg(long, env = "COGNITO_GATEWAY_AUDIT_LOG")]
    pub audit_log: Option<String>,

    /// The key (a file's bytes, trailing newline ignored; at least 16) of
    /// the audit log's user hash, HMAC-SHA256. Required with --audit-log.
    #[arg(long, env = "COGNITO_GATEWAY_AUDIT_HMAC_KEY_FILE")]
    pub audit_hmac_key_file: Option<std::path::PathBuf>,

    /// Audit lines that may wait for the sink; when they are all taken,
    /// developer calls are refused UNAVAILABLE (AUDIT_UNAVAILABLE).
    #[arg(
        long,
        env = "COGNITO_GATEWAY_AUDIT_QUEUE_CAPACITY",
        default_value = "8192"
    )]
    pub audit_queue_capacity: String,

    /// How long the audit log's sink may fail (developer calls are refused
    /// meanwhile) before the lines of calls already answered go to standard
    /// error, each after "audit-fallback: ", rather than wait for it.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_AUDIT_FALLBACK_AFTER",
        default_value = "10s"
    )]
    pub audit_fallback_after: String,
}

mod callers;
mod connections;
#[cfg(feature = "emulator")]
mod emulator;
mod guard;
mod problems;

pub use connections::ConnectionArgs;
pub use guard::GuardArgs;

#[cfg(feature = "emulator")]
pub use emulator::{EmulatorArgs, EmulatorConfig};
use problems::{Problems, check_endpoint, check_region};

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the Cognito Identity emulator alone, for any AWS client.
    #[cfg(feature = "emulator")]
    Emulator(EmulatorArgs),
}

/// What the binary runs, checked.
#[derive(Debug)]
pub enum Program {
    /// The gateway (boxed: its settings are most of the enum's size).
    Gateway(Box<Settings>),
    /// The emulator alone.
    #[cfg(feature = "emulator")]
    Emulator(EmulatorConfig),
}

impl Program {
    /// The telemetry it starts with.
    pub fn telemetry(&self) -> TelemetrySettings {
        match self {
            Program::Gateway(settings) => settings.telemetry.clone(),
            // The emulator's own log lines, for people; it exports no spans.
            #[cfg(feature = "emulator")]
            Program::Emulator(_) => TelemetrySettings {
                log_format: LogFormat::Text,
                traces: None,
            },
        }
    }
}

/// Checked configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the gRPC server listens.
    pub listen: SocketAddr,
    /// Where the admin HTTP server listens, if anywhere.
    pub admin_listen: Option<SocketAddr>,
    /// How to reach Cognito.
    pub upstream: UpstreamSettings,
    /// The server.
    pub server: ServerSettings,
    /// The token cache.
    pub cache: CacheSettings,
    /// The guard in front of the upstream.
    pub guard: GuardSettings,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
    /// The caller policy, read and checked (put in force, and reloaded
    /// when its file changes, once the gateway runs); `None`: every caller
    /// may call everything.
    pub policy: Option<LoadedPolicy>,
    /// The audit log, if on.
    pub audit: Option<AuditSettings>,
    /// Start an embedded emulator and use it as the upstream (`--emulator`):
    /// [`Settings::start_embedded_emulator`] resolves it.
    #[cfg(feature = "emulator")]
    pub embedded_emulator: bool,
}

#[cfg(feature = "emulator")]
impl Settings {
    /// With `--emulator`, starts the embedded emulator on a loopback port
    /// and points the upstream at it (its region unless one is set, and its
    /// access key); the emulator serves while the handle lives. Without it,
    /// nothing.
    pub async fn start_embedded_emulator(
        &mut self,
    ) -> Result<Option<std::sync::Arc<crate::emulator::Emulator>>, String> {
        use crate::emulator;
        if !self.embedded_emulator {
            return Ok(None);
        }
        let (url, emulator) = emulator::start_embedded().await?;
        let (id, secret) = emulator::DEFAULT_ACCESS_KEY;
        self.upstream.endpoint_url = Some(url.clone());
        self.upstream
            .region
            .get_or_insert_with(|| "us-east-1".to_owned());
        self.upstream.static_credentials = Some((id.to_owned(), secret.to_owned()));
        tracing::info!(
            endpoint = %url,
            identity_pool_id = emulator::DEFAULT_POOL_ID,
            developer_provider = emulator::DEFAULT_DEVELOPER_PROVIDER,
            "embedded Cognito Identity emulator ready"
        );
        Ok(Some(emulator))
    }
}

/// Every problem with a configuration.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Cli {
    /// Checks everything and returns what to run, or every problem found.
    pub fn into_program(mut self) -> Result<Program, ConfigError> {
        match self.command.take() {
            #[cfg(feature = "emulator")]
            Some(Command::Emulator(args)) => args.into_config().map(Program::Emulator),
            None => self.into_settings().map(|s| Program::Gateway(Box::new(s))),
        }
    }

    /// Checks the gateway's flags and the OpenTelemetry environment, and
    /// returns settings, or every problem found.
    pub fn into_settings(self) -> Result<Settings, ConfigError> {
        let mut p = Problems::default();
        let listen = p.check(
            "listen",
            self.listen.parse::<SocketAddr>().map_err(|e| {
                format!(
                    "{:?}: {e} (expected HOST:PORT, e.g. 0.0.0.0:50051)",
                    self.listen
                )
            }),
        );
        let admin_listen = match self.admin_listen.as_str() {
            "off" | "" => Some(None),
            addr => p
                .check(
                    "admin-listen",
                    addr.parse::<SocketAddr>()
                        .map_err(|e| format!("{addr:?}: {e} (expected HOST:PORT or off)")),
                )
                .map(Some),
        };
        let endpoint_url = self
            .endpoint_url
            .as_deref()
            .map(|u| p.check("endpoint-url", check_endpoint(u)));
        let region = self
            .region
            .as_deref()
            .map(|r| p.check("region", check_region(r)));
        let operation_timeout = p.duration("upstream-timeout", &self.upstream_timeout);
        let attempt_timeout = match &self.upstream_attempt_timeout {
            Some(value) => p.duration("upstream-attempt-timeout", value),
            None => operation_timeout.map(|t| t.min(DEFAULT_ATTEMPT_TIMEOUT)),
        };
        let connect_timeout =
            p.duration("upstream-connect-timeout", &self.upstream_connect_timeout);
        let max_attempts = p.number("max-attempts", &self.max_attempts, 1..=MAX_ATTEMPTS_CEILING);
        let request_timeout = p.duration("request-timeout", &self.request_timeout);
        let concurrency_limit =
            p.number("concurrency-limit", &self.concurrency_limit, 1..=usize::MAX);
        let shutdown_grace = p.duration("shutdown-grace", &self.shutdown_grace);
        let cache = self.cache_settings(&mut p);
        let guard = self.guard.settings(&mut p, concurrency_limit);
        let connections = self.connections.settings(&mut p);
        let traces = p.check_as_is(TraceSettings::from_env());
        let callers = listen.and_then(|listen| self.callers(listen, &mut p));
        if let (Some(attempt), Some(operation)) = (attempt_timeout, operation_timeout)
            && attempt > operation
        {
            p.0.push(format!(
                "--upstream-attempt-timeout: {} is longer than --upstream-timeout {}",
                humantime::format_duration(attempt),
                self.upstream_timeout
            ));
        }
        match (
            listen,
            admin_listen,
            endpoint_url,
            region,
            operation_timeout,
            attempt_timeout,
            connect_timeout,
            max_attempts,
            request_timeout,
            concurrency_limit,
            shutdown_grace,
            cache,
            guard,
            connections,
            traces,
            callers,
        ) {
            (
                Some(listen),
                Some(admin_listen),
                endpoint_url,
                region,
                Some(operation_timeout),
                Some(attempt_timeout),
                Some(connect_timeout),
                Some(max_attempts),
                Some(request_timeout),
                Some(concurrency_limit),
                Some(shutdown_grace),
                Some(cache),
                Some(guard),
                Some(connections),
                Some(traces),
                Some(callers),
            ) if p.0.is_empty() => Ok(Settings {
                listen,
                admin_listen,
                upstream: UpstreamSettings {
                    endpoint_url: endpoint_url.flatten(),
                    region: region.flatten(),
                    operation_timeout,
                    attempt_timeout,
                    connect_timeout,
                    max_attempts,
                    static_credentials: None,
                },
                server: ServerSettings {
                    request_timeout,
                    concurrency_limit,
                    shutdown_grace,
                    caller_identity_header: callers.identity_header,
                    tls: callers.tls,
                    max_concurrent_streams: connections.max_concurrent_streams,
                    handshake_timeout: connections.handshake_timeout,
                    request_body_timeout: connections.request_body_timeout,
                    max_buffered_request_bytes: connections.max_buffered_request_bytes,
                    idle_timeout: connections.idle_timeout,
                    admin_header_timeout: connections.admin_header_timeout,
                    keepalive_interval: connections.keepalive_interval,
                    keepalive_timeout: connections.keepalive_timeout,
                    max_connection_age: connections.max_connection_age,
                },
                policy: callers.policy,
                audit: callers.audit,
                cache,
                guard,
                telemetry: TelemetrySettings {
                    log_format: self.log_format,
                    traces,
                },
                #[cfg(feature = "emulator")]
                embedded_emulator: self.emulator,
            }),
            _ => Err(ConfigError(p.0)),
        }
    }

    fn cache_settings(&self, p: &mut Problems) -> Option<CacheSettings> {
        let enabled = p.boolean("cache", &self.cache);
        let open_id_tokens = p.boolean("cache-open-id-tokens", &self.cache_open_id_tokens);
        let credentials = p.boolean("cache-credentials", &self.cache_credentials);
        let identity_ids = p.boolean("cache-identity-ids", &self.cache_identity_ids);
        let identity_id_ttl = p.duration("cache-identity-id-ttl", &self.cache_identity_id_ttl);
        let safety_margin = p.duration("cache-safety-margin", &self.cache_safety_margin);
        let min_remaining_share = p.share("cache-min-remaining", &self.cache_min_remaining);
        let refresh_after_share = p.share("cache-refresh-after", &self.cache_refresh_after);
        let refresh_rate = p.positive("cache-refresh-rate", &self.cache_refresh_rate);
        let max_bytes = p.bytes("cache-max-bytes", &self.cache_max_bytes);
        if let (Some(keep), Some(refresh)) = (min_remaining_share, refresh_after_share)
            && refresh >= 1.0 - keep
        {
            p.0.push(format!(
                "--cache-refresh-after: {refresh} must be below 1 - --cache-min-remaining ({}), \
                 or entries stop being served before they are renewed",
                1.0 - keep
            ));
            return None;
        }
        Some(CacheSettings {
            enabled: enabled?,
            open_id_tokens: open_id_tokens?,
            credentials: credentials?,
            identity_ids: identity_ids?,
            identity_id_ttl: identity_id_ttl?,
            safety_margin: safety_margin?,
            min_remaining_share: min_remaining_share?,
            refresh_after_share: refresh_after_share?,
            refresh_rate: refresh_rate?,
            max_bytes: max_bytes?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags as typed, serving every caller (the default listen
    /// address is not loopback).
    fn parse(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["cognito-identity-gateway", "--allow-all-callers"];
        argv.extend_from_slice(args);
        parse_exactly(&argv[1..])
    }

    fn parse_exactly(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["cognito-identity-gateway"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .expect("flags parse")
            .into_settings()
    }

    #[test]
    fn serving_every_caller_must_be_explicit() {
        let err = parse_exactly(&[]).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert!(err.0[0].starts_with("--policy: none is given"), "{err}");
        assert!(err.0[0].contains("--allow-all-callers"), "{err}");
        assert!(parse_exactly(&["--listen=127.0.0.1:50051"]).is_ok());
        assert!(parse_exactly(&["--listen=[::1]:50051"]).is_ok());
        assert!(parse_exactly(&["--allow-all-callers=true"]).is_ok());
        assert!(parse_exactly(&["--emulator"]).is_ok());
        assert!(parse_exactly(&["--allow-all-callers=perhaps"]).is_err());
    }

    #[test]
    fn a_policy_is_loaded_and_a_bad_one_refused() {
        let dir = std::env::temp_dir().join(format!("policy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.yaml");
        std::fs::write(&good, "mode: enforce\ncallers: []\n").unwrap();
        let path = format!("--policy={}", good.display());
        let s = parse_exactly(&[&path, "--caller-identity-header=L5D-Client-Id"]).unwrap();
        assert!(s.policy.is_some());
        assert_eq!(
            s.server.caller_identity_header.unwrap().name.as_str(),
            "l5d-client-id"
        );
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "mode: sometimes\n").unwrap();
        let err = parse_exactly(&[&format!("--policy={}", bad.display())]).unwrap_err();
        assert!(err.0[0].contains("bad.yaml"), "{err}");
        let missing = parse_exactly(&["--policy=/nonexistent/policy.yaml"]).unwrap_err();
        assert!(
            missing.0[0].contains("/nonexistent/policy.yaml"),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn defaults_are_valid() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.listen, "0.0.0.0:50051".parse().unwrap());
        assert_eq!(s.upstream.max_attempts, 3);
        assert_eq!(s.upstream.operation_timeout, Duration::from_secs(5));
        assert_eq!(s.server.shutdown_grace, Duration::from_secs(20));
        assert_eq!(s.upstream.endpoint_url, None);
        assert_eq!(s.admin_listen, Some("0.0.0.0:9464".parse().unwrap()));
        assert_eq!(parse(&["--admin-listen=off"]).unwrap().admin_listen, None);
        assert!(parse(&["--admin-listen=nowhere"]).is_err());
    }

    #[test]
    fn flags_are_read() {
        let s = parse(&[
            "--listen=127.0.0.1:7000",
            "--endpoint-url=http://127.0.0.1:5000",
            "--region=eu-west-1",
            "--upstream-timeout=1500ms",
            "--max-attempts=5",
            "--shutdown-grace=3s",
            "--log-format=json",
        ])
        .unwrap();
        assert_eq!(s.listen.port(), 7000);
        assert_eq!(
            s.upstream.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(s.upstream.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.upstream.operation_timeout, Duration::from_millis(1500));
        // Unset, the attempt timeout follows a shorter operation timeout.
        assert_eq!(s.upstream.attempt_timeout, Duration::from_millis(1500));
        assert_eq!(s.upstream.max_attempts, 5);
        assert_eq!(s.server.shutdown_grace, Duration::from_secs(3));
        assert_eq!(s.telemetry.log_format, LogFormat::Json);
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let err = parse(&[
            "--listen=nowhere",
            "--endpoint-url=ftp://x",
            "--region=US East",
            "--upstream-timeout=soon",
            "--max-attempts=0",
            "--concurrency-limit=-1",
            "--shutdown-grace=0s",
        ])
        .unwrap_err();
        let flags: Vec<&str> = err.0.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            flags,
            [
                "--listen",
                "--endpoint-url",
                "--region",
                "--upstream-timeout",
                "--max-attempts",
                "--concurrency-limit",
                "--shutdown-grace"
            ]
        );
        let shown = err.to_string();
        assert!(
            shown.starts_with("invalid configuration:\n  - --listen"),
            "{shown}"
        );
    }

    #[test]
    fn attempt_timeout_may_not_exceed_operation_timeout() {
        let err = parse(&["--upstream-timeout=1s", "--upstream-attempt-timeout=2s"]).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert!(err.0[0].starts_with("--upstream-attempt-timeout"));
    }

    #[test]
    fn cache_flags() {
        let s = parse(&[]).unwrap();
        assert!(s.cache.enabled && s.cache.credentials);
        assert_eq!(s.cache.max_bytes, 256 * 1024 * 1024);
        let s = parse(&[
            "--cache=false",
            "--cache-max-bytes=64KiB",
            "--cache-min-remaining=0.3",
            "--cache-refresh-after=0.6",
            "--cache-identity-id-ttl=10m",
        ])
        .unwrap();
        assert!(!s.cache.enabled);
        assert_eq!(s.cache.max_bytes, 65_536);
        assert_eq!(s.cache.identity_id_ttl, Duration::from_secs(600));
        let err = parse(&[
            "--cache=maybe",
            "--cache-max-bytes=lots",
            "--cache-refresh-rate=0",
        ])
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        let err = parse(&["--cache-min-remaining=0.5", "--cache-refresh-after=0.5"]).unwrap_err();
        assert!(err.0[0].starts_with("--cache-refresh-after"), "{err}");
    }

    #[test]
    fn max_attempts_bounds() {
        assert!(parse(&["--max-attempts=1"]).is_ok());
        assert!(parse(&["--max-attempts=10"]).is_ok());
        assert!(parse(&["--max-attempts=11"]).is_err());
    }
}
