//! The gateway's binary as a child process: reading its log as it comes and
//! connecting once it listens.

use std::process::Child;
use std::thread::JoinHandle;
use std::time::Duration;

use tonic::transport::Channel;

/// The gateway's binary started with `args` and `env` (and no instance
/// metadata lookups), its standard error read as it comes.
pub fn gateway(args: &[&str], env: &[(&str, &str)]) -> (Child, JoinHandle<String>) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cognito-identity-gateway"))
        .args(args)
        .envs(env.iter().copied())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the gateway starts");
    let log = collect_stderr(&mut child);
    (child, log)
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
    child: Child,
    log: Option<JoinHandle<String>>,
    /// The API's port.
    pub grpc: u16,
    /// The admin listener's port.
    pub admin: u16,
}

impl Running {
    /// Starts it with the policy at `policy` and `extra` flags.
    pub fn start(policy: &std::path::Path, extra: &[&str]) -> Self {
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
        let (child, log) = gateway(&args, &[]);
        Self {
            child,
            log: Some(log),
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
    pub fn stop(mut self) -> String {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.log
            .take()
            .map(|log| log.join().expect("the log is read"))
            .unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
