//! Configuration: command-line flags, each also read from an environment
//! variable, and the OpenTelemetry environment, checked as a whole so that
//! one message lists every problem before any port is bound.
//!
//! The flags come in one [`clap::Args`] struct a part, in a file of its
//! own, each under its own heading in `--help`: [`ServerArgs`],
//! [`ConnectionArgs`], [`CallersArgs`] (the policy, TLS, a mesh's header),
//! [`AuditArgs`], [`CacheArgs`], [`GuardArgs`], [`UpstreamArgs`],
//! [`TelemetryArgs`]. Each checks its own flags and reports every problem
//! it finds; [`Cli::into_settings`] checks them all, in that order, then
//! assembles the settings, which are plain data: files the configuration
//! names are read and checked here, and put in force by the running
//! gateway. Each settings type belongs to the module it configures; this
//! module only assembles them, and only `lib` and `main` import it.

use std::fmt;
use std::net::SocketAddr;

use clap::Parser;

use crate::audit::AuditSettings;
use crate::cache::CacheSettings;
use crate::guard::GuardSettings;
use crate::policy::LoadedPolicy;
use crate::server::ServerSettings;
use crate::telemetry::TelemetrySettings;
use crate::upstream::UpstreamSettings;

/// The version `--version` prints: Cargo.toml's, and the commit built.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("GATEWAY_REVISION"),
    ")"
);

/// What `--help` opens with.
const ABOUT: &str = "A gRPC gateway in front of Amazon Cognito Identity (identity pools): \
services call it for identity ids, OpenID tokens and AWS credentials instead of holding \
developer credentials. It caches tokens, checks each caller against a policy, audits \
developer tokens, and keeps serving cached tokens through a Cognito outage.";

/// Where `--help` says to start.
const START: &str = "To start: `cognito-identity-gateway --emulator --listen 127.0.0.1:50051` \
serves a ready identity pool of an embedded emulator, no AWS account needed. In production, \
give --region (or the AWS configuration), a --policy, and --tls-cert/--tls-key/--tls-client-ca \
for mutual TLS; the README says more. Every flag can also be set by the environment variable \
shown with it.";

/// The gateway's command line.
#[derive(Debug, Parser)]
#[command(
    name = "cognito-identity-gateway",
    version = VERSION,
    about = ABOUT,
    after_help = START,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Run something other than the gateway.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The gateway's flags.
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

// The gateway's flags, as typed. Values that need checking are kept as
// text so that every problem can be reported at once, not only the first.
/// The gateway's flags, part by part.
#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// Start an embedded Cognito Identity emulator on a loopback port, with a
    /// ready identity pool, and use it as the upstream (no AWS account needed).
    #[cfg(feature = "emulator")]
    #[arg(long, env = "COGNITO_GATEWAY_EMULATOR")]
    pub emulator: bool,

    /// Where the server listens, and its bounds on calls.
    #[command(flatten)]
    pub(crate) server: ServerArgs,

    /// The API listener's connections.
    #[command(flatten)]
    pub(crate) connections: ConnectionArgs,

    /// Who may call.
    #[command(flatten)]
    pub(crate) callers: CallersArgs,

    /// The audit log.
    #[command(flatten)]
    pub(crate) audit: AuditArgs,

    /// The token cache.
    #[command(flatten)]
    pub(crate) cache: CacheArgs,

    /// The guard in front of the upstream.
    #[command(flatten)]
    pub(crate) guard: GuardArgs,

    /// How to reach Cognito.
    #[command(flatten)]
    pub(crate) upstream: UpstreamArgs,

    /// Logs and traces.
    #[command(flatten)]
    pub(crate) telemetry: TelemetryArgs,
}

mod audit;
mod cache;
mod callers;
mod connections;
#[cfg(feature = "emulator")]
mod emulator;
mod guard;
mod problems;
mod server;
mod telemetry;
mod upstream;

pub(crate) use audit::AuditArgs;
pub(crate) use cache::CacheArgs;
pub(crate) use callers::CallersArgs;
pub(crate) use connections::ConnectionArgs;
pub(crate) use guard::GuardArgs;
pub(crate) use server::ServerArgs;
pub(crate) use telemetry::TelemetryArgs;
pub(crate) use upstream::UpstreamArgs;

#[cfg(feature = "emulator")]
pub(crate) use emulator::EmulatorArgs;
#[cfg(feature = "emulator")]
pub use emulator::EmulatorConfig;
use problems::Problems;

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the Cognito Identity emulator alone, for any AWS client.
    #[cfg(feature = "emulator")]
    Emulator(EmulatorArgs),
    /// Check a whole configuration, the gateway's flags and environment and
    /// the TLS, policy and audit key files they name, without binding a port
    /// or calling AWS: exit 0, or 2 with every problem.
    CheckConfig(Box<GatewayArgs>),
}

/// What the binary runs, checked.
#[derive(Debug)]
pub enum Program {
    /// The gateway (boxed: its settings are most of the enum's size).
    Gateway(Box<Settings>),
    /// The emulator alone.
    #[cfg(feature = "emulator")]
    Emulator(EmulatorConfig),
    /// Nothing: the configuration `check-config` was given is valid.
    Checked(Box<Settings>),
}

impl Program {
    /// The telemetry it starts with.
    pub fn telemetry(&self) -> TelemetrySettings {
        match self {
            Program::Gateway(settings) => settings.telemetry.clone(),
            // The emulator's own log lines, for people; it exports no spans.
            #[cfg(feature = "emulator")]
            Program::Emulator(_) => TelemetrySettings {
                log_format: crate::telemetry::LogFormat::Text,
                traces: None,
            },
            // It only says what it found.
            Program::Checked(settings) => TelemetrySettings {
                traces: None,
                ..settings.telemetry.clone()
            },
        }
    }
}

/// Checked configuration: plain data, from which the gateway builds what
/// runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the gRPC server listens.
    pub(crate) listen: SocketAddr,
    /// Where the admin HTTP server listens, if anywhere.
    pub(crate) admin_listen: Option<SocketAddr>,
    /// How to reach Cognito.
    pub upstream: UpstreamSettings,
    /// The server.
    pub(crate) server: ServerSettings,
    /// The token cache.
    pub(crate) cache: CacheSettings,
    /// The guard in front of the upstream.
    pub(crate) guard: GuardSettings,
    /// Logs and traces.
    pub(crate) telemetry: TelemetrySettings,
    /// The caller policy, read and checked (put in force, and reloaded
    /// when its file changes, once the gateway runs); `None`: every caller
    /// may call everything.
    pub(crate) policy: Option<LoadedPolicy>,
    /// The audit log, if on.
    pub(crate) audit: Option<AuditSettings>,
    /// Start an embedded emulator and use it as the upstream (`--emulator`):
    /// [`Settings::start_embedded_emulator`] resolves it.
    #[cfg(feature = "emulator")]
    pub(crate) embedded_emulator: bool,
}

#[cfg(feature = "emulator")]
impl Settings {
    /// With `--emulator`, starts the embedded emulator on a loopback port
    /// and points the upstream at it (its region unless one is set, and its
    /// access key); the emulator serves while the handle lives. Without it,
    /// nothing.
    pub(crate) async fn start_embedded_emulator(
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

impl Settings {
    /// What `check-config` says of a valid configuration: what would be
    /// served, and how.
    pub fn summary(&self) -> String {
        let on = |yes: bool| if yes { "on" } else { "off" };
        let admin = self
            .admin_listen
            .map_or_else(|| "off".to_owned(), |a| a.to_string());
        format!(
            "the configuration is valid: gRPC on {} (TLS {}), admin on {admin}, policy {}, \
             audit log {}",
            self.listen,
            on(self.server.tls.is_some()),
            on(self.policy.is_some()),
            on(self.audit.is_some()),
        )
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
    pub fn into_program(self) -> Result<Program, ConfigError> {
        match self.command {
            #[cfg(feature = "emulator")]
            Some(Command::Emulator(args)) => args.into_config().map(Program::Emulator),
            Some(Command::CheckConfig(args)) => args.check().map(|s| Program::Checked(Box::new(s))),
            None => self
                .gateway
                .into_settings()
                .map(|s| Program::Gateway(Box::new(s))),
        }
    }

    /// The gateway's settings ([`GatewayArgs::into_settings`]).
    pub fn into_settings(self) -> Result<Settings, ConfigError> {
        self.gateway.into_settings()
    }
}

impl GatewayArgs {
    /// What `check-config` checks: the settings, and, where no `--region`
    /// is given and no emulator stands in, that the environment names a
    /// region (the gateway would not start without one).
    pub fn check(self) -> Result<Settings, ConfigError> {
        let region =
            self.upstream.region.is_some() || self.embedded_emulator() || region_in_environment();
        let mut problems = match self.into_settings() {
            Ok(settings) if region => return Ok(settings),
            Ok(_) => Vec::new(),
            Err(ConfigError(problems)) => problems,
        };
        if !region {
            problems.push(
                "--region: none is given, and neither AWS_REGION, AWS_DEFAULT_REGION nor an AWS \
                 config file names one"
                    .to_owned(),
            );
        }
        Err(ConfigError(problems))
    }

    fn embedded_emulator(&self) -> bool {
        #[cfg(feature = "emulator")]
        return self.emulator;
        #[cfg(not(feature = "emulator"))]
        return false;
    }

    /// Checks the gateway's flags, part by part, and the OpenTelemetry
    /// environment, and returns settings, or every problem found.
    pub fn into_settings(self) -> Result<Settings, ConfigError> {
        let embedded_emulator = self.embedded_emulator();
        let mut p = Problems::default();
        let server = self.server.settings(&mut p);
        let connections = self.connections.settings(&mut p);
        let listen = server.as_ref().map(|s| s.listen);
        let callers = self.callers.settings(&mut p, listen, embedded_emulator);
        let audit = self.audit.settings(&mut p);
        let cache = self.cache.settings(&mut p);
        let concurrency_limit = server.as_ref().map(|s| s.concurrency_limit);
        let guard = self.guard.settings(&mut p, concurrency_limit);
        let upstream = self.upstream.settings(&mut p);
        let telemetry = self.telemetry.settings(&mut p);
        let settings = || {
            let (server, callers) = (server?, callers?);
            Some(Settings {
                listen: server.listen,
                admin_listen: server.admin_listen,
                server: server.with(connections?, callers.identity_header, callers.tls),
                policy: callers.policy,
                audit: audit.ok()?,
                cache: cache?,
                guard: guard?,
                upstream: upstream?,
                telemetry: telemetry?,
                #[cfg(feature = "emulator")]
                embedded_emulator,
            })
        };
        match settings() {
            Some(settings) if p.0.is_empty() => Ok(settings),
            _ => Err(ConfigError(p.0)),
        }
    }
}

/// Whether the AWS SDK's default chain could find a region without
/// `--region`: in `AWS_REGION`, `AWS_DEFAULT_REGION`, or a config file
/// (which may name one; the profile is not read here).
fn region_in_environment() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("AWS_REGION") || set("AWS_DEFAULT_REGION") {
        return true;
    }
    let file = std::env::var_os("AWS_CONFIG_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".aws/config"))
        });
    file.is_some_and(|f| f.is_file())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::telemetry::LogFormat;

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

    /// The flags as typed, on a loopback address: what the parts' own
    /// tests check.
    pub(super) fn settings(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["--listen", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        parse_exactly(&argv)
    }

    /// The problems [`settings`] finds, as the message says them.
    pub(super) fn problems(args: &[&str]) -> String {
        settings(args).unwrap_err().to_string()
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
        // In the order of `--help`: part by part, each part's flags in order.
        let flags: Vec<&str> = err.0.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            flags,
            [
                "--listen",
                "--concurrency-limit",
                "--shutdown-grace",
                "--endpoint-url",
                "--region",
                "--upstream-timeout",
                "--max-attempts",
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
