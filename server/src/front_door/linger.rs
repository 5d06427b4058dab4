//! [`Linger`]: a lingering close (RFC 9112 §9.6). When the server closes a connection whose
//! peer is still sending (a body refused with 413 before it was read, `Connection: close`),
//! closing the socket at once with unread bytes makes the kernel answer with a reset, and a
//! reset makes the peer's kernel throw away what it had received but the client had not read
//! yet: the 413 itself. So the close first shuts down our sending side (the peer sees the end
//! of the answer), then reads and discards what the peer still sends until it closes too, for
//! at most [`LINGER_FOR`] and [`LINGER_BYTES`], and no longer than [`LINGER_IDLE`] after the
//! last byte (a peer that sends nothing is not waited for), as nginx's `lingering_close`
//! does with its `lingering_time` and `lingering_timeout`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Longest a closing connection waits for its peer to stop sending.
pub(crate) const LINGER_FOR: Duration = Duration::from_secs(2);
/// Most bytes a closing connection reads and discards.
pub(crate) const LINGER_BYTES: usize = 8 * 1024 * 1024;
/// Longest a closing connection waits for the next byte.
pub(crate) const LINGER_IDLE: Duration = Duration::from_millis(500);

/// An IO whose shutdown lingers; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Linger<T> {
    inner: T,
    state: State,
}

#[derive(Debug)]
enum State {
    Open,
    /// Our side is shut down; discarding what the peer still sends.
    Draining {
        deadline: Pin<Box<Sleep>>,
        /// Reset at every byte read.
        idle: Pin<Box<Sleep>>,
        discarded: usize,
    },
    Closed,
}

impl<T> Linger<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            state: State::Open,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Linger<T> {
    /// Reads and discards until the peer closes, an error, the deadline or the byte bound.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let State::Draining {
            deadline,
            idle,
            discarded,
        } = &mut self.state
        else {
            return Poll::Ready(());
        };
        let mut scratch = [0u8; 8192];
        loop {
            if *discarded >= LINGER_BYTES
                || deadline.as_mut().poll(cx).is_ready()
                || idle.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(());
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {
                    *discarded += buf.filled().len();
                    idle.as_mut()
                        .reset(tokio::time::Instant::now() + LINGER_IDLE);
                }
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Linger<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
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
        let this = self.get_mut();
        if let State::Open = this.state {
            // Our side first: the peer sees the end of the answer (and, over TLS, close_notify).
            let shut = ready!(Pin::new(&mut this.inner).poll_shutdown(cx));
            if shut.is_err() {
                this.state = State::Closed;
                return Poll::Ready(shut);
            }
            this.state = State::Draining {
                deadline: Box::pin(tokio::time::sleep(LINGER_FOR)),
                idle: Box::pin(tokio::time::sleep(LINGER_IDLE)),
                discarded: 0,
            };
        }
        ready!(this.poll_drain(cx));
        this.state = State::Closed;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The peer still sending when we close gets our last bytes and our end-of-stream, and
    /// the close waits for the peer's own end.
    #[tokio::test]
    async fn a_close_drains_what_the_peer_still_sends() {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let mut ours = Linger::new(ours);
        ours.write_all(b"answer").await.unwrap();
        let peer = tokio::spawn(async move {
            // Still sending a body the server never reads, then reading the answer.
            theirs.write_all(&[b'x'; 100_000]).await.unwrap();
            let mut answer = Vec::new();
            theirs.read_to_end(&mut answer).await.unwrap();
            answer
        });
        ours.shutdown().await.unwrap();
        assert_eq!(peer.await.unwrap(), b"answer");
        assert!(matches!(ours.state, State::Closed));
    }

    /// A peer that sends nothing is waited for only `LINGER_IDLE`.
    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_not_waited_for_long() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let mut ours = Linger::new(ours);
        let started = tokio::time::Instant::now();
        ours.shutdown().await.unwrap();
        assert_eq!(started.elapsed(), LINGER_IDLE);
        assert!(matches!(ours.state, State::Closed));
    }

    /// A peer that never closes and never stops sending is left after `LINGER_FOR`.
    #[tokio::test(start_paused = true)]
    async fn lingering_is_bounded_in_time() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut ours = Linger::new(ours);
        let trickle = tokio::spawn(async move {
            while theirs.write_all(b"x").await.is_ok() {
                tokio::time::sleep(LINGER_IDLE / 2).await;
            }
        });
        let started = tokio::time::Instant::now();
        ours.shutdown().await.unwrap();
        let lingered = started.elapsed();
        assert!(
            lingered >= LINGER_FOR && lingered < LINGER_FOR + LINGER_IDLE,
            "{lingered:?}"
        );
        assert!(matches!(ours.state, State::Closed));
        drop(ours);
        trickle.await.unwrap();
    }

    /// A peer that keeps sending is read at most `LINGER_BYTES`, then left.
    #[tokio::test(start_paused = true)]
    async fn lingering_is_bounded_in_bytes() {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let mut ours = Linger::new(ours);
        let flood = tokio::spawn(async move {
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0usize;
            while theirs.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
            }
            sent
        });
        let started = tokio::time::Instant::now();
        ours.shutdown().await.unwrap();
        assert!(
            started.elapsed() < LINGER_FOR,
            "left by the clock, not the bytes"
        );
        let State::Closed = ours.state else {
            panic!("still lingering")
        };
        drop(ours);
        let sent = flood.await.unwrap();
        assert!(
            (LINGER_BYTES..LINGER_BYTES + 256 * 1024).contains(&sent),
            "{sent} bytes taken"
        );
    }
}
