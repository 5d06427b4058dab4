//! Running a batch: read and check it, then run its sub-requests through the inner service in
//! dependency order, a few at a time, and answer Graph's `responses` document.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use pin_project_lite::pin_project;
use serde_json::{Map, Value, json};
use tower::{Service, ServiceExt};

use super::plan::{self, Sub};
use super::{CONCURRENCY, Config};
use crate::body::ResponseBody;
use crate::error::{ErrorKind, GraphError};
use crate::merge_patch::BoxError;
use crate::request_id::{CLIENT_REQUEST_ID, RequestIds};

/// Response headers a sub-response keeps (the rest describe the batch's transport).
const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "etag",
    "request-id",
    "client-request-id",
    "retry-after",
    "preference-applied",
    "odata-version",
    "allow",
    "www-authenticate",
];

type BatchFuture<ResBody, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<ResBody>>, E>> + Send>>;

pin_project! {
    /// Response future of [`Batch`](super::Batch).
    pub struct ResponseFuture<F, E, ResBody> {
        #[pin]
        kind: Kind<F, E, ResBody>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, E, ResBody> {
        Inner { #[pin] future: F },
        Batch { future: BatchFuture<ResBody, E> },
    }
}

impl<F, E, ResBody> std::fmt::Debug for ResponseFuture<F, E, ResBody> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, E, ResBody> ResponseFuture<F, E, ResBody> {
    pub(super) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    pub(super) fn batch(future: BatchFuture<ResBody, E>) -> Self {
        Self {
            kind: Kind::Batch { future },
        }
    }
}

impl<F, E, ResBody> Future for ResponseFuture<F, E, ResBody>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            KindProj::Batch { future } => future.as_mut().poll(cx),
        }
    }
}

/// What became of one sub-request.
struct Outcome {
    status: StatusCode,
    headers: Map<String, Value>,
    body: Option<Value>,
}

pub(super) fn run<S, B, ResBody>(
    inner: S,
    config: Arc<Config>,
    request: Request<B>,
) -> BatchFuture<ResBody, S::Error>
where
    S: Service<Request<ResponseBody<B>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    Box::pin(async move {
        let ids = RequestIds::of(&request);
        let (parts, body) = request.into_parts();
        let refuse = |error: GraphError| Ok(error.into_response(&ids).map(ResponseBody::error));
        let bytes = match Limited::new(body, config.limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                let error = crate::merge_patch::read_error(&error, config.limit);
                let response =
                    crate::refusal::close_after(error.into_response(&ids), parts.version);
                return Ok(response.map(ResponseBody::error));
            }
        };
        let subs = match plan::parse(&bytes) {
            Ok(subs) => subs,
            Err(error) => return refuse(error),
        };
        let mut outcomes: Vec<Option<Outcome>> = (0..subs.len()).map(|_| None).collect();
        while outcomes.iter().any(Option::is_none) {
            let ready: Vec<usize> = (0..subs.len())
                .filter(|&i| {
                    outcomes[i].is_none()
                        && subs[i].depends_on.iter().all(|&d| outcomes[d].is_some())
                })
                .collect();
            // Outside a tokio runtime there is nowhere to spawn: run one at a time, in place.
            let concurrency = if tokio::runtime::Handle::try_current().is_ok() {
                CONCURRENCY
            } else {
                1
            };
            for chunk in ready.chunks(concurrency) {
                if concurrency == 1 {
                    let index = chunk[0];
                    let sub = &subs[index];
                    if let Some(failed) = failed_dependency_of(sub, &subs, &outcomes) {
                        outcomes[index] = Some(failed);
                        continue;
                    }
                    let request = sub_request(sub, &parts, &config.prefix);
                    let response = inner.clone().oneshot(request).await?;
                    outcomes[index] = Some(outcome(response).await);
                    continue;
                }
                let mut running = tokio::task::JoinSet::new();
                for &index in chunk {
                    let sub = &subs[index];
                    if let Some(failed) = failed_dependency_of(sub, &subs, &outcomes) {
                        outcomes[index] = Some(failed);
                        continue;
                    }
                    let request = sub_request(sub, &parts, &config.prefix);
                    let service = inner.clone();
                    running.spawn(async move {
                        let response = service.oneshot(request).await?;
                        Ok::<_, S::Error>((index, outcome(response).await))
                    });
                }
                while let Some(joined) = running.join_next().await {
                    match joined {
                        Ok(Ok((index, outcome))) => outcomes[index] = Some(outcome),
                        Ok(Err(error)) => return Err(error),
                        Err(_) => {
                            return refuse(GraphError::new(
                                ErrorKind::Internal,
                                "a request of the batch failed unexpectedly",
                            ));
                        }
                    }
                }
            }
        }
        let responses: Vec<Value> = subs
            .iter()
            .zip(outcomes)
            .map(|(sub, outcome)| {
                let outcome = outcome.unwrap_or_else(|| failed_dependency(&sub.id));
                let mut entry = Map::new();
                entry.insert("id".to_owned(), Value::String(sub.id.clone()));
                entry.insert("status".to_owned(), Value::from(outcome.status.as_u16()));
                entry.insert("headers".to_owned(), Value::Object(outcome.headers));
                if let Some(body) = outcome.body {
                    entry.insert("body".to_owned(), body);
                }
                Value::Object(entry)
            })
            .collect();
        let body = json!({ "responses": responses }).to_string();
        let body = crate::body::answer_bytes(body);
        let mut response = Response::new(ResponseBody::error(Full::new(body)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
            .headers_mut()
            .insert("odata-version", HeaderValue::from_static("4.0"));
        ids.stamp(response.headers_mut());
        Ok(response)
    })
}

/// A sub-request as a request of its own: the batch's extensions (its caller, its deadline,
/// its client address), fresh ids, the batch's `Host` when it names none.
fn sub_request<B>(
    sub: &Sub,
    parts: &http::request::Parts,
    prefix: &str,
) -> Request<ResponseBody<B>> {
    let body = sub.body.as_ref().map_or_else(Bytes::new, |body| {
        Bytes::copy_from_slice(body.get().as_bytes())
    });
    let mut request = Request::new(ResponseBody::bytes(body));
    *request.method_mut() = sub.method.clone();
    // The batch's scheme and authority (HTTP/2 carries them in the URI), the prefix, the URL.
    let mut uri = http::uri::Builder::new();
    if let (Some(scheme), Some(authority)) = (parts.uri.scheme(), parts.uri.authority()) {
        uri = uri.scheme(scheme.clone()).authority(authority.clone());
    }
    let path = format!("{prefix}{}", sub.url);
    *request.uri_mut() = uri
        .path_and_query(path.as_str())
        .build()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    // Only what a sub-request inherits: its caller, client address and deadline. Markers of
    // checks done on the batch (a content type, say) are not the sub-request's.
    let extensions = request.extensions_mut();
    if let Some(principal) = parts.extensions.get::<crate::Principal>() {
        extensions.insert(principal.clone());
    }
    if let Some(address) = parts.extensions.get::<crate::auth::ClientAddress>() {
        extensions.insert(*address);
    }
    if let Some(deadline) = parts.extensions.get::<crate::timeout::WriteDeadline>() {
        extensions.insert(deadline.clone());
    }
    extensions.insert(super::InBatch);
    let headers = request.headers_mut();
    for (name, value) in &sub.headers {
        headers.append(name.clone(), value.clone());
    }
    if !headers.contains_key(header::HOST)
        && let Some(host) = parts.headers.get(header::HOST)
    {
        headers.insert(header::HOST, host.clone());
    }
    let ids = RequestIds::generate(headers.get(CLIENT_REQUEST_ID).cloned());
    request.extensions_mut().insert(ids);
    request
}

async fn outcome<ResBody>(response: Response<ResBody>) -> Outcome
where
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let mut headers = Map::new();
    for name in KEPT_HEADERS {
        if let Some(value) = parts.headers.get(*name).and_then(|v| v.to_str().ok()) {
            headers.insert((*name).to_owned(), Value::String(value.to_owned()));
        }
    }
    let body = match body.collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            (!bytes.is_empty()).then(|| {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
            })
        }
        Err(_) => None,
    };
    Outcome {
        status: parts.status,
        headers,
        body,
    }
}

/// 424 for `sub` if one of the requests it depends on failed: answered 4xx or 5xx (Graph's
/// JSON batching: a request whose dependency fails fails with 424). A 304 to a conditional
/// read did not fail.
fn failed_dependency_of(sub: &Sub, subs: &[Sub], outcomes: &[Option<Outcome>]) -> Option<Outcome> {
    let failed = |o: &Outcome| o.status.is_client_error() || o.status.is_server_error();
    sub.depends_on
        .iter()
        .find(|&&d| outcomes[d].as_ref().is_some_and(failed))
        .map(|&failed| failed_dependency(&subs[failed].id))
}

fn failed_dependency(dependency: &str) -> Outcome {
    let error = GraphError::new(
        ErrorKind::FailedDependency,
        format!(
            "Request '{}', which this one depends on, failed; it was not run.",
            dependency.chars().take(64).collect::<String>()
        ),
    );
    // A sub-request of its own: its own request-id, in the header and in innerError.
    let ids = crate::request_id::RequestIds::generate(None);
    let mut headers = Map::new();
    headers.insert(
        "content-type".to_owned(),
        Value::String("application/json".to_owned()),
    );
    headers.insert(
        "request-id".to_owned(),
        Value::String(ids.request_id_str().to_owned()),
    );
    headers.insert(
        "client-request-id".to_owned(),
        Value::String(ids.client_request_id_str().to_owned()),
    );
    Outcome {
        status: StatusCode::FAILED_DEPENDENCY,
        headers,
        body: Some(json!({"error": {
            "code": error.code(),
            "message": error.message(),
            "innerError": {
                "date": crate::error::utc_timestamp(std::time::SystemTime::now()),
                "request-id": ids.request_id_str(),
                "client-request-id": ids.client_request_id_str(),
            }
        }})),
    }
}
