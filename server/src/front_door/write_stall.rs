//! [`WriteStall`]: a deadline on writes to a peer that stopped reading. Without it an
//! HTTP/1 response (up to the object size limit) to a client that never reads holds its
//! connection, task and buffers forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// An IO whose writes fail once the peer has accepted nothing for `limit`.
///
/// The timer runs only while a write (or flush, or shutdown) is pending on full socket
/// buffers, and restarts at every write that makes progress: a slow but reading client is
/// fine, a client that stopped reading is cut after `limit`.
#[derive(Debug)]
pub(crate) struct WriteStall<T> {
    inner: T,
    limit: Duration,
    /// Allocated at the first stall, then reset and reused.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<T> WriteStall<T> {
    /// `inner`, with writes failing after `limit` without progress.
    #[must_use]
    pub(crate) fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            timer: None,
            armed: false,
        }
    }

    /// Passes a ready result through (disarming the timer); on pending, arms the timer if
    /// needed and turns the pending into an error once it has expired.
    fn watch<R>(&mut self, poll: Poll<io::Result<R>>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match poll {
            Poll::Ready(result) => {
                self.armed = false;
                Poll::Ready(result)
            }
            Poll::Pending if self.stalled(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Arms the timer if it is not, and polls it (registering the waker).
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            let deadline = tokio::time::Instant::now() + self.limit;
            if let Some(timer) = self.timer.as_mut() {
                timer.as_mut().reset(deadline);
            } else {
                self.timer = Some(Box::pin(tokio::time::sleep_until(deadline)));
            }
            self.armed = true;
        }
        self.timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStall<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStall<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(poll, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(poll, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(poll, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(poll, cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::front_door::detect::testing::pair;

    const PATIENCE: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn a_peer_that_stops_reading_fails_writes_after_the_limit() {
        let (client, server) = pair().await;
        let limit = Duration::from_millis(200);
        let mut io = WriteStall::new(server, limit);
        let chunk = vec![0_u8; 64 * 1024];
        let started = Instant::now();
        let error = tokio::time::timeout(PATIENCE, async {
            loop {
                let written =
                    std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &chunk)).await;
                if let Err(error) = written {
                    return error;
                }
            }
        })
        .await
        .expect("the write fails instead of waiting forever");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= limit);
        drop(client);
    }
}
