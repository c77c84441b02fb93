//! The API listener's connections: plaintext, or TLS accepted here with the
//! configuration in force ([`super::tls`]). Either way a connection carries
//! its [`Peer`] (addresses, and over TLS the caller its certificate names),
//! which the server hands to each of its calls, and its replies leave one
//! write each ([`OneWrite`], above TLS so that a reply is one TLS write and
//! one system call).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::accept::Acceptor;
use super::close::Close;
use super::drain;
use super::metrics::{Handshake, ServerMetrics};
use super::one_write::OneWrite;
use super::tls::{self, LiveTls};
use crate::domain::{Activity, Caller, Peer};

/// Handshaken connections waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// Handshakes under way at once; past them, connections wait in the
/// kernel's backlog: a flood of connections that never finish their
/// handshake holds at most this many tasks.
const HANDSHAKES: usize = 512;

/// One accepted connection.
pub(crate) struct Connection {
    io: Io,
    peer: Peer,
    /// Until its first bytes come: resolves when they must have come by
    /// (the HTTP/2 preface), or when the server starts draining. A
    /// connection that says nothing is closed then.
    awaiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// When to look again whether the connection has been idle too long.
    idle: Idle,
    /// When its caller's identity ends, and what else may end it.
    close: Close,
}

impl Connection {
    /// What the connection says about its calls.
    pub(crate) fn peer(&self) -> &Peer {
        &self.peer
    }

    /// What ends it.
    pub(crate) fn close(&self) -> Close {
        self.close.clone()
    }
}

/// The idle timeout of a connection: a timer that, each time it fires,
/// looks at how long the connection has had no call in flight
/// ([`Peer::activity`]), and either closes it or sets itself again.
///
/// A call is counted once its stream's task first runs, a moment after its
/// HEADERS were read: so a connection idle for the timeout is closed only
/// if nothing more was read in the last [`IDLE_QUIET`] either (a keepalive
/// PING's answer, rarely in that second, only puts the close off by one).
struct Idle {
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Reads that brought bytes, all told, and as many when last looked at.
    reads: u64,
    reads_seen: Option<u64>,
}

/// How long a connection idle for its timeout must also have read nothing.
const IDLE_QUIET: Duration = Duration::from_secs(1);

impl Idle {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            reads: 0,
            reads_seen: None,
        }
    }

    /// `Ready` when the connection is to be closed, having had no call in
    /// flight for the timeout and read nothing for [`IDLE_QUIET`];
    /// otherwise the timer is set for when it next may have.
    fn poll_expired(&mut self, peer: &Peer, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            std::task::ready!(self.timer.as_mut().poll(cx));
            let next = match peer.activity.idle_for(std::time::Instant::now()) {
                Some(idle) if idle >= self.timeout => {
                    if self.reads_seen == Some(self.reads) {
                        return Poll::Ready(());
                    }
                    // Quiet for a second more, and it is closed.
                    self.reads_seen = Some(self.reads);
                    IDLE_QUIET
                }
                Some(idle) => {
                    self.reads_seen = None;
                    self.timeout - idle
                }
                None => {
                    self.reads_seen = None;
                    self.timeout
                }
            };
            let at = tokio::time::Instant::now() + next;
            self.timer.as_mut().reset(at);
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("io", &self.io)
            .field("peer", &self.peer)
            .field("awaiting_preface", &self.awaiting.is_some())
            .field("idle_timeout", &self.idle.timeout)
            .finish()
    }
}

/// What a connection that has not sent its first bytes waits for: the
/// handshake timeout, or the server's draining, whichever comes first.
fn preface_deadline(
    handshake: Duration,
    drain: drain::Watch,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        tokio::select! {
            () = tokio::time::sleep(handshake) => {}
            () = drain.draining() => {}
        }
    })
}

#[derive(Debug)]
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// How long a connection may take over what.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// To finish its TLS handshake, then to send its HTTP/2 preface.
    pub handshake: Duration,
    /// With no call in flight, before it is closed.
    pub idle: Duration,
    /// At most, whatever happens on it (less a jitter).
    pub(crate) max_age: Duration,
}

impl Connection {
    fn plain(
        stream: TcpStream,
        awaiting: Pin<Box<dyn Future<Output = ()> + Send>>,
        timeouts: Timeouts,
    ) -> Self {
        let peer = Peer {
            local: stream.local_addr().ok(),
            remote: stream.peer_addr().ok(),
            certified: None,
            activity: Activity::new(),
        };
        Self {
            io: Io::Plain(stream),
            peer,
            awaiting: Some(awaiting),
            idle: Idle::new(timeouts.idle),
            close: Close::new(timeouts.max_age),
        }
    }
}

/// The API listener's connections as the server takes them, accepted by
/// one loop that pauses rather than spins when the process runs out of
/// file descriptors ([`super::accept`]); TLS ones handshaken concurrently
/// off that loop (a slow client delays no other), each within
/// the handshake timeout; a connection whose HTTP/2 preface has not come
/// that long after it was accepted (or handshaken), or by the time the
/// server drains, is closed; so is one that has had no call in flight for
/// the idle timeout. The accept loop, each handshake under way and each
/// connection until the server takes it hold `drain`.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Option<Arc<LiveTls>>,
    timeouts: Timeouts,
    drain: drain::Watch,
    metrics: ServerMetrics,
) -> impl Stream<Item = OneWrite<Connection>> + Send {
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    let listener = Acceptor::new(listener, "api");
    tokio::spawn(accept(listener, tls, timeouts, drain, tx, metrics));
    futures_util::stream::unfold(rx, |mut rx| async move {
        let connection = rx.recv().await?;
        Some((connection, rx))
    })
}

/// Accepts connections until the server stops taking them; over TLS,
/// handshakes each on a task of its own.
async fn accept(
    mut listener: Acceptor,
    tls: Option<Arc<LiveTls>>,
    timeouts: Timeouts,
    drain: drain::Watch,
    accepted: mpsc::Sender<OneWrite<Connection>>,
    metrics: ServerMetrics,
) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES));
    loop {
        let Ok(handshaking) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (stream, remote) = tokio::select! {
            next = listener.accept() => next,
            () = accepted.closed() => return,
        };
        let Some(tls) = &tls else {
            let _ = stream.set_nodelay(true);
            if accepted
                .send(OneWrite::new(Connection::plain(
                    stream,
                    preface_deadline(timeouts.handshake, drain.clone()),
                    timeouts,
                )))
                .await
                .is_err()
            {
                return;
            }
            continue;
        };
        let acceptor = TlsAcceptor::from(tls.config());
        let tls = tls.clone();
        let accepted = accepted.clone();
        let drain = drain.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _handshaking = handshaking;
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().ok();
            match tokio::time::timeout(timeouts.handshake, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    metrics.handshake(Handshake::Ok);
                    let awaiting = preface_deadline(timeouts.handshake, drain);
                    let connection = handshaken(stream, tls, local, remote, awaiting, timeouts);
                    let _ = accepted.send(OneWrite::new(connection)).await;
                }
                Ok(Err(e)) => {
                    metrics.handshake(Handshake::Refused);
                    tracing::debug!(peer = %remote, "TLS handshake refused: {e}");
                }
                Err(_) => {
                    metrics.handshake(Handshake::Timeout);
                    tracing::debug!(peer = %remote, "TLS handshake not finished in time");
                }
            }
        });
    }
}

fn handshaken(
    stream: TlsStream<TcpStream>,
    tls: Arc<LiveTls>,
    local: Option<SocketAddr>,
    remote: SocketAddr,
    awaiting: Pin<Box<dyn Future<Output = ()> + Send>>,
    timeouts: Timeouts,
) -> Connection {
    let chain = stream.get_ref().1.peer_certificates().map(|chain| {
        chain
            .iter()
            .map(|der| der.clone().into_owned())
            .collect::<Vec<_>>()
    });
    let certified = chain
        .as_ref()
        .and_then(|chain| chain.first())
        .map_or(Caller::Anonymous, tls::caller);
    let close = Close::new(timeouts.max_age);
    let close = match chain {
        Some(chain) if !chain.is_empty() => close.certificate(tls, chain),
        _ => close,
    };
    Connection {
        io: Io::Tls(Box::new(stream)),
        peer: Peer {
            local,
            remote: Some(remote),
            certified: Some(certified),
            activity: Activity::new(),
        },
        awaiting: Some(awaiting),
        idle: Idle::new(timeouts.idle),
        close,
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        };
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.idle.reads += 1;
        }
        if let Some(timer) = &mut this.awaiting {
            match read {
                Poll::Ready(Ok(())) if buf.filled().len() > before => this.awaiting = None,
                Poll::Pending if timer.as_mut().poll(cx).is_ready() => {
                    this.awaiting = None;
                    tracing::debug!(peer = ?this.peer.remote, "no HTTP/2 preface: closing");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no HTTP/2 preface in time, or the server is draining",
                    )));
                }
                _ => {}
            }
        } else if read.is_pending() && this.idle.poll_expired(&this.peer, cx).is_ready() {
            // An end of stream: the server closes the connection as if the
            // client had. No call is in flight, and nothing has come for
            // the last second that could be one.
            tracing::debug!(peer = ?this.peer.remote, "idle connection: closing");
            return Poll::Ready(Ok(()));
        }
        read
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
