//! `GET /healthz` (live: the process serves; no store call) and `GET /readyz` (ready: the
//! store answers a read within a short deadline and does not know itself unable to write,
//! and the server is not draining). Readiness is cached
//! for a second, so probes cannot hammer PostgreSQL. Both sit outside the API stack: no token,
//! no rate limit, no access-log line, tiny bodies with no internals in them.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use pin_project_lite::pin_project;
use security_update::refusal::{close_if_unread, declares_body};
use security_update::{ResponseBody, SecurityStore};
use tower::Service;

/// How long a readiness answer is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);
/// How long the store may take to answer a readiness check.
const CHECK_DEADLINE: Duration = Duration::from_secs(2);

type Check = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Whether the server is ready: not draining, and its store answers.
pub(crate) struct Readiness {
    draining: AtomicBool,
    check: Box<dyn Fn() -> Check + Send + Sync>,
    cached: Mutex<Option<(Instant, bool)>>,
    /// One check at a time: probes that come while it runs wait for it and share its answer,
    /// so a slow store is asked once, not once per probe.
    checking: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl Readiness {
    /// Ready while `store` says so within the deadline ([`SecurityStore::check_ready`]: it
    /// answers a read and takes writes; the embedded store whose committer has stopped, or a
    /// PostgreSQL standby, still reads, and would fail every `PATCH`). A store that is not
    /// ready says why in one log line a check, so at most one a second.
    pub(crate) fn new<S: SecurityStore + Clone>(store: S) -> Self {
        Self {
            draining: AtomicBool::new(false),
            check: Box::new(move || {
                let store = store.clone();
                Box::pin(async move {
                    match tokio::time::timeout(CHECK_DEADLINE, store.check_ready()).await {
                        Ok(Ok(())) => true,
                        Ok(Err(error)) => {
                            tracing::error!(%error, "not ready: the store cannot serve");
                            false
                        }
                        Err(_) => {
                            tracing::error!(
                                deadline_ms = CHECK_DEADLINE.as_millis(),
                                "not ready: the store did not answer in time"
                            );
                            false
                        }
                    }
                })
            }),
            cached: Mutex::new(None),
            checking: tokio::sync::Mutex::new(()),
        }
    }

    /// From now on `/readyz` answers 503: load balancers stop sending.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    async fn ready(self: Arc<Self>) -> bool {
        if self.draining.load(Ordering::Acquire) {
            return false;
        }
        if let Some(ready) = self.fresh() {
            return ready;
        }
        let _checking = self.checking.lock().await;
        // Whoever held the lock may have just answered.
        if let Some(ready) = self.fresh() {
            return ready;
        }
        let started = Instant::now();
        let ready = (self.check)().await;
        *self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((started, ready));
        ready && !self.draining.load(Ordering::Acquire)
    }

    /// The cached answer, if it is recent enough.
    fn fresh(&self) -> Option<bool> {
        let cached = *self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cached
            .filter(|(at, _)| at.elapsed() < CACHE_FOR)
            .map(|(_, ready)| ready)
    }
}

/// Answers the probes, passes everything else to `inner`.
#[derive(Debug, Clone)]
pub(crate) struct Probes<S> {
    inner: S,
    readiness: Arc<Readiness>,
}

impl<S> Probes<S> {
    pub(crate) fn new(inner: S, readiness: Arc<Readiness>) -> Self {
        Self { inner, readiness }
    }
}

impl<S, B, ResBody> Service<Request<B>> for Probes<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ProbeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        if path != "/healthz" && path != "/readyz" {
            return ProbeFuture::Inner {
                future: self.inner.call(request),
            };
        }
        // A probe answers without reading a body the request may declare: then its answer
        // closes an HTTP/1 connection, as a refusal's does (`security_update::refusal`).
        let unread = declares_body(request.headers()).then_some(request.version());
        let probe = matches!(*request.method(), Method::GET | Method::HEAD);
        match path {
            "/healthz" if probe => ProbeFuture::answer(Box::pin(async { true }), "ok", unread),
            "/readyz" if probe => {
                ProbeFuture::answer(Box::pin(self.readiness.clone().ready()), "ready", unread)
            }
            // RFC 9110 §15.5.6: the probes exist and answer GET and HEAD only.
            _ => ProbeFuture::MethodNotAllowed { unread },
        }
    }
}

pin_project! {
    #[project = ProbeFutureProj]
    pub(crate) enum ProbeFuture<F> {
        Inner { #[pin] future: F },
        // `unread`: the request's version, when it declared a body.
        Probe { check: Check, ok: &'static str, unread: Option<Version> },
        MethodNotAllowed { unread: Option<Version> },
    }
}

impl<F> ProbeFuture<F> {
    fn answer(check: Check, ok: &'static str, unread: Option<Version>) -> Self {
        Self::Probe { check, ok, unread }
    }
}

impl<F, ResBody, E> Future for ProbeFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ProbeFutureProj::Inner { future } => {
                Poll::Ready(ready!(future.poll(cx)).map(|r| r.map(ResponseBody::inner)))
            }
            ProbeFutureProj::MethodNotAllowed { unread } => {
                let mut response = Response::new(ResponseBody::bytes(Bytes::from_static(
                    b"method not allowed: GET or HEAD\n",
                )));
                *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                let headers = response.headers_mut();
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                Poll::Ready(Ok(close_if_unread(response, *unread)))
            }
            ProbeFutureProj::Probe { check, ok, unread } => {
                let ready = ready!(check.as_mut().poll(cx));
                let (status, text) = if ready {
                    (StatusCode::OK, *ok)
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                };
                let mut response =
                    Response::new(ResponseBody::bytes(Bytes::from(format!("{text}\n"))));
                *response.status_mut() = status;
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                Poll::Ready(Ok(close_if_unread(response, *unread)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use security_update::store::StoreErrorKind;
    use security_update::{MemoryStore, ObjectKey, Snapshot, StoreError, SwapOutcome};
    use std::sync::atomic::AtomicBool;

    /// The memory store, able to write until told otherwise (as the embedded store is until
    /// its committer stops: `security_update`'s own tests stop one).
    #[derive(Debug, Clone, Default)]
    struct Store {
        inner: MemoryStore,
        broken: Arc<AtomicBool>,
    }

    impl SecurityStore for Store {
        fn writable(&self) -> Result<(), StoreError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(StoreError::new(
                    StoreErrorKind::Other,
                    "the committer stopped",
                ));
            }
            Ok(())
        }

        async fn load(&self, key: &ObjectKey) -> Result<Option<Snapshot>, StoreError> {
            self.inner.load(key).await
        }

        async fn compare_and_swap(
            &self,
            key: &ObjectKey,
            expected: u64,
            new: Snapshot,
        ) -> Result<SwapOutcome, StoreError> {
            self.inner.compare_and_swap(key, expected, new).await
        }
    }

    /// A store that still reads but knows it cannot write is not ready: load balancers stop
    /// sending `PATCH`es that could only fail.
    #[tokio::test]
    async fn a_store_that_cannot_write_is_not_ready() {
        let store = Store::default();
        assert!(Arc::new(Readiness::new(store.clone())).ready().await);
        store.broken.store(true, Ordering::SeqCst);
        assert!(
            store.load(&ObjectKey::new("t", "u")).await.is_ok(),
            "reads still work"
        );
        assert!(!Arc::new(Readiness::new(store)).ready().await);
    }
}
