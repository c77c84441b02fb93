//! The `cognito-identity-gateway` binary: parse the configuration, start
//! logging, reach the upstream, bind, and call [`run`].

use std::process::ExitCode;

use clap::Parser;
use cognito_identity_gateway::config::Cli;
use cognito_identity_gateway::upstream::CognitoUpstream;
use cognito_identity_gateway::{run, shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Cli::parse().into_settings() {
        Ok(settings) => settings,
        Err(problems) => {
            eprint!("{problems}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logs(settings.log_format);
    let upstream = match CognitoUpstream::load(&settings.upstream).await {
        Ok(upstream) => upstream,
        Err(problem) => {
            eprintln!("invalid configuration:\n  - {problem}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", settings.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(listen = %settings.listen, "serving gRPC");
    match run(&settings.server, listener, upstream, shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
