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
//! - its client (an IPv4 address or an IPv6 /64, as for the connection caps; behind a
//!   `--trusted-proxy`, the client the proxy names) holds `--max-held-bytes-per-client`;
//! - all clients together hold `--max-held-bytes`;
//! - all clients together hold half of `--max-held-bytes` and this client at least an even
//!   share of that half (or it cannot be told apart: a proxy named no client). A few addresses
//!   that fill the server's budget then shut out each other, not every other client, until the
//!   budget is full.
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
use std::net::IpAddr;
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
use security_update::{ErrorKind, GraphError, RequestIds, ResponseBody};
use tower::Service;

use super::conn_limits::ClientKey;
use super::held_body::{Charge, HeldBody};

/// Seconds a refused client is told to wait: answers leave as fast as their reader takes
/// them, so the budget frees up as soon as the client reads.
const RETRY_AFTER_SECS: u32 = 1;

/// The bytes held by answers not yet taken, against their limits; shared by every connection
/// (made once and leaked: it lives as long as the process, and requests hold no count of it).
///
/// One atomic for the total, read on every request (while less than either limit is held in
/// all, no client can be over its own, and that is all a request costs); a `Mutex<HashMap>`
/// per client, touched only by answers larger than
/// [`COUNTED_ABOVE`](super::held_body::COUNTED_ABOVE) and by requests once that
/// much is held.
#[derive(Debug)]
pub(crate) struct AnswerBudget {
    max_in_all: u64,
    max_per_client: u64,
    /// Below this total every request is admitted without a look at its client.
    admit_all_below: u64,
    total: AtomicU64,
    per_client: Mutex<HashMap<ClientKey, u64>>,
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
        let held = clients.get(&ClientKey::of(client)).copied().unwrap_or(0);
        if held >= self.max_per_client {
            return Err(Over::Client);
        }
        // An even share of half the budget among the clients holding anything.
        let holding = u64::try_from(clients.len()).unwrap_or(u64::MAX).max(1);
        if busy && held >= (self.max_in_all / 2 / holding).max(1) {
            return Err(Over::Server);
        }
        Ok(())
    }

    /// `bytes` more are held for `client`.
    pub(crate) fn hold(&self, client: Option<IpAddr>, bytes: u64) {
        if let Some(client) = client {
            *self.clients().entry(ClientKey::of(client)).or_default() += bytes;
        }
        self.total.fetch_add(bytes, Ordering::AcqRel);
    }

    /// `bytes` held for `client` are gone (taken by hyper, or dropped).
    pub(crate) fn release(&self, client: Option<IpAddr>, bytes: u64) {
        self.total.fetch_sub(bytes, Ordering::AcqRel);
        let Some(client) = client else {
            return;
        };
        let client = ClientKey::of(client);
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

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, u64>> {
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
        }
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
            .map(|&ClientAddress(address)| address);
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
        .into_response(&RequestIds::of(request))
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
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    #[test]
    fn a_client_over_its_budget_is_refused_and_others_are_not() {
        let budget = AnswerBudget::new(0, 1000);
        budget.hold(v4(1), 1000);
        assert_eq!(budget.admit(v4(1)), Err(Over::Client));
        assert_eq!(budget.admit(v4(2)), Ok(()));
        assert_eq!(
            budget.admit(None),
            Ok(()),
            "no client: only the server's budget"
        );
        budget.release(v4(1), 1);
        assert_eq!(budget.admit(v4(1)), Ok(()));
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let budget = AnswerBudget::new(0, 1000);
        let address = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, last));
        budget.hold(Some(address(1)), 1000);
        assert_eq!(budget.admit(Some(address(2))), Err(Over::Client));
        let other = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
        assert_eq!(budget.admit(Some(other)), Ok(()));
    }

    #[test]
    fn a_full_server_budget_refuses_everyone() {
        let budget = AnswerBudget::new(1000, 0);
        budget.hold(v4(1), 600);
        budget.hold(None, 400);
        for anyone in [v4(1), v4(2), None] {
            assert_eq!(budget.admit(anyone), Err(Over::Server));
        }
        budget.release(None, 400);
        assert_eq!(budget.admit(v4(2)), Ok(()));
    }

    #[test]
    fn past_half_the_server_budget_only_clients_under_an_even_share_are_served() {
        let budget = AnswerBudget::new(1000, 0);
        // Two clients hold 600 of 1000: the share of the half is 250 each.
        budget.hold(v4(1), 550);
        budget.hold(v4(2), 50);
        assert_eq!(
            budget.admit(v4(1)),
            Err(Over::Server),
            "holds more than its share"
        );
        assert_eq!(budget.admit(v4(2)), Ok(()), "holds less");
        assert_eq!(budget.admit(v4(3)), Ok(()), "holds nothing");
        assert_eq!(
            budget.admit(None),
            Err(Over::Server),
            "cannot be told apart"
        );
        // Under half, nobody's share is looked at.
        budget.release(v4(1), 150);
        assert_eq!(budget.admit(v4(1)), Ok(()));
    }
}
