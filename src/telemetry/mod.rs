//! Telemetry: logs (text or JSON, filtered by `RUST_LOG`), OpenTelemetry
//! spans ([`spans`]: a server span per API call, made in [`rpc`], and a
//! client span per upstream call) exported over OTLP ([`traces`], encoded by
//! [`otlp`]), and Prometheus metrics ([`metrics`], served by the server's
//! admin listener). Telemetry is told what happened or handed it; it
//! imports nothing of the crate but the domain's records and the
//! generated names.
//!
//! Nothing secret is ever recorded: spans and log lines carry names, codes,
//! ids and counts, never a token, a Logins value, a principal tag value or a
//! credential.

mod escape;
pub(crate) mod export;
pub(crate) mod exposition;
pub(crate) mod finished;
pub mod metrics;
pub(crate) mod otlp;
pub(crate) mod propagation;
pub(crate) mod rpc;
pub(crate) mod rpc_metrics;
pub(crate) mod spans;
pub(crate) mod traces;

use clap::ValueEnum;
use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::Registry;
use tracing_subscriber::filter::{FilterExt, LevelFilter, filter_fn};
use tracing_subscriber::layer::Filter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub(crate) use traces::TraceSettings;

/// The instrumentation scope of the gateway's spans.
pub(crate) const SCOPE_NAME: &str = "cognito-identity-gateway";

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// For people.
    Text,
    /// One JSON object a line, for log pipelines.
    Json,
}

/// What telemetry to start.
#[derive(Clone, Debug)]
pub struct TelemetrySettings {
    /// How log lines look.
    pub(crate) log_format: LogFormat,
    /// Trace export, if the environment asks for it.
    pub(crate) traces: Option<TraceSettings>,
}

/// Keeps the trace exporter running; [`Telemetry::shutdown`] flushes it.
#[must_use = "dropping it stops nothing, but shutdown() flushes the last spans"]
#[derive(Debug, Default)]
pub struct Telemetry {
    exporter: Option<traces::Exporter>,
}

impl Telemetry {
    /// Registers the trace exporter's metrics, if it runs, in `registry`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        if let Some(exporter) = &self.exporter {
            exporter.metrics().register(registry);
        }
    }

    /// Exports the spans still queued and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(exporter) = self.exporter {
            exporter.shutdown().await;
        }
    }
}

/// The AWS SDK's own crates (`aws_smithy_runtime`, `aws_sdk_*`, ...) log
/// whole requests and outputs at trace: GetCredentialsForIdentity's output
/// with its access key id and session token in clear. So their spans and
/// events stop at debug, whatever `RUST_LOG` asks for.
fn below_sdk_trace(metadata: &Metadata<'_>) -> bool {
    !(metadata.target().starts_with("aws_") && *metadata.level() == Level::TRACE)
}

/// `RUST_LOG`'s filter, with the SDK's crates capped at debug. The cap says
/// it lets everything else through up to trace, so that the whole filter's
/// level is `RUST_LOG`'s: without that hint it would be "any level", and
/// every `trace!` in h2 and hyper would then be checked on every call, a
/// cost a cache hit notices.
fn log_filter(env: EnvFilter) -> impl Filter<Registry> {
    env.and(filter_fn(below_sdk_trace).with_max_level_hint(LevelFilter::TRACE))
}

/// Installs logging, the W3C propagators and, when `settings` ask for it,
/// trace export (on a thread of its own). A second call installs no more
/// logging.
pub fn start(settings: TelemetrySettings) -> Telemetry {
    propagation::install_propagators();
    let exporter = settings.traces.and_then(traces::start);
    let filter =
        log_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    // Colours only for a terminal: a file or a log collector gets plain text.
    // Colour only for a person at a terminal, and never with NO_COLOR set
    // (no-color.org): a log file or collector would keep the codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let fmt = match settings.log_format {
        // Every field escaped: a request's values cannot forge a line.
        LogFormat::Text => fmt.fmt_fields(escape::EscapedFields).boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let _already_set = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .try_init();
    Telemetry { exporter }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_cap_keeps_rust_logs_level() {
        let filter = log_filter(EnvFilter::new("info"));
        assert_eq!(
            Filter::<Registry>::max_level_hint(&filter),
            Some(LevelFilter::INFO)
        );
    }
}
