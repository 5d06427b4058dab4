//! HTTP/1 or HTTP/2 prior knowledge, decided from the first bytes, within a deadline.
//!
//! hyper-util's `auto::Builder` reads the first bytes with no deadline at all
//! (hyperium/hyper#3962): a connection that sends nothing, one byte, or 23 of the 24 bytes of
//! the HTTP/2 preface stays open forever, holding a descriptor and a task. [`detect`] reads at
//! most those 24 bytes under a deadline, and [`Rewind`] gives the bytes it consumed back to
//! hyper, ahead of the rest of the stream.
//!
//! Why read and rewind rather than `peek`: a peek returns the same bytes again at once, and the
//! socket stays readable while they are buffered (`readable()` returns immediately), so waiting
//! for "more" than a partial preface with `peek` is a busy loop or a sleep-and-poll loop.
//! Reading consumes what is there, so the next readiness event really means new bytes.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Length of the HTTP/2 client connection preface.
const PREFACE_LEN: usize = 24;

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
pub(crate) const H2_PREFACE: &[u8; PREFACE_LEN] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Anything that is not the HTTP/2 preface: hyper's HTTP/1 parser judges it.
    Http1,
    /// HTTP/2 with prior knowledge: the client sent the full preface.
    Http2,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http1 => "HTTP/1",
            Self::Http2 => "HTTP/2",
        })
    }
}

/// Why no protocol was decided.
#[derive(Debug)]
pub(crate) enum DetectError {
    /// The deadline passed with nothing, or only a proper prefix of the HTTP/2 preface, read.
    TimedOut,
    /// The client closed the connection (possibly after a proper prefix of the preface).
    Closed,
    /// The socket failed (reset, and the like).
    Io(io::Error),
}

impl fmt::Display for DetectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut => f.write_str("no request line or HTTP/2 preface in time"),
            Self::Closed => f.write_str("closed before saying which protocol it speaks"),
            Self::Io(error) => write!(f, "socket error before the first request: {error}"),
        }
    }
}

impl std::error::Error for DetectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(error) => Some(error),
            Self::TimedOut | Self::Closed => None,
        }
    }
}

impl From<io::Error> for DetectError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// The decided protocol and the bytes read to decide it, which hyper must still see.
#[derive(Debug)]
pub(crate) struct Detected {
    protocol: Protocol,
    prefix: Vec<u8>,
}

impl Detected {
    /// The protocol the client speaks.
    #[must_use]
    pub(crate) fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The bytes consumed by [`detect`] (1 to 24 of them).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// `stream`, with the consumed bytes put back in front: what hyper must read from.
    #[must_use]
    pub(crate) fn into_io(self, stream: TcpStream) -> Rewind<TcpStream> {
        Rewind::new(self.prefix, stream)
    }
}

/// Reads from `stream` until it can tell HTTP/1 from HTTP/2, for at most `timeout`.
///
/// - the full 24-byte preface: [`Protocol::Http2`];
/// - a byte that differs from the preface: [`Protocol::Http1`] (most requests differ at the
///   first or second byte: `G`, `PA`, `PO`, `D`, ...);
/// - a proper prefix of the preface (including nothing): keep waiting, until the deadline
///   ([`DetectError::TimedOut`]) or end of stream ([`DetectError::Closed`]).
///
/// It reads at most 24 bytes, and no byte past the decision, so hyper reads the rest of the
/// request from the socket as usual; the bytes read here come back through
/// [`Detected::into_io`]. It waits on socket readiness: no spinning, no polling interval.
///
/// # Errors
///
/// See [`DetectError`]. On error the caller should just drop the stream.
pub(crate) async fn detect(stream: &TcpStream, timeout: Duration) -> Result<Detected, DetectError> {
    let mut buffer = [0_u8; PREFACE_LEN];
    let mut filled = 0;
    let protocol = tokio::time::timeout(
        timeout,
        read_until_decided(stream, &mut buffer, &mut filled),
    )
    .await
    .map_err(|_elapsed| DetectError::TimedOut)??;
    Ok(Detected {
        protocol,
        prefix: buffer[..filled].to_vec(),
    })
}

/// The reading loop of [`detect`], without the deadline. Fills `buffer[..*filled]`.
async fn read_until_decided(
    stream: &TcpStream,
    buffer: &mut [u8; PREFACE_LEN],
    filled: &mut usize,
) -> Result<Protocol, DetectError> {
    loop {
        // Readiness may be spurious; `try_read` then says WouldBlock and clears it.
        stream.readable().await?;
        match stream.try_read(&mut buffer[*filled..]) {
            Ok(0) => return Err(DetectError::Closed),
            Ok(read) => {
                *filled += read;
                if let Some(protocol) = classify(&buffer[..*filled]) {
                    return Ok(protocol);
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(error) => return Err(DetectError::Io(error)),
        }
    }
}

/// The protocol `bytes` (the first bytes of a connection, at most 24) commit to, if any yet.
fn classify(bytes: &[u8]) -> Option<Protocol> {
    let compared = bytes.len().min(H2_PREFACE.len());
    if bytes[..compared] != H2_PREFACE[..compared] {
        Some(Protocol::Http1)
    } else if compared == H2_PREFACE.len() {
        Some(Protocol::Http2)
    } else {
        None
    }
}

/// An IO that first replays `prefix`, then reads from `inner`; writes go straight to `inner`.
///
/// `T: Unpin` (a `TcpStream` is) keeps it free of pin projection: every field is `Unpin`.
#[derive(Debug)]
pub(crate) struct Rewind<T> {
    prefix: Vec<u8>,
    replayed: usize,
    inner: T,
}

impl<T> Rewind<T> {
    /// `inner`, with `prefix` read first.
    #[must_use]
    pub(crate) fn new(prefix: Vec<u8>, inner: T) -> Self {
        Self {
            prefix,
            replayed: 0,
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let pending = &this.prefix[this.replayed..];
        if !pending.is_empty() {
            let n = pending.len().min(buf.remaining());
            buf.put_slice(&pending[..n]);
            this.replayed += n;
            if this.replayed == this.prefix.len() {
                // Free the (tiny) buffer; from now on reads go straight to `inner`.
                this.prefix = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Loopback sockets for the tests of this module and of `serve`, with tokio's `net` feature
/// only (no `io-util`).
#[cfg(test)]
#[allow(dead_code)] // helpers shared by the tests that want them
pub(crate) mod testing {
    use std::io;
    use std::net::SocketAddr;

    use tokio::net::{TcpListener, TcpStream};

    /// A connected (client, server) pair over 127.0.0.1.
    pub(crate) async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    /// Writes all of `bytes`.
    pub(crate) async fn send(stream: &TcpStream, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            stream.writable().await.unwrap();
            match stream.try_write(bytes) {
                Ok(written) => bytes = &bytes[written..],
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => panic!("write failed: {error}"),
            }
        }
    }

    /// Reads what is there (waiting for something): `Ok(0)` at end of stream.
    pub(crate) async fn receive(stream: &TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            stream.readable().await?;
            match stream.try_read(buffer) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
        }
    }

    /// Reads until end of stream (a reset counts as the end).
    pub(crate) async fn receive_to_end(stream: &TcpStream) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buffer = [0_u8; 4096];
        loop {
            match receive(stream, &mut buffer).await {
                Ok(0) | Err(_) => return all,
                Ok(read) => all.extend_from_slice(&buffer[..read]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Instant;

    use super::testing::{pair, send};
    use super::*;

    /// Short, so the tests are quick; long enough for loopback writes to arrive.
    const DEADLINE: Duration = Duration::from_millis(200);

    async fn read_through(io: &mut Rewind<TcpStream>, chunk: usize, want: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < want {
            let mut storage = vec![0_u8; chunk];
            let mut buf = ReadBuf::new(&mut storage);
            poll_fn(|cx| Pin::new(&mut *io).poll_read(cx, &mut buf))
                .await
                .unwrap();
            let filled = buf.filled().len();
            assert!(filled > 0, "unexpected end of stream after {out:?}");
            out.extend_from_slice(&storage[..filled]);
        }
        out
    }

    #[tokio::test]
    async fn silence_times_out() {
        let (_client, server) = pair().await;
        let started = Instant::now();
        let outcome = detect(&server, DEADLINE).await;
        assert!(matches!(outcome, Err(DetectError::TimedOut)), "{outcome:?}");
        assert!(started.elapsed() >= DEADLINE);
    }

    #[tokio::test]
    async fn one_byte_of_the_preface_times_out() {
        let (client, server) = pair().await;
        send(&client, b"P").await;
        let outcome = detect(&server, DEADLINE).await;
        assert!(matches!(outcome, Err(DetectError::TimedOut)), "{outcome:?}");
    }

    #[tokio::test]
    async fn twenty_three_bytes_of_the_preface_time_out() {
        let (client, server) = pair().await;
        send(&client, &H2_PREFACE[..23]).await;
        let outcome = detect(&server, DEADLINE).await;
        assert!(matches!(outcome, Err(DetectError::TimedOut)), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_request_line_is_http1_and_is_replayed_whole() {
        let (client, server) = pair().await;
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        send(&client, request).await;
        let detected = detect(&server, DEADLINE).await.unwrap();
        assert_eq!(detected.protocol(), Protocol::Http1);
        assert!(detected.prefix().len() <= 24);
        assert!(request.starts_with(detected.prefix()));
        // Small reads cross the boundary between the replayed prefix and the socket.
        let mut io = detected.into_io(server);
        assert_eq!(read_through(&mut io, 5, request.len()).await, request);
    }

    #[tokio::test]
    async fn a_request_line_alone_is_http1() {
        let (client, server) = pair().await;
        send(&client, b"GET / HTTP/1.1\r\n").await;
        let detected = detect(&server, DEADLINE).await.unwrap();
        assert_eq!(detected.protocol(), Protocol::Http1);
    }

    #[tokio::test]
    async fn a_preface_that_diverges_late_is_http1() {
        let (client, server) = pair().await;
        let mut almost = H2_PREFACE.to_vec();
        almost[23] = b'X';
        send(&client, &almost).await;
        let detected = detect(&server, DEADLINE).await.unwrap();
        assert_eq!(detected.protocol(), Protocol::Http1);
    }

    #[tokio::test]
    async fn the_full_preface_is_http2_and_nothing_after_it_is_consumed() {
        let (client, server) = pair().await;
        let settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];
        let mut bytes = H2_PREFACE.to_vec();
        bytes.extend_from_slice(&settings);
        send(&client, &bytes).await;
        let detected = detect(&server, DEADLINE).await.unwrap();
        assert_eq!(detected.protocol(), Protocol::Http2);
        assert_eq!(detected.prefix(), H2_PREFACE);
        let mut io = detected.into_io(server);
        assert_eq!(read_through(&mut io, 64, bytes.len()).await, bytes);
    }

    #[tokio::test]
    async fn a_preface_sent_in_pieces_is_waited_for() {
        let (client, server) = pair().await;
        let writer = async {
            send(&client, &H2_PREFACE[..1]).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            send(&client, &H2_PREFACE[1..16]).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            send(&client, &H2_PREFACE[16..]).await;
        };
        let (detected, ()) = tokio::join!(detect(&server, Duration::from_secs(5)), writer);
        assert_eq!(detected.unwrap().protocol(), Protocol::Http2);
    }

    #[tokio::test]
    async fn a_close_is_closed() {
        let (client, server) = pair().await;
        drop(client);
        let outcome = detect(&server, DEADLINE).await;
        assert!(matches!(outcome, Err(DetectError::Closed)), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_close_after_part_of_the_preface_is_closed() {
        let (client, server) = pair().await;
        send(&client, b"PRI * HTTP/2").await;
        drop(client);
        let outcome = detect(&server, DEADLINE).await;
        assert!(matches!(outcome, Err(DetectError::Closed)), "{outcome:?}");
    }

    #[test]
    fn classification() {
        assert_eq!(classify(b"G"), Some(Protocol::Http1));
        assert_eq!(classify(b"PATCH"), Some(Protocol::Http1));
        assert_eq!(classify(b"PRI * HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"P"), None);
        assert_eq!(classify(&H2_PREFACE[..23]), None);
        assert_eq!(classify(H2_PREFACE), Some(Protocol::Http2));
    }
}
