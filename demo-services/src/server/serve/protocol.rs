//! Which HTTP a connection speaks, and hyper's settings for each.
//!
//! One listener serves HTTP/1.1 (REST, curl, browsers) and HTTP/2 over
//! cleartext with prior knowledge (gRPC clients, `curl --http2-prior-knowledge`).
//! An HTTP/2 client opens with a fixed 24-byte preface (RFC 9113 §3.4); no
//! HTTP/1 request line starts with it, so the first bytes tell the two
//! apart. They are read under the connection's first-head deadline, like a
//! TLS handshake, and handed to hyper with the rest of the stream.
//! (HTTP/1.1's `Upgrade: h2c` is not offered: RFC 9113 deprecates it and
//! gRPC clients do not use it.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::Limits;

/// What every HTTP/2 connection opens with (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// hyper's smallest HTTP/1 read buffer limit.
const MIN_BUF_SIZE: usize = 8 * 1024;

/// The most requests one HTTP/2 connection may have in progress at once.
/// Each is a task in this process; together with the connection cap this
/// bounds the requests the server holds (RFC 9113 §6.5.2 recommends no
/// fewer than 100, so well-behaved clients never meet it).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;

/// How much request body one HTTP/2 stream may send before the handler
/// reads it (the stream's flow-control window), and how much all of a
/// connection's streams together may: what a connection can make the
/// server buffer. gRPC messages here are a few hundred bytes; a larger body
/// still flows, at the pace the handler reads it.
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = 256 * 1024;

/// An HTTP/2 connection is pinged after this long without a frame, and
/// closed if the answer does not come in the same time: a peer that
/// vanished mid-stream (a long `ListUsers`, a held connection) is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// The protocol a connection opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Anything that is not the HTTP/2 preface: hyper's HTTP/1 parser
    /// judges it.
    Http1,
    /// The HTTP/2 preface, prior knowledge.
    Http2,
}

/// Reads just enough of `io` to tell HTTP/2's preface from anything else:
/// at most 24 bytes, fewer as soon as a byte differs. The bytes read are
/// not lost: the returned stream yields them first.
pub(crate) async fn sniff<I>(mut io: I) -> io::Result<(Protocol, Prefixed<I>)>
where
    I: AsyncRead + Unpin,
{
    let mut buf = [0u8; PREFACE.len()];
    let mut len = 0;
    while len < PREFACE.len() {
        let read = io.read(&mut buf[len..]).await?;
        if read == 0 {
            if len == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            // Let HTTP/1 judge the fragment (and answer 400 if it can).
            break;
        }
        len += read;
        if buf[..len] != PREFACE[..len] {
            break;
        }
    }
    let protocol = if buf[..len] == PREFACE[..] {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    Ok((
        protocol,
        Prefixed {
            prefix: buf,
            start: 0,
            end: len,
            io,
        },
    ))
}

/// A stream whose first bytes were already read: they are served again
/// before the rest.
#[derive(Debug)]
pub(crate) struct Prefixed<I> {
    prefix: [u8; PREFACE.len()],
    start: usize,
    end: usize,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.start < self.end {
            let n = (self.end - self.start).min(buf.remaining());
            let from = self.start;
            buf.put_slice(&self.prefix[from..from + n]);
            self.start += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// hyper's connection settings for both protocols, under one serve loop's
/// limits.
#[derive(Debug, Clone)]
pub(crate) struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    /// The settings for connections under `limits`.
    ///
    /// hyper's own HTTP/1 `header_read_timeout` is turned off: its one
    /// timer covers both the first head and the wait between requests with
    /// the same value, and starts only once the stream is handed to hyper
    /// (after any TLS handshake and the protocol sniff). The connection task
    /// enforces both deadlines itself, from the accept, for both protocols,
    /// and knows each connection's phase for shedding and shutdown.
    pub(crate) fn new(limits: &Limits) -> Builders {
        let mut http1 = http1::Builder::new();
        http1
            .header_read_timeout(None)
            // A head over the limit is answered 431; the read buffer is
            // bounded by the same figure, so a connection holds at most that
            // much.
            .max_header_size(limits.max_head_size)
            .max_buf_size(limits.max_head_size.max(MIN_BUF_SIZE));
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            // The same bound on a request's headers as HTTP/1's head
            // (HPACK-decoded size, RFC 9113 §6.5.2); over it the stream is
            // refused.
            .max_header_list_size(u32::try_from(limits.max_head_size).unwrap_or(u32::MAX))
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .adaptive_window(false)
            .keep_alive_interval(KEEP_ALIVE)
            .keep_alive_timeout(KEEP_ALIVE);
        Builders { http1, http2 }
    }

    /// Serves `io`, which opened with `protocol`, with `service`.
    pub(crate) fn serve<I, S, B>(
        &self,
        protocol: Protocol,
        io: I,
        service: S,
    ) -> Connection<TokioIo<I>, S>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: HttpService<Incoming, ResBody = B> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let io = TokioIo::new(io);
        match protocol {
            Protocol::Http1 => Connection::Http1 {
                conn: self.http1.serve_connection(io, service),
            },
            Protocol::Http2 => Connection::Http2 {
                conn: self.http2.serve_connection(io, service),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection being served, in either protocol.
    #[project = ConnectionProj]
    pub(crate) enum Connection<I, S>
    where
        S: HttpService<Incoming>,
    {
        /// HTTP/1.1.
        Http1 { #[pin] conn: http1::Connection<I, S> },
        /// HTTP/2.
        Http2 { #[pin] conn: http2::Connection<I, S, TokioExecutor> },
    }
}

impl<I, S, B> Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Finishes what is in flight and closes: HTTP/1 after the current
    /// response, HTTP/2 with a GOAWAY after its open streams.
    pub(crate) fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.project() {
            ConnectionProj::Http1 { conn } => conn.graceful_shutdown(),
            ConnectionProj::Http2 { conn } => conn.graceful_shutdown(),
        }
    }
}

impl<I, S, B> Future for Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ConnectionProj::Http1 { conn } => conn.poll(cx),
            ConnectionProj::Http2 { conn } => conn.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    async fn sniffed(bytes: &[u8]) -> (Protocol, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(bytes).await.unwrap();
        drop(client);
        let (protocol, mut io) = sniff(server).await.unwrap();
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.unwrap();
        (protocol, all)
    }

    #[tokio::test]
    async fn the_preface_is_http2_and_no_byte_is_lost() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        assert_eq!(sniffed(&bytes).await, (Protocol::Http2, bytes.clone()));
    }

    #[tokio::test]
    async fn a_request_line_is_http1_after_its_first_byte() {
        let bytes = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n";
        assert_eq!(sniffed(bytes).await, (Protocol::Http1, bytes.to_vec()));
        // "PRI" then something else is HTTP/1 too (hyper answers 400).
        let bytes = b"PRI / HTTP/1.1\r\n\r\n";
        assert_eq!(sniffed(bytes).await, (Protocol::Http1, bytes.to_vec()));
    }

    #[tokio::test]
    async fn a_fragment_of_the_preface_then_eof_goes_to_http1() {
        assert_eq!(
            sniffed(b"PRI * HTTP").await,
            (Protocol::Http1, b"PRI * HTTP".to_vec())
        );
    }

    #[tokio::test]
    async fn a_peer_that_sends_nothing_is_an_error() {
        let (client, server) = tokio::io::duplex(64);
        drop(client);
        assert_eq!(
            sniff(server).await.unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[tokio::test]
    async fn the_preface_split_across_reads_is_still_http2() {
        let (mut client, server) = tokio::io::duplex(64);
        let sniffing = tokio::spawn(sniff(server));
        for chunk in PREFACE.chunks(5) {
            client.write_all(chunk).await.unwrap();
            tokio::task::yield_now().await;
        }
        let (protocol, _) = sniffing.await.unwrap().unwrap();
        assert_eq!(protocol, Protocol::Http2);
    }
}
