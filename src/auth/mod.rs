//! Bearer authentication: `Authorization: Bearer <token>` → a [`Principal`] in the request's
//! extensions, through a [`TokenValidator`].
//!
//! Failures follow RFC 6750 §3 and Graph:
//!
//! | request                                     | status | `WWW-Authenticate`                          |
//! |---------------------------------------------|--------|---------------------------------------------|
//! | no `Authorization`, or another scheme        | 401    | `Bearer realm="..."` (no `error`)           |
//! | `Bearer <token>` the validator refuses      | 401    | `Bearer realm="...", error="invalid_token", error_description="..."` |
//! | `Bearer` with an empty or malformed token    | 401    | `... error="invalid_token"`                 |
//! | `Authorization` sent twice                   | 400    | `... error="invalid_request"`               |
//!
//! The scheme is matched case-insensitively (`bearer` works); the token is passed on byte-exact.
//! Every error body is Graph's `InvalidAuthenticationToken` envelope.
//!
//! ```
//! use security_update::{AuthLayer, Principal, StaticTokens};
//! use tower::{service_fn, Layer, ServiceExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let tokens = StaticTokens::new().with_token("secret", Principal::delegated("t", "u"));
//! let svc = AuthLayer::new(tokens).layer(service_fn(|req: http::Request<()>| async move {
//!     let who = req.extensions().get::<Principal>().unwrap().object_id().to_owned();
//!     Ok::<_, std::convert::Infallible>(http::Response::new(who))
//! }));
//! let ok = http::Request::get("/").header("authorization", "Bearer secret").body(()).unwrap();
//! assert_eq!(svc.clone().oneshot(ok).await.unwrap().status(), 200);
//! let bad = http::Request::get("/").header("authorization", "Bearer guess").body(()).unwrap();
//! let response = svc.oneshot(bad).await.unwrap();
//! assert_eq!(response.status(), 401);
//! assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
//! # }
//! ```
//!
//! # Security considerations
//! Tokens never appear in errors, logs or `Debug` output from this crate. A missing principal
//! downstream is a 401 from [`SecurityUpdateService`](crate::SecurityUpdateService), so
//! forgetting this layer fails closed.

mod bearer;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod policy;
mod principal;
mod throttle;
mod validator;

#[cfg(feature = "jwt")]
pub use jwt::{EphemeralSigner, JwtValidator};

pub use policy::{Access, DefaultPolicy, GLOBAL_ADMINISTRATOR, Policy, SECURITY_ADMINISTRATOR};
pub use principal::{Principal, PrincipalKind};
pub use throttle::{ClientAddress, FailureThrottle};
pub use validator::{StaticTokens, TokenRejection, TokenValidator};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::{ResponseBody, polled_after_completion};
use crate::error::{ErrorKind, GraphError};
#[cfg(test)]
use bearer::bearer_token;
use bearer::{bearer_bytes, sanitize_quoted, token_text};

/// Authenticates bearer tokens; see the [module docs](self).
#[must_use]
#[derive(Debug)]
pub struct AuthLayer<V> {
    shared: Arc<Shared<V>>,
}

/// What every [`Auth`] of a layer holds, behind one `Arc`: a service is cloned for every
/// request (hyper-util's adapter does), and each `Arc` in it is two atomic instructions a
/// request, each ~6-9 ns here (`scripts/atomics.py`).
#[derive(Debug)]
struct Shared<V> {
    validator: Arc<V>,
    realm: Arc<str>,
    throttle: Option<Arc<FailureThrottle>>,
}

/// A copy to change (`Arc::make_mut`), without `V: Clone`: the validator stays shared.
impl<V> Clone for Shared<V> {
    fn clone(&self) -> Self {
        Self {
            validator: self.validator.clone(),
            realm: self.realm.clone(),
            throttle: self.throttle.clone(),
        }
    }
}

impl<V> Clone for AuthLayer<V> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<V: TokenValidator> AuthLayer<V> {
    /// Authenticates with `validator`, realm `security-update`.
    pub fn new(validator: V) -> Self {
        Self {
            shared: Arc::new(Shared {
                validator: Arc::new(validator),
                realm: Arc::from("security-update"),
                throttle: None,
            }),
        }
    }

    /// Throttles failed authentications per [`ClientAddress`]; see [`FailureThrottle`].
    pub fn with_failure_throttle(mut self, throttle: FailureThrottle) -> Self {
        Arc::make_mut(&mut self.shared).throttle = Some(Arc::new(throttle));
        self
    }

    /// Sets the realm named in `WWW-Authenticate` (quotes and backslashes are dropped).
    pub fn with_realm(mut self, realm: &str) -> Self {
        Arc::make_mut(&mut self.shared).realm = Arc::from(sanitize_quoted(realm));
        self
    }
}

impl<S, V> Layer<S> for AuthLayer<V> {
    type Service = Auth<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[must_use]
#[derive(Debug)]
pub struct Auth<S, V> {
    inner: S,
    shared: Arc<Shared<V>>,
}

impl<S: Clone, V> Clone for Auth<S, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, V> Auth<S, V> {
    crate::macros::inner_service_accessors!();
}

impl<S, V: TokenValidator> Auth<S, V> {
    /// The principal of the request with `headers` when its bearer token is one the validator
    /// knows good at no cost ([`TokenValidator::cached`]): the request this service would let
    /// straight in, as [`call`](Service::call) does first. `None` for any other request, which
    /// this service must see.
    pub(crate) fn cached_principal(&self, headers: &http::HeaderMap) -> Option<Principal> {
        let token = bearer_bytes(headers).ok()?;
        self.shared.validator.cached(token)
    }
}

impl<S, V, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S, V>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    V: TokenValidator,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, S::Future, V::Future, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let token = match bearer_bytes(request.headers()) {
            Ok(token) => token,
            Err(failure) => return self.reject(failure.into_error(&self.shared.realm), &request),
        };
        // A token the validator knows good (validated before, cached) is let in before its
        // form is checked: it passed that check when it was validated, and the check is a
        // scan of every byte of a ~1 KB token.
        if let Some(principal) = self.shared.validator.cached(token) {
            request.extensions_mut().insert(principal);
            return ResponseFuture::inner(self.inner.call(request));
        }
        let token = match token_text(token) {
            Ok(token) => token,
            Err(failure) => return self.reject(failure.into_error(&self.shared.realm), &request),
        };
        // Failures are counted per client address; a dry address gets 429 without its token
        // being checked, unless the validator knows the token good at no cost.
        let throttled = match (
            &self.shared.throttle,
            request.extensions().get::<ClientAddress>(),
        ) {
            (Some(throttle), Some(&ClientAddress(address))) => Some((throttle.clone(), address)),
            _ => None,
        };
        if let Some((throttle, address)) = &throttled
            && let Some(seconds) = throttle.retry_after(*address)
            && !self.shared.validator.is_known_good(token)
        {
            let error = GraphError::new(
                ErrorKind::TooManyRequests,
                "Too many failed authentications from this address; retry later with a valid token.",
            )
            .with_retry_after(seconds);
            return self.reject(error, &request);
        }
        let mut validation = self.shared.validator.validate(token);
        // Static and cached validators are ready at once: finish here and call the inner
        // service directly, with no clone. A future polled with a no-op waker and found pending
        // registers the real waker on its next poll, so handing it on below is sound.
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut validation).poll(&mut cx) {
            Poll::Ready(Ok(principal)) => {
                request.extensions_mut().insert(principal);
                ResponseFuture::inner(self.inner.call(request))
            }
            Poll::Ready(Err(rejection)) => {
                if let Some((throttle, address)) = &throttled {
                    throttle.record_failure(*address);
                }
                let error = AuthFailure::Rejected(rejection).into_error(&self.shared.realm);
                self.reject(error, &request)
            }
            Poll::Pending => {
                // The future calls the inner service later, so it takes the service that was
                // polled ready and leaves a clone here. See "Be careful when cloning inner
                // services" in tower-service's docs (`tower-service/src/lib.rs`).
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    state: State::Validating {
                        validating: Box::new(Validating {
                            validation,
                            inner: Some(inner),
                            request: Some(request),
                            realm: self.shared.realm.clone(),
                            throttled,
                        }),
                    },
                }
            }
        }
    }
}

impl<S, V> Auth<S, V> {
    #[cold]
    fn reject<F, Fut, B>(
        &self,
        error: GraphError,
        request: &Request<B>,
    ) -> ResponseFuture<S, F, Fut, B> {
        ResponseFuture {
            state: State::Rejected {
                response: Some(error.into_refusal(request)),
            },
        }
    }
}

pin_project! {
    /// Response future of [`Auth`].
    pub struct ResponseFuture<S, F, Fut, B> {
        #[pin]
        state: State<S, F, Fut, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, Fut, B> {
        // Boxed: only a token not yet known good waits here, and its check costs far more than
        // an allocation; inline, the request and the service (~350 bytes) made this future,
        // and every outer layer's around it, that much bigger, copied at each move.
        Validating { validating: Box<Validating<S, Fut, B>> },
        Inner { #[pin] future: F },
        Rejected { response: Option<Response<Full<Bytes>>> },
    }
}

/// A request whose token is being checked.
struct Validating<S, Fut, B> {
    validation: Fut,
    inner: Option<S>,
    request: Option<Request<B>>,
    realm: Arc<str>,
    throttled: Option<(Arc<FailureThrottle>, std::net::IpAddr)>,
}

impl<S, F, Fut, B> ResponseFuture<S, F, Fut, B> {
    fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
        }
    }
}

impl<S, F, Fut, B> std::fmt::Debug for ResponseFuture<S, F, Fut, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, Fut, B, ResBody> Future for ResponseFuture<S, S::Future, Fut, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    Fut: Future<Output = Result<Principal, TokenRejection>> + Unpin,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut state = self.as_mut().project().state;
            let next = match state.as_mut().project() {
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Rejected { response } => {
                    let response = response.take().unwrap_or_else(polled_after_completion);
                    return Poll::Ready(Ok(response.map(ResponseBody::error)));
                }
                StateProj::Validating { validating } => {
                    let Validating {
                        validation,
                        inner,
                        request,
                        realm,
                        throttled,
                    } = &mut **validating;
                    let outcome = ready!(Pin::new(validation).poll(cx));
                    let (Some(mut inner), Some(mut request)) = (inner.take(), request.take())
                    else {
                        return Poll::Ready(Ok(polled_after_completion().map(ResponseBody::error)));
                    };
                    match outcome {
                        Ok(principal) => {
                            request.extensions_mut().insert(principal);
                            State::Inner {
                                future: inner.call(request),
                            }
                        }
                        Err(rejection) => {
                            if let Some((throttle, address)) = throttled {
                                throttle.record_failure(*address);
                            }
                            let error = AuthFailure::Rejected(rejection).into_error(realm);
                            State::Rejected {
                                response: Some(error.into_refusal(&request)),
                            }
                        }
                    }
                }
            };
            state.set(next);
        }
    }
}

/// Why a request did not get as far as a principal.
#[derive(Debug)]
enum AuthFailure {
    /// No bearer credentials at all (RFC 6750: no `error` parameter).
    Missing(&'static str),
    /// The credentials are not a well-formed bearer token.
    Malformed(&'static str),
    /// `Authorization` was sent more than once.
    Ambiguous,
    /// The validator refused the token.
    Rejected(TokenRejection),
}

impl AuthFailure {
    #[cold]
    fn into_error(self, realm: &str) -> GraphError {
        let (kind, message, error, description): (_, std::borrow::Cow<'static, str>, _, _) =
            match self {
                Self::Missing(message) => (ErrorKind::MissingToken, message.into(), None, None),
                Self::Malformed(message) => (
                    ErrorKind::InvalidToken,
                    message.into(),
                    Some("invalid_token"),
                    Some(message.to_owned()),
                ),
                Self::Ambiguous => (
                    ErrorKind::InvalidAuthorizationRequest,
                    "the Authorization header is sent more than once".into(),
                    Some("invalid_request"),
                    None,
                ),
                Self::Rejected(rejection) => {
                    let description = rejection.description().to_owned();
                    (
                        ErrorKind::InvalidToken,
                        format!("Access token validation failure: {description}").into(),
                        Some("invalid_token"),
                        Some(description),
                    )
                }
            };
        let mut challenge = format!("Bearer realm=\"{realm}\"");
        if let Some(error) = error {
            challenge.push_str(&format!(", error=\"{error}\""));
        }
        if let Some(description) = description {
            let description = sanitize_quoted(&description);
            challenge.push_str(&format!(", error_description=\"{description}\""));
        }
        let challenge =
            HeaderValue::try_from(challenge).unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        GraphError::new(kind, message).with_challenge(challenge)
    }
}

#[cfg(test)]
mod tests;
