//! Telemetry: logs (text or JSON, filtered by `RUST_LOG`), OpenTelemetry
//! spans ([`spans`]: a server span per API call, made in [`rpc`], and a
//! client span per upstream call) exported over OTLP ([`traces`], encoded by
//! [`otlp`]), Prometheus metrics ([`metrics`]) on the admin listener
//! ([`admin`]).
//!
//! Nothing secret is ever recorded: spans and log lines carry names, codes,
//! ids and counts, never a token, a Logins value, a principal tag value or a
//! credential.

pub mod admin;
pub mod export;
pub mod metrics;
pub mod otlp;
pub mod rpc;
pub mod spans;
pub mod traces;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// The instrumentation scope of the gateway's spans.
pub const SCOPE_NAME: &str = "cognito-identity-gateway";

/// Keeps the trace exporter running; [`Telemetry::shutdown`] flushes it.
#[must_use = "dropping it stops nothing, but shutdown() flushes the last spans"]
#[derive(Debug, Default)]
pub struct Telemetry {
    exporter: Option<traces::Exporter>,
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(exporter) = self.exporter {
            exporter.shutdown().await;
        }
    }
}

/// Installs logging and, when the environment asks for it, trace export
/// (on a thread of its own). A second call installs nothing.
pub fn init(format: LogFormat) -> Result<Telemetry, String> {
    let exporter = traces::start_from_env()?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let _already_set = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .try_init();
    Ok(Telemetry { exporter })
}
