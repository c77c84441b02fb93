//! The binary as an operator runs it: configuration from flags and the
//! environment, a clear refusal of a bad configuration before any port is
//! bound, and a clean exit on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The binary with a clean environment and no admin listener: only what
/// the test gives it.
fn gateway() -> Command {
    let mut command = support::binary::command();
    command.env("COGNITO_GATEWAY_ADMIN_LISTEN", "off");
    command
}

#[test]
fn a_bad_configuration_lists_every_problem_and_exits_2() {
    let out = gateway()
        .args(["--listen", "nowhere", "--max-attempts", "zero"])
        .env("COGNITO_GATEWAY_UPSTREAM_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("invalid configuration:"), "{stderr}");
    for flag in ["--listen", "--max-attempts", "--upstream-timeout"] {
        assert!(
            stderr.contains(&format!("- {flag}:")),
            "{flag} missing in {stderr}"
        );
    }
}

#[test]
fn serving_every_caller_off_loopback_needs_a_policy_or_the_flag() {
    let out = gateway()
        .args(["--listen", "0.0.0.0:0", "--region", "us-east-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("- --policy: none is given"), "{stderr}");
    let out = gateway()
        .args([
            "--listen",
            "0.0.0.0:0",
            "--policy",
            "/nonexistent/policy.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("/nonexistent/policy.yaml"), "{stderr}");
}

#[test]
fn no_region_is_a_configuration_error() {
    let out = gateway()
        .args(["--listen", "127.0.0.1:0"])
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("no AWS region"), "{stderr}");
}

#[tokio::test]
async fn serves_from_the_environment_and_exits_0_on_sigterm() {
    serve_then_signal("TERM").await;
}

#[tokio::test]
async fn exits_0_on_sigint_too() {
    serve_then_signal("INT").await;
}

/// Starts the binary configured only through its environment, waits until
/// it reports SERVING, sends SIG`signal`, and expects a clean exit.
async fn serve_then_signal(signal: &str) {
    let endpoint = support::moto_endpoint();
    let port = support::loopback::free_port();
    let child = gateway()
        .env("COGNITO_GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("COGNITO_GATEWAY_ENDPOINT_URL", &endpoint)
        .env("AWS_REGION", support::REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .spawn()
        .unwrap();

    let mut serving = false;
    for _ in 0..200 {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"));
        if let Ok(channel) = endpoint.unwrap().connect().await {
            let mut health = HealthClient::new(channel);
            let status = health
                .check(HealthCheckRequest::default())
                .await
                .unwrap()
                .into_inner()
                .status;
            serving = status == 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serving, "the gateway never reported SERVING");

    support::binary::signal(&child, signal);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("SIG{signal} received")),
        "{stderr}"
    );
}

#[test]
fn version_names_the_commit_and_help_says_where_to_start() {
    let out = gateway()
        .arg("--version")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let version = String::from_utf8(out.stdout).unwrap();
    let expected = format!("cognito-identity-gateway {} (", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&expected), "{version}");
    let revision = version
        .trim_end()
        .strip_prefix(&expected)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_default();
    assert!(
        !revision.is_empty()
            && revision
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "{version}"
    );

    let out = gateway()
        .arg("--help")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.starts_with("A gRPC gateway in front of Amazon Cognito Identity"),
        "{help}"
    );
    assert!(
        help.contains("To start: `cognito-identity-gateway --emulator"),
        "{help}"
    );
}

/// The gateway's first log lines, its standard error on a terminal (a
/// pseudo-terminal `script` gives it) with `env`, for two seconds.
fn logged_on_a_terminal(env: &[(&str, &str)]) -> String {
    let command = format!(
        "timeout -s TERM 2 {} --emulator --listen 127.0.0.1:0",
        env!("CARGO_BIN_EXE_cognito-identity-gateway")
    );
    let out = Command::new("script")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("COGNITO_GATEWAY_ADMIN_LISTEN", "off")
        .envs(env.iter().copied())
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("script (util-linux) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn logs_are_coloured_on_a_terminal_only_and_never_with_no_color() {
    const ESC: char = '\u{1b}';
    let terminal = logged_on_a_terminal(&[]);
    assert!(terminal.contains("serving gRPC"), "{terminal}");
    assert!(
        terminal.contains(ESC),
        "a terminal gets colour: {terminal:?}"
    );

    let no_color = logged_on_a_terminal(&[("NO_COLOR", "1")]);
    assert!(no_color.contains("serving gRPC"), "{no_color}");
    assert!(!no_color.contains(ESC), "NO_COLOR: {no_color:?}");

    // Standard error to a pipe, as to a file or a collector.
    let mut child = support::binary::command()
        .args([
            "--emulator",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
        ])
        .spawn()
        .unwrap();
    let log = support::binary::collect_stderr(&mut child);
    std::thread::sleep(Duration::from_secs(2));
    support::binary::signal(&child, "TERM");
    child.wait().unwrap();
    let piped = log.join().unwrap();
    assert!(piped.contains("serving gRPC"), "{piped}");
    assert!(!piped.contains(ESC), "a pipe gets none: {piped:?}");
}

/// `check-config` with `args` and `env`: its exit code, standard output and
/// standard error.
fn check_config(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = support::binary::command()
        .arg("check-config")
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn check_config_reads_the_files_and_binds_nothing() {
    let dir = support::temp_dir("check-config");
    let ca = support::certs::Ca::new("check-config CA");
    let server = ca.server();
    let write = |name: &str, contents: &str| {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    };
    let cert = write("tls.crt", &server.cert);
    let key = write("tls.key", &server.key);
    let client_ca = write("ca.crt", &ca.pem());
    let policy = write("policy.yaml", "mode: enforce\ncallers: []\n");
    let audit_key = write("audit.key", "an audit key of some length\n");
    // The ports it is told to serve on are taken: a check binds nothing.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let admin = admin_taken.local_addr().unwrap().to_string();
    let (code, stdout, stderr) = check_config(
        &[
            "--listen",
            &listen,
            "--admin-listen",
            &admin,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &client_ca,
            "--policy",
            &policy,
            "--audit-log=-",
            "--audit-hmac-key-file",
            &audit_key,
        ],
        // The region from the environment, as the SDK finds it; no AWS call.
        &[("AWS_REGION", "eu-west-1")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "the configuration is valid: gRPC on {listen} (TLS on), admin on {admin}, policy on, audit log on\n"
        )
    );

    // Flags from the environment too; every problem in one message, exit 2.
    std::fs::write(dir.join("bad.yaml"), "mode: sometimes\n").unwrap();
    let bad_policy = dir.join("bad.yaml").display().to_string();
    let short_key = write("short.key", "short\n");
    let (code, stdout, stderr) = check_config(
        &[
            "--listen",
            &listen,
            "--tls-cert",
            &dir.join("missing.crt").display().to_string(),
            "--tls-key",
            &key,
            "--policy",
            &bad_policy,
            "--audit-log=-",
            "--audit-hmac-key-file",
            &short_key,
        ],
        &[("COGNITO_GATEWAY_MAX_ATTEMPTS", "zero")],
    );
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.starts_with("invalid configuration:\n"), "{stderr}");
    for named in [
        "missing.crt",
        "bad.yaml",
        "--audit-hmac-key-file",
        "--max-attempts",
        "--region",
    ] {
        assert!(stderr.contains(named), "{named} not named in:\n{stderr}");
    }
    assert!(
        stderr.lines().filter(|l| l.starts_with("  - ")).count() >= 5,
        "{stderr}"
    );

    // A key that is not the certificate's, said so.
    let other_key = write("other.key", &ca.server().key);
    let (code, _, stderr) = check_config(
        &[
            "--listen",
            &listen,
            "--tls-cert",
            &cert,
            "--tls-key",
            &other_key,
        ],
        &[("AWS_REGION", "eu-west-1")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("the key is not the certificate's"),
        "{stderr}"
    );
}
