//! The `cognito-identity-gateway` binary: parse the configuration, start
//! telemetry, serve, and exit with a code that says how it went.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use cognito_identity_gateway::config::{Cli, Program};
use cognito_identity_gateway::telemetry::metrics::Metrics;
use cognito_identity_gateway::{Failure, serve, shutdown, telemetry};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let program = match Cli::parse().into_program() {
        Ok(program) => program,
        Err(problems) => return exit(Err(problems.into())),
    };
    if let Program::Checked(settings) = &program {
        println!("{}", settings.summary());
        return ExitCode::SUCCESS;
    }
    let telemetry = telemetry::start(program.telemetry());
    // One registry for the process's parts, the trace exporter's first.
    let metrics = Arc::new(Metrics::new());
    metrics.register(|registry| telemetry.register(registry));
    let outcome = serve(program, metrics, shutdown::signal()).await;
    telemetry.shutdown().await;
    exit(outcome)
}

/// The one way out: a failure said on standard error, and its exit code.
fn exit(outcome: Result<(), Failure>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.to_string().trim_end());
            ExitCode::from(failure.exit_code())
        }
    }
}
