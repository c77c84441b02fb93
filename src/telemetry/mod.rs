//! Telemetry: logs (text or JSON, filtered by `RUST_LOG`), OpenTelemetry
//! traces over OTLP ([`traces`]), a span per API call ([`rpc`]), Prometheus
//! metrics ([`metrics`]) on the admin listener ([`admin`]).
//!
//! Nothing secret is ever recorded: spans and log lines carry names, codes,
//! ids and counts, never a token, a Logins value, a principal tag value or a
//! credential.

pub mod admin;
pub mod metrics;
pub mod rpc;
pub mod traces;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes it.
#[must_use = "dropping it stops nothing, but shutdown() flushes the last spans"]
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // The SDK blocks while flushing; keep that off the async workers.
            let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = flushed {
                eprintln!("flushing traces failed: {e}");
            }
        }
    }
}

/// Installs logging and, when the environment asks for it, trace export.
/// Must run inside the Tokio runtime. A second call installs nothing.
pub fn init(format: LogFormat) -> Result<Telemetry, String> {
    let provider = traces::provider_from_env()?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    // Spans go to the exporter whatever RUST_LOG says of log lines: the
    // gateway's spans (declared at DEBUG so that the default log filter
    // skips them), and its events from INFO up as span events.
    let otel = provider.as_ref().map(|p| {
        let ours = filter_fn(|meta| {
            meta.target().starts_with("cognito_identity_gateway")
                && (meta.is_span() || *meta.level() <= Level::INFO)
        });
        // Only the attributes the conventions ask for: source location,
        // thread and target attributes, and busy/idle timing on every span
        // enter and exit, cost CPU on each call and say nothing to an operator.
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("cognito-identity-gateway"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            // Nothing else in the process reads the OpenTelemetry context,
            // so spans need not activate it each time a call is polled.
            .with_context_activation(false)
            .with_filter(ours)
    });
    let _already_set = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init();
    Ok(Telemetry { provider })
}
