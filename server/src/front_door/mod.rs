//! The front door: every phase of a connection has a deadline, and connections are capped.
//!
//! | phase | bound |
//! |---|---|
//! | accepted, over a cap | closed at once, before any read ([`conn_limits`]) |
//! | TLS handshake (with `--tls-cert`) | `--tls-handshake-timeout`; then ALPN decides the protocol |
//! | first bytes (HTTP/1 or HTTP/2?) | `--first-bytes-timeout` ([`detect`]; hyper-util's auto builder has none, hyperium/hyper#3962) |
//! | HTTP/1 request head, and idle keep-alive | `--header-read-timeout` (hyper's header timer covers both; [`header_timer`]) |
//! | request, body included | `--request-timeout` (408, in the library's `TimeoutLayer`) |
//! | HTTP/2 with no open stream (idle, or a header block that never ends) | `--h2-idle-timeout`, then a graceful GOAWAY and, after a grace period, the socket is dropped |
//! | a peer that stops reading our response | `--write-stall-timeout` ([`write_stall`]) |
//! | HTTP/2 peer that takes no response (zero flow-control window) | an answer ready and no stream finished for `--write-stall-timeout`: dropped |
//! | HTTP/2 peer that stops answering | keep-alive PING every 20 s, closed if unanswered for 20 s |
//!
//! And one bound that is not a deadline: the bytes of answers clients have not taken, per client
//! and in all ([`held_answers`]).

pub(crate) mod conn_limits;
#[cfg(test)]
mod counting_waker;
pub(crate) mod detect;
mod drain_signal;
mod header_timer;
pub(crate) mod held_answers;
mod held_body;
mod in_place;
mod ip_net;
mod linger;
mod write_stall;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use in_place::InPlace;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

use detect::Protocol;

/// The deadlines of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    pub(crate) first_bytes: Duration,
    /// TLS only: the whole handshake, from accept to the first application byte.
    pub(crate) tls_handshake: Duration,
    pub(crate) header_read: Duration,
    pub(crate) h2_idle: Duration,
    /// A peer that takes none of our response for this long is dropped: over HTTP/1 the
    /// socket takes no byte; over HTTP/2, answers wait and no stream finishes (a closed
    /// flow-control window keeps the socket writable while the bodies stay in memory).
    pub(crate) write_stall: Duration,
    /// After a graceful shutdown, how long the connection may go on with no request in flight
    /// (a peer that ignores the GOAWAY) before the socket is dropped.
    pub(crate) grace: Duration,
}

/// Serves one accepted connection with the tower `service` to the end, within `deadlines`;
/// returns when it is closed.
/// `shutdown` turning true asks for a graceful close (the server is draining). With `tls`, the
/// handshake comes first, under its own deadline, and ALPN says which protocol follows;
/// without, the first bytes say it.
pub(crate) async fn serve_connection<S, B>(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    service: S,
    deadlines: Deadlines,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(acceptor) = tls {
        let handshake = tokio::time::timeout(deadlines.tls_handshake, acceptor.accept(stream));
        let stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    return;
                }
                Err(_elapsed) => {
                    tracing::debug!("TLS handshake not finished in time");
                    return;
                }
            },
            _ = shutdown.changed() => return,
        };
        // RFC 9113 section 3.2: HTTP/2 over TLS is chosen by ALPN; anything else is HTTP/1.1.
        let protocol = if stream.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_H2) {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        let io = TokioIo::new(linger::Linger::new(write_stall::WriteStall::new(
            stream,
            deadlines.write_stall,
        )));
        return serve_io(io, protocol, service, deadlines, shutdown).await;
    }
    let detected = tokio::select! {
        detected = detect::detect(&stream, deadlines.first_bytes) => detected,
        _ = shutdown.changed() => return,
    };
    let detected = match detected {
        Ok(detected) => detected,
        Err(error) => {
            tracing::debug!(%error, "connection closed before it spoke HTTP");
            return;
        }
    };
    let protocol = detected.protocol();
    let io = TokioIo::new(linger::Linger::new(write_stall::WriteStall::new(
        detected.into_io(stream),
        deadlines.write_stall,
    )));
    serve_io(io, protocol, service, deadlines, shutdown).await;
}

/// Serves `io`, which speaks `protocol`, with hyper, to the end.
async fn serve_io<I, S, B>(
    io: I,
    protocol: Protocol,
    service: S,
    deadlines: Deadlines,
    shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match protocol {
        Protocol::Http1 => {
            // One request at a time, on this task either way: called in place, no clone.
            // `writev(true)`: hyper queues the body's frames as they are (its "queue" writes)
            // instead of copying them into a buffer of its own, which it would do for an IO
            // that is not vectored: the held-answer budget counts a frame until its last slice
            // is dropped, and a copy would outlive the count. (Never `pipeline_flush`: it
            // copies too.)
            let connection = http1::Builder::new()
                .writev(true)
                .timer(header_timer::HeaderTimer::default())
                .keep_alive(true)
                .header_read_timeout(deadlines.header_read)
                .serve_connection(io, InPlace::new(service));
            drive(connection, None, deadlines, shutdown).await;
        }
        Protocol::Http2 => {
            let streams = Arc::new(StreamCount::default());
            // hyper's HTTP/2 server calls the service on the connection's task and spawns the
            // futures: a clone a request, whose work (a token's signature, a read) runs in its
            // stream's task, not in place, where every stream's would run in turn.
            let counted = Counted {
                inner: TowerToHyperService::new(service),
                streams: streams.clone(),
            };
            let connection = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(20))
                .keep_alive_timeout(Duration::from_secs(20))
                .max_concurrent_streams(256)
                .serve_connection(io, counted);
            drive(connection, Some(streams), deadlines, shutdown).await;
        }
    }
}

/// Runs `connection` until it ends; shuts it down gracefully when the server drains or, for
/// HTTP/2, when it has had no open stream for `h2_idle`; drops it if a graceful close for
/// idleness takes longer than `grace`.
async fn drive<C>(
    connection: C,
    streams: Option<Arc<StreamCount>>,
    deadlines: Deadlines,
    shutdown: watch::Receiver<bool>,
) where
    C: GracefulConnection<Error = hyper::Error>,
{
    tokio::pin!(connection);
    let mut drain = drain_signal::DrainSignal::new(shutdown);
    let mut closing = false;
    let mut give_up: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(std::future::pending());
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = &mut drain, if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
                if let Some(streams) = &streams {
                    give_up = Box::pin(idle_owned(streams.clone(), deadlines.grace));
                }
            }
            () = idle(streams.as_deref(), deadlines.h2_idle), if !closing && streams.is_some() => {
                tracing::debug!("HTTP/2 connection idle with no stream: closing it");
                connection.as_mut().graceful_shutdown();
                closing = true;
                if let Some(streams) = &streams {
                    // Dropped only once it has gone `grace` with nothing in flight: a request
                    // that slipped in before the GOAWAY is answered first.
                    give_up = Box::pin(idle_owned(streams.clone(), deadlines.grace));
                }
            }
            () = stalled(streams.as_deref(), deadlines.write_stall) => {
                tracing::debug!("HTTP/2 responses not taken by the peer: dropping the connection");
                return;
            }
            () = &mut give_up => {
                tracing::debug!("HTTP/2 connection did not close in time: dropping it");
                return;
            }
        }
    }
}

/// Open HTTP/2 streams of one connection: requests handed to the service whose response has
/// not been sent to its end (the count ends when the response body is finished or dropped, not
/// when its headers are ready: a peer that never opens its flow-control window keeps the body
/// in memory, and must keep the stream counted). hyper only hands over a stream once its
/// header block is complete, so a stalled header block counts as no stream at all, and the
/// idle deadline closes it.
#[derive(Debug, Default)]
struct StreamCount {
    open: AtomicUsize,
    /// Open streams whose response is ready: from then on only the peer holds them up.
    answered: AtomicUsize,
    /// Streams finished so far: progress, for the stall deadline.
    finished: AtomicU64,
    changed: Notify,
}

impl StreamCount {
    fn open(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        StreamGuard(self.clone())
    }
}

/// One open stream; dropping it (response sent, stream reset) closes it.
struct StreamGuard(Arc<StreamCount>);

impl StreamGuard {
    /// The stream's response is ready: the stall clock may run for it.
    fn answered(&self) -> AnsweredGuard {
        self.0.answered.fetch_add(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
        AnsweredGuard(self.0.clone())
    }
}

/// One stream whose response is ready and not yet sent to its end.
struct AnsweredGuard(Arc<StreamCount>);

impl Drop for AnsweredGuard {
    fn drop(&mut self) {
        self.0.answered.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.finished.fetch_add(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

/// Resolves once `streams` has had no open stream for `timeout`.
async fn idle(streams: Option<&StreamCount>, timeout: Duration) {
    let Some(streams) = streams else {
        return std::future::pending().await;
    };
    loop {
        let changed = streams.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if streams.open.load(Ordering::Acquire) == 0 {
            tokio::select! {
                () = tokio::time::sleep(timeout) => {
                    if streams.open.load(Ordering::Acquire) == 0 {
                        return;
                    }
                }
                () = &mut changed => {}
            }
        } else {
            changed.await;
        }
    }
}

async fn idle_owned(streams: Arc<StreamCount>, timeout: Duration) {
    idle(Some(&streams), timeout).await;
}

/// Resolves once `streams` has had answers waiting but no stream finished for `timeout`:
/// responses the peer does not take (a zero flow-control window), however many new streams it
/// opens. A stream still being answered does not count: the request's own deadline bounds it.
async fn stalled(streams: Option<&StreamCount>, timeout: Duration) {
    let Some(streams) = streams else {
        return std::future::pending().await;
    };
    loop {
        let finished = streams.finished.load(Ordering::Acquire);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = streams.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if streams.finished.load(Ordering::Acquire) != finished {
                break;
            }
            let busy = streams.answered.load(Ordering::Acquire) > 0;
            tokio::select! {
                () = tokio::time::sleep_until(deadline), if busy => {
                    if streams.finished.load(Ordering::Acquire) == finished
                        && streams.answered.load(Ordering::Acquire) > 0
                    {
                        return;
                    }
                }
                () = &mut changed => {}
            }
            if !busy {
                // Nothing open: the clock starts again from the next stream.
                break;
            }
        }
    }
}

/// The service of an HTTP/2 connection, counting its open streams.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    streams: Arc<StreamCount>,
}

impl<S, R, B> hyper::service::Service<R> for Counted<S>
where
    S: hyper::service::Service<R, Response = http::Response<B>>,
{
    type Response = http::Response<CountedBody<B>>;
    type Error = S::Error;
    type Future = CountedFuture<S::Future>;

    fn call(&self, request: R) -> Self::Future {
        CountedFuture {
            inner: Box::pin(self.inner.call(request)),
            guard: Some(self.streams.open()),
        }
    }
}

/// A stream's response future; its guard moves into the response body.
struct CountedFuture<F> {
    inner: Pin<Box<F>>,
    guard: Option<StreamGuard>,
}

impl<F, B, E> Future for CountedFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<CountedBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = std::task::ready!(self.inner.as_mut().poll(cx));
        let guard = self.guard.take();
        let answered = guard.as_ref().map(StreamGuard::answered);
        Poll::Ready(result.map(|response| {
            response.map(|body| CountedBody {
                inner: Box::pin(body),
                _answered: answered,
                _guard: guard,
            })
        }))
    }
}

/// A response body that keeps its stream counted until it is finished or dropped.
struct CountedBody<B> {
    inner: Pin<Box<B>>,
    _answered: Option<AnsweredGuard>,
    _guard: Option<StreamGuard>,
}

impl<B: hyper::body::Body> hyper::body::Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        self.inner.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
