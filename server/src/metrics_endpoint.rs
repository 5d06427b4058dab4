//! The `--metrics-listen` port: `GET /metrics` (the Prometheus scrape) beside the probes. It
//! is a listener of its own, so the API port never exposes metrics and a flood on the API
//! port's connection caps never starves a scrape or a probe.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use security_update::ResponseBody;
use security_update::metrics::{CONTENT_TYPE, PrometheusMetrics};
use tower::Service;

use crate::front_door::held_answers::AnswerBudget;

/// Answers `GET /metrics`; anything else is 404 (the probes are answered before it).
#[derive(Debug, Clone)]
pub(crate) struct MetricsEndpoint {
    metrics: Arc<PrometheusMetrics>,
    /// Read at each scrape: the held bytes change with every large answer, and are counted
    /// once, by the budget.
    budget: &'static AnswerBudget,
}

impl MetricsEndpoint {
    pub(crate) fn new(metrics: Arc<PrometheusMetrics>, budget: &'static AnswerBudget) -> Self {
        Self { metrics, budget }
    }
}

impl<B> Service<Request<B>> for MetricsEndpoint {
    type Response = Response<ResponseBody<String>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let scrape = request.uri().path() == "/metrics"
            && matches!(*request.method(), Method::GET | Method::HEAD);
        let (status, content_type, body) = if scrape {
            self.metrics.set_held_answer_bytes(self.budget.held());
            (
                StatusCode::OK,
                CONTENT_TYPE,
                Bytes::from(self.metrics.render()),
            )
        } else {
            (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                Bytes::from_static(b"not found: this port serves /metrics, /healthz and /readyz\n"),
            )
        };
        let mut response = Response::new(ResponseBody::bytes(body));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // Answered without reading a body the request may declare.
        ready(Ok(security_update::refusal::close_if_body_unread(
            response,
            request.version(),
            request.headers(),
        )))
    }
}

/// Most connections the metrics port holds at once: scrapers and probes are few.
const MAX_CONNECTIONS: usize = 64;

/// Binds `addr` and serves `service` there (plain HTTP/1 and HTTP/2, the API port's
/// deadlines), in the background for the life of the process; returns the bound address.
pub(crate) async fn serve<S>(
    addr: std::net::SocketAddr,
    service: S,
) -> std::io::Result<std::net::SocketAddr>
where
    S: Service<
            Request<hyper::body::Incoming>,
            Response = Response<ResponseBody<ResponseBody<String>>>,
            Error = Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let deadlines = crate::front_door::Deadlines {
        first_bytes: std::time::Duration::from_secs(5),
        tls_handshake: std::time::Duration::from_secs(5),
        header_read: std::time::Duration::from_secs(5),
        h2_idle: std::time::Duration::from_secs(10),
        write_stall: std::time::Duration::from_secs(10),
        grace: std::time::Duration::from_secs(5),
    };
    tokio::spawn(async move {
        // Never closed: the metrics port lives as long as the process.
        let (_keep, shutdown) = tokio::sync::watch::channel(false);
        loop {
            let Ok((stream, _peer)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let service = service.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                crate::front_door::serve_connection(stream, None, service, deadlines, shutdown)
                    .await;
                drop(permit);
            });
        }
    });
    Ok(bound)
}
