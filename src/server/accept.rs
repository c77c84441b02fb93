//! Accepting connections without spinning: when `accept` fails for want of
//! a resource (out of file descriptors, of memory), the listener is left
//! alone for a while, longer each time it fails again, and the failure is
//! logged at most once a second, with how many were not. Failures that
//! concern only the connection being accepted (aborted before it was
//! taken) are passed over at once.

use std::io;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

/// The first pause after a failure for want of a resource.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause.
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
/// At most one log line this often.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// A listener's accept loop state.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: TcpListener,
    /// What the log calls it.
    name: &'static str,
    pause: Duration,
    logged: Option<Instant>,
    unlogged: u64,
}

impl Acceptor {
    /// Accepts on `listener`, which logs call `name`.
    pub(crate) fn new(listener: TcpListener, name: &'static str) -> Self {
        Self {
            listener,
            name,
            pause: FIRST_PAUSE,
            logged: None,
            unlogged: 0,
        }
    }

    /// The next connection, however long the process has to wait for the
    /// resources to take one.
    pub(crate) async fn accept(&mut self) -> (TcpStream, std::net::SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => {
                    self.pause = FIRST_PAUSE;
                    return accepted;
                }
                Err(e) if concerns_one_connection(&e) => {}
                Err(e) => {
                    self.log(&e);
                    tokio::time::sleep(self.pause).await;
                    self.pause = (self.pause * 2).min(LONGEST_PAUSE);
                }
            }
        }
    }

    fn log(&mut self, error: &io::Error) {
        let now = Instant::now();
        if self
            .logged
            .is_some_and(|at| now.duration_since(at) < LOG_EVERY)
        {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(
            listener = self.name,
            pause = ?self.pause,
            not_logged = self.unlogged,
            "cannot accept connections ({error}): pausing the listener"
        );
        self.logged = Some(now);
        self.unlogged = 0;
    }
}

/// Whether an accept error is about the connection being accepted only.
fn concerns_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
