//! The API listener's connections, with a reply's bytes sent in one write.
//!
//! hyper's HTTP/2 server sends a gRPC reply as three frames: HEADERS, DATA
//! (the message) and HEADERS again (the trailers, with `grpc-status`). Over
//! a socket that takes vectored writes, h2 chains a DATA payload of more
//! than 256 bytes to its buffer instead of copying it, and a chained frame
//! must be written before the next frame can be buffered: every reply with
//! a token in it (700 bytes and more) left in two `writev` calls, the
//! trailers alone in the second. Each write is a TCP segment on its own and
//! wakes the caller again; on a VM, that second wake-up was the largest
//! part of what a sequential call cost the gateway beyond bare tonic.
//!
//! [`OneWrite`] tells h2 that the socket does not take vectored writes
//! (h2 then copies payloads up to 1 KiB into its buffer, so the three
//! frames go out together), and gathers what h2 writes between two flushes
//! into one write of its own, so that a payload h2 still chains costs no
//! extra system call either.
//!
//! A payload past 1 KiB is still chained, and h2 flushes it before it
//! buffers the trailers: Cognito's tokens (RS512, with the pool's ARN and
//! the session tags) are past 1 KiB, so such a reply would leave in two
//! writes. So a flush whose bytes end with a DATA frame that does not end
//! its stream is deferred once: the trailers that follow join the same
//! write. The connection's task wakes itself when it defers, so that a
//! stream that pauses after its DATA (a health watch) is sent on the very
//! next poll, never held back.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Past this many bytes waiting, a write first sends what is waiting, so
/// that a connection's buffer stays bounded whatever h2 does.
const MAX_PENDING: usize = 64 * 1024;

/// An HTTP/2 frame header's length (RFC 9113, section 4.1).
const FRAME_HEADER: usize = 9;
/// The DATA frame's type, and its END_STREAM flag.
const DATA: u8 = 0x0;
const END_STREAM: u8 = 0x1;

/// A connection whose writes are gathered until flushed; see the module
/// documentation. Its `Debug` shows how many bytes wait, never the bytes:
/// they are replies, tokens and credentials in them.
pub struct OneWrite<T> {
    inner: T,
    /// Bytes accepted and not yet written; `pending[sent..]` remain.
    pending: Vec<u8>,
    sent: usize,
    /// A flush of these pending bytes was deferred; the next one sends.
    deferred: bool,
}

impl<T> OneWrite<T> {
    /// Wraps a connection.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            sent: 0,
            deferred: false,
        }
    }

    /// The connection it wraps.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

/// Whether `bytes`, read as whole HTTP/2 frames, end with a DATA frame that
/// does not end its stream: then more of that stream (its trailers) is
/// likely to follow at once. Bytes that are not whole frames say no.
fn ends_with_open_data(bytes: &[u8]) -> bool {
    let mut at = 0;
    let mut last_open_data = false;
    while let Some(header) = bytes.get(at..at + FRAME_HEADER) {
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        last_open_data = header[3] == DATA && header[4] & END_STREAM == 0;
        at += FRAME_HEADER + length;
    }
    at == bytes.len() && last_open_data
}

impl<T: fmt::Debug> fmt::Debug for OneWrite<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneWrite")
            .field("inner", &self.inner)
            .field("pending_bytes", &(self.pending.len() - self.sent))
            .finish()
    }
}

impl<T: AsyncWrite + Unpin> OneWrite<T> {
    /// Writes every pending byte.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        self.deferred = false;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for OneWrite<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for OneWrite<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.len() + data.len() > MAX_PENDING {
            ready!(self.poll_send(cx))?;
            if data.len() > MAX_PENDING {
                return Pin::new(&mut self.inner).poll_write(cx, data);
            }
        }
        self.pending.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.deferred && self.sent == 0 && ends_with_open_data(&self.pending) {
            // See the module documentation.
            self.deferred = true;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// No: this is what makes h2 copy small payloads instead of chaining
    /// them (see the module documentation).
    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl<T: Connected> Connected for OneWrite<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A writer that counts the writes it is given and takes at most
    /// `limit` bytes a write.
    #[derive(Default)]
    struct Counting {
        writes: usize,
        bytes: Vec<u8>,
        limit: usize,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = data.len().min(self.limit);
            self.writes += 1;
            self.bytes.extend_from_slice(&data[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn writes_until_a_flush_go_out_in_one() {
        let mut io = OneWrite::new(Counting {
            limit: usize::MAX,
            ..Counting::default()
        });
        io.write_all(b"headers").await.unwrap();
        io.write_all(b"data").await.unwrap();
        io.write_all(b"trailers").await.unwrap();
        assert_eq!(io.inner.writes, 0, "nothing is written before a flush");
        io.flush().await.unwrap();
        assert_eq!(io.inner.writes, 1);
        assert_eq!(io.inner.bytes, b"headersdatatrailers");
        io.write_all(b"next").await.unwrap();
        io.shutdown().await.unwrap();
        assert_eq!(io.inner.bytes, b"headersdatatrailersnext");
        assert!(!io.is_write_vectored());
    }

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn open_data_is_found_only_at_the_end_of_whole_frames() {
        let headers = frame(0x1, 0x4, b"hdrs");
        let data = frame(DATA, 0, &[b'x'; 1200]);
        let last_data = frame(DATA, END_STREAM, b"x");
        let trailers = frame(0x1, 0x5, b"t");
        assert!(ends_with_open_data(
            &[headers.clone(), data.clone()].concat()
        ));
        assert!(!ends_with_open_data(
            &[headers.clone(), data.clone(), trailers].concat()
        ));
        assert!(!ends_with_open_data(&last_data));
        assert!(!ends_with_open_data(&headers));
        assert!(!ends_with_open_data(&data[..data.len() - 1]), "a cut frame");
        assert!(!ends_with_open_data(&[]));
    }

    #[tokio::test]
    async fn a_reply_past_its_data_waits_for_its_trailers_once() {
        let mut io = OneWrite::new(Counting {
            limit: usize::MAX,
            ..Counting::default()
        });
        let data = [frame(0x1, 0x4, b"hdrs"), frame(DATA, 0, &[b'x'; 1200])].concat();
        io.write_all(&data).await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.inner.writes, 0, "the flush after open DATA is deferred");
        io.write_all(&frame(0x1, 0x5, b"t")).await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.inner.writes, 1, "DATA and trailers in one write");
        // A stream that pauses after its DATA: the second flush sends it.
        io.write_all(&frame(DATA, 0, b"update")).await.unwrap();
        io.flush().await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.inner.writes, 2);
        assert_eq!(io.pending.len(), 0);
    }

    #[tokio::test]
    async fn partial_writes_are_resumed_in_order() {
        let mut io = OneWrite::new(Counting {
            limit: 3,
            ..Counting::default()
        });
        io.write_all(b"0123456789").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.inner.bytes, b"0123456789");
        assert_eq!(io.inner.writes, 4);
    }

    #[tokio::test]
    async fn the_buffer_stays_bounded() {
        let mut io = OneWrite::new(Counting {
            limit: usize::MAX,
            ..Counting::default()
        });
        let chunk = vec![7u8; MAX_PENDING / 2 + 1];
        io.write_all(&chunk).await.unwrap();
        io.write_all(&chunk).await.unwrap();
        assert_eq!(io.inner.writes, 1, "the first chunk was sent to make room");
        assert!(io.pending.len() <= MAX_PENDING);
        let big = vec![9u8; MAX_PENDING + 1];
        io.write_all(&big).await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.inner.bytes.len(), chunk.len() * 2 + big.len());
    }

    #[tokio::test]
    async fn debug_shows_no_pending_bytes() {
        let mut io = OneWrite::new(tokio::io::sink());
        io.write_all(b"token-s3cr3t").await.unwrap();
        let shown = format!("{io:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("116"), "no byte values: {shown}");
        assert!(shown.contains("pending_bytes: 12"), "{shown}");
    }

    #[tokio::test]
    async fn reads_pass_through() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = OneWrite::new(server);
        let mut client = client;
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        io.write_all(b"pong").await.unwrap();
        io.flush().await.unwrap();
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }
}
