//! The `cognito-identity-gateway` binary: parse the configuration, start
//! logging, reach the upstream, bind, and call [`run`]; or, as
//! `cognito-identity-gateway emulator`, run the emulator alone.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use cognito_identity_gateway::cache::Clock;
use cognito_identity_gateway::config::{Cli, ConfigError, Settings};
#[cfg(feature = "emulator")]
use cognito_identity_gateway::config::{Command, LogFormat};
use cognito_identity_gateway::service::Gateway;
use cognito_identity_gateway::upstream::CognitoUpstream;
use cognito_identity_gateway::{Listeners, run, shutdown, telemetry};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code of a bad configuration, as clap uses for bad usage.
const BAD_CONFIGURATION: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let mut cli = Cli::parse();
    match cli.command.take() {
        #[cfg(feature = "emulator")]
        Some(Command::Emulator(args)) => emulator(args).await,
        None => gateway(cli).await,
    }
}

fn refuse(problems: &ConfigError) -> ExitCode {
    eprint!("{problems}");
    ExitCode::from(BAD_CONFIGURATION)
}

async fn gateway(cli: Cli) -> ExitCode {
    #[cfg(feature = "emulator")]
    let embedded = cli.emulator;
    #[allow(unused_mut)]
    let mut settings: Settings = match cli.into_settings() {
        Ok(settings) => settings,
        Err(problems) => return refuse(&problems),
    };
    let telemetry = match telemetry::init(settings.log_format) {
        Ok(telemetry) => telemetry,
        Err(problem) => return refuse(&ConfigError(vec![problem])),
    };
    #[cfg(feature = "emulator")]
    if embedded {
        use cognito_identity_gateway::emulator;
        let url = match emulator::start_embedded().await {
            Ok((url, _emulator)) => url,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let (id, secret) = emulator::DEFAULT_ACCESS_KEY;
        settings.upstream.endpoint_url = Some(url.clone());
        settings
            .upstream
            .region
            .get_or_insert_with(|| "us-east-1".to_owned());
        settings.upstream.static_credentials = Some((id.to_owned(), secret.to_owned()));
        tracing::info!(
            endpoint = %url,
            identity_pool_id = emulator::DEFAULT_POOL_ID,
            developer_provider = emulator::DEFAULT_DEVELOPER_PROVIDER,
            "embedded Cognito Identity emulator ready"
        );
    }
    let upstream = match CognitoUpstream::load(&settings.upstream).await {
        Ok(upstream) => upstream,
        Err(problem) => return refuse(&ConfigError(vec![problem])),
    };
    let Some(grpc) = bind(settings.listen).await else {
        return ExitCode::FAILURE;
    };
    let admin = match settings.admin_listen {
        Some(addr) => match bind(addr).await {
            Some(listener) => Some(listener),
            None => return ExitCode::FAILURE,
        },
        None => None,
    };
    tracing::info!(listen = %settings.listen, admin = ?settings.admin_listen, "serving gRPC");
    let service = Arc::new(Gateway::new(
        upstream,
        settings.cache.clone(),
        Clock::default(),
    ));
    let listeners = Listeners { grpc, admin };
    let outcome = run(&settings.server, listeners, service, shutdown::signal()).await;
    telemetry.shutdown().await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn bind(addr: std::net::SocketAddr) -> Option<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => Some(listener),
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            None
        }
    }
}

#[cfg(feature = "emulator")]
async fn emulator(args: cognito_identity_gateway::config::EmulatorArgs) -> ExitCode {
    use cognito_identity_gateway::emulator::{self, Emulator};
    let config = match args.into_config() {
        Ok(config) => config,
        Err(problems) => return refuse(&problems),
    };
    let _logs = telemetry::init(LogFormat::Text);
    let emulator = match Emulator::new(config.settings) {
        Ok(emulator) => emulator,
        Err(e) => return refuse(&ConfigError(vec![e])),
    };
    if config.default_pool {
        emulator.add_default_pool();
    }
    let Some(listener) = bind(config.listen).await else {
        return ExitCode::FAILURE;
    };
    let addr = listener.local_addr().map_or(config.listen, |a| a);
    // The exact line scripts wait for: the address actually bound.
    println!("emulator listening on http://{addr}");
    emulator::serve(listener, emulator, shutdown::signal()).await;
    ExitCode::SUCCESS
}
