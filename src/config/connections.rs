//! The flags of the API listener's connections: streams per connection,
//! the handshake timeout, HTTP/2 keepalive pings.

use std::time::Duration;

use super::problems::Problems;

/// Flags of the API listener's connections.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Connections")]
pub(crate) struct ConnectionArgs {
    /// Streams (calls) one connection may have open at once, advertised to
    /// clients in HTTP/2 SETTINGS; clients queue the rest.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_MAX_CONCURRENT_STREAMS",
        default_value = "128"
    )]
    pub max_concurrent_streams: String,

    /// How long a new connection may take to finish its TLS handshake, and
    /// then to send the HTTP/2 preface, before it is closed.
    #[arg(long, env = "COGNITO_GATEWAY_HANDSHAKE_TIMEOUT", default_value = "10s")]
    pub handshake_timeout: String,

    /// How long a call's request message may take to arrive once its
    /// stream is open (DEADLINE_EXCEEDED, REQUEST_BODY_TIMEOUT past it); a
    /// call is admitted only once its message has come.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_REQUEST_BODY_TIMEOUT",
        default_value = "5s"
    )]
    pub request_body_timeout: String,

    /// Bytes that request messages still arriving may hold, all connections
    /// together (B, KiB, MiB or GiB): a message that would need more is
    /// refused at once (RESOURCE_EXHAUSTED, REQUEST_BUFFER_FULL). A message
    /// that arrives whole holds nothing, so is never refused this way.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_MAX_BUFFERED_REQUEST_BYTES",
        default_value = "64MiB"
    )]
    pub(crate) max_buffered_request_bytes: String,

    /// How long a connection with no call in flight is kept open before the
    /// gateway closes it (clients reconnect on their next call).
    #[arg(
        long,
        env = "COGNITO_GATEWAY_CONNECTION_IDLE_TIMEOUT",
        default_value = "5m"
    )]
    pub(crate) connection_idle_timeout: String,

    /// How long a request's head may take to arrive on the admin listener,
    /// the first or the next on a kept-alive connection: a half-sent or
    /// idle admin connection is closed then.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_ADMIN_HEADER_TIMEOUT",
        default_value = "30s"
    )]
    pub admin_header_timeout: String,

    /// How often an HTTP/2 PING checks a connection that has been quiet.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_HTTP2_KEEPALIVE_INTERVAL",
        default_value = "60s"
    )]
    pub(crate) http2_keepalive_interval: String,

    /// How long a PING's answer may take before the connection is closed.
    #[arg(
        long,
        env = "COGNITO_GATEWAY_HTTP2_KEEPALIVE_TIMEOUT",
        default_value = "20s"
    )]
    pub(crate) http2_keepalive_timeout: String,

    /// How long a connection is kept at most, less a jitter of up to a
    /// tenth (1m to 30d): it is then told to close (GOAWAY; its calls in
    /// flight finish) and its client reconnects, so that the caller's
    /// certificate and the TLS files in force are checked again at least
    /// this often.
    #[arg(long, env = "COGNITO_GATEWAY_MAX_CONNECTION_AGE", default_value = "1h")]
    pub(crate) max_connection_age: String,
}

/// The bounds of `--max-connection-age`: at least a minute (a client that
/// reconnects every few seconds pays a handshake a call), at most thirty
/// days (past which a timer is no bound at all).
const CONNECTION_AGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(30 * 24 * 3600);

/// The checked values.
#[derive(Debug)]
pub(super) struct Connections {
    pub(super) max_concurrent_streams: u32,
    pub(super) handshake_timeout: Duration,
    pub(super) request_body_timeout: Duration,
    pub(super) max_buffered_request_bytes: usize,
    pub(super) idle_timeout: Duration,
    pub(super) admin_header_timeout: Duration,
    pub(super) keepalive_interval: Duration,
    pub(super) keepalive_timeout: Duration,
    pub(super) max_connection_age: Duration,
}

impl ConnectionArgs {
    /// Checks the flags.
    pub(super) fn settings(&self, p: &mut Problems) -> Option<Connections> {
        let streams = p.number(
            "max-concurrent-streams",
            &self.max_concurrent_streams,
            1..=u32::MAX,
        );
        let handshake = p.duration("handshake-timeout", &self.handshake_timeout);
        let body = p.duration("request-body-timeout", &self.request_body_timeout);
        let buffered = p
            .bytes(
                "max-buffered-request-bytes",
                &self.max_buffered_request_bytes,
            )
            .map(|b| usize::try_from(b).unwrap_or(usize::MAX))
            .and_then(|b| {
                // Room for one largest request message at least.
                let least = crate::server::MAX_REQUEST_BYTES + 5;
                let enough = if b >= least {
                    Ok(b)
                } else {
                    Err(format!(
                        "{b} bytes: must be at least {least}, room for the largest request message"
                    ))
                };
                p.check("max-buffered-request-bytes", enough)
            });
        let idle = p.duration("connection-idle-timeout", &self.connection_idle_timeout);
        let admin_header = p.duration("admin-header-timeout", &self.admin_header_timeout);
        let interval = p.duration("http2-keepalive-interval", &self.http2_keepalive_interval);
        let timeout = p.duration("http2-keepalive-timeout", &self.http2_keepalive_timeout);
        let max_age = p
            .duration("max-connection-age", &self.max_connection_age)
            .and_then(|age| {
                let within = if CONNECTION_AGE.contains(&age) {
                    Ok(age)
                } else {
                    Err(format!(
                        "{}: must be between 1m and 30d",
                        humantime::format_duration(age)
                    ))
                };
                p.check("max-connection-age", within)
            });
        Some(Connections {
            max_concurrent_streams: streams?,
            handshake_timeout: handshake?,
            request_body_timeout: body?,
            max_buffered_request_bytes: buffered?,
            idle_timeout: idle?,
            admin_header_timeout: admin_header?,
            keepalive_interval: interval?,
            keepalive_timeout: timeout?,
            max_connection_age: max_age?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use crate::config::Cli;

    fn server(args: &[&str]) -> Result<crate::server::ServerSettings, Vec<String>> {
        let mut argv = vec!["cognito-identity-gateway", "--allow-all-callers"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .expect("flags parse")
            .into_settings()
            .map(|s| s.server)
            .map_err(|e| e.0)
    }

    #[test]
    fn defaults_suit_a_kubernetes_service_and_bad_values_are_named() {
        let s = server(&[]).unwrap();
        assert_eq!(s.max_concurrent_streams, 128);
        assert_eq!(s.handshake_timeout, Duration::from_secs(10));
        assert_eq!(s.request_body_timeout, Duration::from_secs(5));
        assert_eq!(s.max_buffered_request_bytes, 64 << 20);
        assert_eq!(s.idle_timeout, Duration::from_secs(300));
        assert_eq!(s.admin_header_timeout, Duration::from_secs(30));
        assert_eq!(s.keepalive_interval, Duration::from_secs(60));
        assert_eq!(s.keepalive_timeout, Duration::from_secs(20));
        assert_eq!(s.max_connection_age, Duration::from_secs(3600));
        assert!(server(&["--max-connection-age=2s"]).is_err());
        let s = server(&[
            "--max-concurrent-streams=16",
            "--handshake-timeout=2s",
            "--max-buffered-request-bytes=8MiB",
        ])
        .unwrap();
        assert_eq!(s.max_concurrent_streams, 16);
        assert_eq!(s.max_buffered_request_bytes, 8 << 20);
        assert_eq!(s.handshake_timeout, Duration::from_secs(2));
        let err = server(&[
            "--max-concurrent-streams=0",
            "--http2-keepalive-timeout=soon",
        ])
        .unwrap_err();
        let flags: Vec<&str> = err.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            flags,
            ["--max-concurrent-streams", "--http2-keepalive-timeout"]
        );
    }
}
