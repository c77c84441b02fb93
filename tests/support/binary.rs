//! The gateway's binary as a child process: reading its log as it comes and
//! connecting once it listens.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use tonic::transport::Channel;

/// The gateway's binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_cognito-identity-gateway");

/// The gateway's binary with a clean environment, as a unit or a pod starts
/// it: only `PATH`, and no instance metadata lookups (nothing here has an
/// instance role). No input; output discarded; standard error piped, for
/// [`Process::spawn`].
pub fn command() -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// The gateway's binary started with `args` and `env` over [`command`]'s
/// clean environment, its standard error read as it comes.
pub fn gateway(args: &[&str], env: &[(&str, &str)]) -> (Child, JoinHandle<String>) {
    let mut child = command()
        .args(args)
        .envs(env.iter().copied())
        .spawn()
        .expect("the gateway starts");
    let log = collect_stderr(&mut child);
    (child, log)
}

/// Sends `signal` (`TERM`, `INT`, …) to `child`.
pub fn signal(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{signal} {} failed", child.id());
}

/// A started gateway: its standard error read as it comes, killed if a
/// failed assertion leaves it running.
pub struct Process {
    child: Option<Child>,
    log: Option<JoinHandle<String>>,
}

impl Process {
    /// Starts `command` (from [`command`], with its arguments).
    pub fn spawn(command: &mut Command) -> Self {
        let mut child = command.spawn().expect("the gateway starts");
        let log = collect_stderr(&mut child);
        Self {
            child: Some(child),
            log: Some(log),
        }
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops it as Kubernetes does (SIGTERM), waits for it, and returns its
    /// exit status and standard error.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("still running");
        signal(&child, "TERM");
        let status = child.wait().expect("the gateway is waited for");
        let log = self
            .log
            .take()
            .map(|log| log.join().expect("the log is read"));
        (status, log.unwrap_or_default())
    }

    /// [`Process::terminate`] without blocking the runtime: for tests whose
    /// stand-in servers (a collector, an upstream) the gateway still talks
    /// to while it stops.
    pub async fn terminated(self) -> (ExitStatus, String) {
        tokio::task::spawn_blocking(move || self.terminate())
            .await
            .expect("the gateway is waited for")
    }

    /// [`Process::terminate`]'s standard error alone.
    pub fn stop(self) -> String {
        self.terminate().1
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads the child's standard error (piped) until it ends, on a thread of
/// its own: a full pipe would block the gateway.
pub fn collect_stderr(child: &mut Child) -> JoinHandle<String> {
    let mut stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).expect("the log is UTF-8");
        text
    })
}

/// A channel to the gateway on 127.0.0.1:`port`, once it listens (10 s at
/// most).
pub async fn connect(port: u16) -> Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("a valid URL");
    for _ in 0..200 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never listened on port {port}");
}

/// The gateway's binary over its embedded emulator, with the caller policy
/// at `policy`, listening and serving its admin routes on free loopback
/// ports (a second's shutdown grace); killed when dropped.
pub struct Running {
    process: Process,
    /// The API's port.
    pub grpc: u16,
    /// The admin listener's port.
    pub admin: u16,
}

impl Running {
    /// Starts it with the policy at `policy` and `extra` flags.
    pub fn start(policy: &std::path::Path, extra: &[&str]) -> Self {
        Self::start_with_env(policy, extra, &[])
    }

    /// Starts it with the policy at `policy`, `extra` flags and the
    /// environment variables `env`.
    pub fn start_with_env(policy: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        use super::loopback::free_port;
        let (grpc, admin) = (free_port(), free_port());
        let listen = format!("127.0.0.1:{grpc}");
        let admin_listen = format!("127.0.0.1:{admin}");
        let policy = policy.display().to_string();
        let mut args = vec![
            "--emulator",
            "--listen",
            &listen,
            "--admin-listen",
            &admin_listen,
            "--policy",
            &policy,
            "--shutdown-grace",
            "1s",
        ];
        args.extend_from_slice(extra);
        Self {
            process: Process::spawn(command().args(&args).envs(env.iter().copied())),
            grpc,
            admin,
        }
    }

    /// A client of its API, once it listens.
    pub async fn client(
        &self,
    ) -> cognito_identity_gateway::proto::cognito_identity_service_client::CognitoIdentityServiceClient<Channel>
    {
        cognito_identity_gateway::proto::cognito_identity_service_client::CognitoIdentityServiceClient::new(
            connect(self.grpc).await,
        )
    }

    /// The sum of the series of its `/metrics` whose lines start with
    /// `prefix`.
    pub async fn metric(&self, prefix: &str) -> f64 {
        let (_, body) = super::loopback::http_get(self.admin, "/metrics").await;
        super::loopback::series(&body, prefix).map(|(_, v)| v).sum()
    }

    /// Stops it (SIGTERM), waits for it, and returns its log.
    pub fn stop(self) -> String {
        self.process.stop()
    }
}
