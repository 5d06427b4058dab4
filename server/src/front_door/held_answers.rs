//! A budget for answers clients have not taken: the bytes of response bodies that are ready
//! and still in this process, per client and in all.
//!
//! The write-stall deadline bounds how long a peer that does not read keeps its answers, not
//! how many bytes it keeps meanwhile. With an open `--schema`, objects of `--max-object-bytes`
//! and `$batch` answers of twenty of them, one caller within its rate limit once held 4.3 GB
//! this way; over HTTP/2, where a stream that finishes restarts the stall clock for the others,
//! for longer still. So every answer is counted while any byte of it is in memory
//! ([`HeldBody`]), and a request is refused before anything of it runs when:
//!
//! - its client (an IPv4 address or an IPv6 /48, see [`Holder`]; behind a `--trusted-proxy`,
//!   the client the proxy names) holds `--max-held-bytes-per-client`;
//! - all clients together hold `--max-held-bytes`;
//! - all clients together hold half of `--max-held-bytes` and this client at least an even
//!   share of that half (and at least a sixteenth of what one client may hold), or it cannot
//!   be told apart (a proxy named no client). A few addresses that fill the server's budget then shut
//!   out each other, not every other client, until the budget is full.
//!
//! The refusal is 503 `serviceNotAvailable` with `Retry-After` (Graph's answer when it cannot
//! serve a request for now), small, and not counted. Requests already running are answered:
//! a client passes its budget by at most the answers of the requests it had in flight when
//! it reached it, and then gets nothing more until it reads. Probes are not counted.
//!
//! Answers and frames of 4 KiB or less are not counted
//! ([`COUNTED_ABOVE`](super::held_body::COUNTED_ABOVE)), nor are the
//! response headers: they are bounded by the streams and connections a client may hold.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use pin_project_lite::pin_project;
use security_update::auth::ClientAddress;
use security_update::metrics::PrometheusMetrics;
use security_update::{ErrorKind, GraphError, ResponseBody};
use tower::Service;

use super::held_body::{Charge, HeldBody};

/// Seconds a refused client is told to wait: answers leave as fast as their reader takes
/// them, so the budget frees up as soon as the client reads.
const RETRY_AFTER_SECS: u32 = 1;

/// The bytes held by answers not yet taken, against their limits; shared by every connection
/// (made once and leaked: it lives as long as the process, and requests hold no count of it).
///
/// One atomic for the total, read on every request (while less than a client's budget and
/// half the server's is held in all, no limit can refuse, and that is all a request costs); a
/// `Mutex<HashMap>` per client, touched only by answers larger than
/// [`COUNTED_ABOVE`](super::held_body::COUNTED_ABOVE) and by requests once that much is held.
#[derive(Debug)]
pub(crate) struct AnswerBudget {
    max_in_all: u64,
    max_per_client: u64,
    /// Below this total every request is admitted without a look at its client.
    admit_all_below: u64,
    total: AtomicU64,
    per_client: Mutex<HashMap<Holder, u64>>,
}

/// One client for the budget: an IPv4 address, or an IPv6 /48 (an IPv4-mapped address is the
/// IPv4 address it maps).
///
/// Coarser than the connection caps' /64: a site or home is handed a /48 or a /56, so one
/// holder of such a prefix could take 65,536 or 256 /64s, each admitted with a first answer
/// of up to `$batch` size before any count sees it, and fill the server's budget alone. A /48
/// is to IPv6 what a NAT address is to IPv4: the clients behind it share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Holder {
    V4(Ipv4Addr),
    V6Prefix([u16; 3]),
}

impl Holder {
    fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => {
                let [a, b, c, ..] = v6.segments();
                Self::V6Prefix([a, b, c])
            }
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    /// All clients together hold the server's budget, or half of it and this client its share.
    Server,
    /// This client holds its own budget.
    Client,
}

impl Over {
    /// The metric label of the refusal.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

impl AnswerBudget {
    /// At most `max_in_all` bytes held in all and `max_per_client` by one client before
    /// requests are refused; 0 for no limit.
    #[must_use]
    pub(crate) fn new(max_in_all: u64, max_per_client: u64) -> Self {
        let limit = |max: u64| if max == 0 { u64::MAX } else { max };
        let (max_in_all, max_per_client) = (limit(max_in_all), limit(max_per_client));
        Self {
            max_in_all,
            max_per_client,
            admit_all_below: max_per_client.min(max_in_all / 2),
            total: AtomicU64::new(0),
            per_client: Mutex::new(HashMap::new()),
        }
    }

    /// [`AnswerBudget::new`], made once for the life of the process.
    pub(crate) fn for_process(max_in_all: u64, max_per_client: u64) -> &'static Self {
        Box::leak(Box::new(Self::new(max_in_all, max_per_client)))
    }

    /// Whether a request of `client` may run now.
    pub(crate) fn admit(&self, client: Option<IpAddr>) -> Result<(), Over> {
        let total = self.total.load(Ordering::Acquire);
        if total < self.admit_all_below {
            return Ok(());
        }
        if total >= self.max_in_all {
            return Err(Over::Server);
        }
        let busy = total >= self.max_in_all / 2;
        let Some(client) = client else {
            return if busy { Err(Over::Server) } else { Ok(()) };
        };
        let clients = self.clients();
        let held = clients.get(&Holder::of(client)).copied().unwrap_or(0);
        if held >= self.max_per_client {
            return Err(Over::Client);
        }
        // An even share of half the budget among the clients holding anything, never below a
        // sixteenth of what a client may hold (its own budget, or that half if less): many
        // holders of a few KiB each cannot shrink everyone's share to nothing.
        let holding = u64::try_from(clients.len()).unwrap_or(u64::MAX).max(1);
        let share = (self.max_in_all / 2 / holding).max(self.admit_all_below / 16);
        if busy && held >= share.max(1) {
            return Err(Over::Server);
        }
        Ok(())
    }

    /// `bytes` more are held for `client`.
    pub(crate) fn hold(&self, client: Option<IpAddr>, bytes: u64) {
        if let Some(client) = client {
            *self.clients().entry(Holder::of(client)).or_default() += bytes;
        }
        self.total.fetch_add(bytes, Ordering::AcqRel);
    }

    /// `bytes` held for `client` are gone (taken by hyper, or dropped).
    pub(crate) fn release(&self, client: Option<IpAddr>, bytes: u64) {
        self.total.fetch_sub(bytes, Ordering::AcqRel);
        let Some(client) = client else {
            return;
        };
        let client = Holder::of(client);
        let mut clients = self.clients();
        if let Some(held) = clients.get_mut(&client) {
            *held -= bytes;
            if *held == 0 {
                clients.remove(&client);
            }
        }
    }

    /// Bytes held in all.
    pub(crate) fn held(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    /// Bytes held by `client`, and how many clients hold anything.
    #[cfg(test)]
    pub(crate) fn held_by(&self, client: IpAddr) -> (u64, usize) {
        let clients = self.clients();
        (
            clients.get(&Holder::of(client)).copied().unwrap_or(0),
            clients.len(),
        )
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<Holder, u64>> {
        // The map is consistent after every statement: a panic elsewhere cannot leave it torn.
        self.per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Wraps a service so that its answers are counted against an [`AnswerBudget`], and requests
/// past the budget are refused; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct HeldAnswers<S> {
    inner: S,
    budget: &'static AnswerBudget,
    metrics: Option<Arc<PrometheusMetrics>>,
    /// The client of the requests that name none ([`for_client`](Self::for_client)).
    client: Option<IpAddr>,
}

impl<S> HeldAnswers<S> {
    /// `inner`, under `budget`; refusals are counted in `metrics`, if any.
    pub(crate) fn new(
        inner: S,
        budget: &'static AnswerBudget,
        metrics: Option<Arc<PrometheusMetrics>>,
    ) -> Self {
        Self {
            inner,
            budget,
            metrics,
            client: None,
        }
    }

    /// For the requests of one connection, whose client is `client` unless a request names
    /// its own [`ClientAddress`] (a trusted proxy's; `crate::client_address`).
    pub(crate) fn for_client(mut self, client: Option<IpAddr>) -> Self {
        self.client = client;
        self
    }
}

impl<S, B, ResBody> Service<Request<B>> for HeldAnswers<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: hyper::body::Body,
{
    type Response = Response<ResponseBody<HeldBody<ResBody>>>;
    type Error = S::Error;
    type Future = HeldFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let client = request
            .extensions()
            .get::<ClientAddress>()
            .map(|&ClientAddress(address)| address)
            .or(self.client);
        match self.budget.admit(client) {
            Ok(()) => HeldFuture::Running {
                future: self.inner.call(request),
                budget: self.budget,
                client,
            },
            Err(over) => {
                tracing::debug!(?over, "request refused: answers not taken hold the budget");
                if let Some(metrics) = &self.metrics {
                    metrics.held_answer_refused(over.label());
                }
                HeldFuture::Refused {
                    response: Some(refusal(&request, over)),
                }
            }
        }
    }
}

/// The 503 for a request past the budget.
fn refusal<B>(request: &Request<B>, over: Over) -> Response<Full<Bytes>> {
    let message = match over {
        Over::Client => {
            "answers this client has not read yet hold all the memory it may use; read them, \
             then retry"
        }
        Over::Server => {
            "answers clients have not read yet hold all the memory the server keeps \
                         for them; retry later"
        }
    };
    GraphError::new(ErrorKind::ServiceUnavailable, message)
        .with_retry_after(RETRY_AFTER_SECS)
        .into_refusal(request)
}

pin_project! {
    /// The answer of [`HeldAnswers`]: the inner service's, counted, or a refusal.
    #[project = HeldFutureProj]
    pub(crate) enum HeldFuture<F> {
        Running {
            #[pin]
            future: F,
            budget: &'static AnswerBudget,
            client: Option<IpAddr>,
        },
        Refused {
            response: Option<Response<Full<Bytes>>>,
        },
    }
}

impl<F, ResBody, E> Future for HeldFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: hyper::body::Body,
{
    type Output = Result<Response<ResponseBody<HeldBody<ResBody>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HeldFutureProj::Running {
                future,
                budget,
                client,
            } => {
                let response = ready!(future.poll(cx))?;
                let charge = Charge::new(budget, *client);
                Poll::Ready(Ok(
                    response.map(|body| ResponseBody::inner(HeldBody::new(body, charge)))
                ))
            }
            HeldFutureProj::Refused { response } => {
                let response = response.take().expect("polled after completion");
                Poll::Ready(Ok(response.map(ResponseBody::error)))
            }
        }
    }
}

#[cfg(test)]
#[path = "held_answers_tests.rs"]
mod tests;
