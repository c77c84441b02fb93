//! The flags of telemetry: the log format here; the traces' exporter from
//! the OpenTelemetry environment (`OTEL_*`), checked with the flags.

use super::problems::Problems;
use crate::telemetry::{LogFormat, TelemetrySettings, TraceSettings};

/// Flags of [`TelemetrySettings`].
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Telemetry")]
pub(crate) struct TelemetryArgs {
    /// Log format; RUST_LOG sets the filter (default: info).
    #[arg(long, env = "COGNITO_GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

impl TelemetryArgs {
    /// Checks the flags and the OpenTelemetry environment.
    pub(super) fn settings(&self, p: &mut Problems) -> Option<TelemetrySettings> {
        let traces = p.check_as_is(TraceSettings::from_env());
        Some(TelemetrySettings {
            log_format: self.log_format,
            traces: traces?,
        })
    }
}
