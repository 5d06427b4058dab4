//! [`JwtFuture`]: the answer of [`JwtValidator::validate`](super::JwtValidator): ready at once,
//! unless an unknown `kid` sends it to refetch the keys first.

use std::future::{Future, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::JwtValidator;
use crate::auth::{Principal, TokenRejection};

/// Why [`JwtValidator::verify`] did not produce a principal.
pub(super) enum Unverified {
    /// The `kid` is not among the keys: a refreshed JWKS might know it.
    UnknownKid,
    /// `nbf` is in the future: valid later, so never remembered as refused.
    NotYet(TokenRejection),
    Rejected(TokenRejection),
}

impl Unverified {
    pub(super) fn into_rejection(self) -> TokenRejection {
        match self {
            Self::UnknownKid => TokenRejection::new("the token's signing key (kid) is unknown")
                .with_reason("unknown_key"),
            Self::NotYet(rejection) | Self::Rejected(rejection) => rejection,
        }
    }
}

#[cold]
pub(super) fn reject(reason: &'static str, description: &'static str) -> Unverified {
    Unverified::Rejected(TokenRejection::new(description).with_reason(reason))
}

pub(super) type Verdict = Result<Principal, TokenRejection>;

/// The future of [`JwtValidator`]'s [`validate`](crate::TokenValidator::validate): ready at
/// once, unless an unknown `kid` sends it
/// to refresh the keys from their URL first.
pub struct JwtFuture {
    kind: JwtFutureKind,
}

enum JwtFutureKind {
    Ready(std::future::Ready<Verdict>),
    Refreshing(Pin<Box<dyn Future<Output = Verdict> + Send>>),
}

impl JwtFuture {
    pub(super) fn ready(verdict: Verdict) -> Self {
        Self {
            kind: JwtFutureKind::Ready(ready(verdict)),
        }
    }

    pub(super) fn refreshing(validator: JwtValidator, token: String) -> Self {
        Self {
            kind: JwtFutureKind::Refreshing(Box::pin(async move {
                validator.refresh_for_unknown_kid().await;
                let verdict = validator
                    .verify_and_remember(&token)
                    .map_err(Unverified::into_rejection);
                validator.observe(&verdict, false);
                verdict
            })),
        }
    }

    /// The verdict, if it needed no waiting (used by tests and synchronous callers).
    #[must_use]
    pub fn now(self) -> Option<Verdict> {
        match self.kind {
            JwtFutureKind::Ready(ready) => Some(ready.into_inner()),
            JwtFutureKind::Refreshing(_) => None,
        }
    }
}

impl std::fmt::Debug for JwtFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtFuture").finish_non_exhaustive()
    }
}

impl Future for JwtFuture {
    type Output = Verdict;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Verdict> {
        match &mut self.kind {
            JwtFutureKind::Ready(ready) => Pin::new(ready).poll(cx),
            JwtFutureKind::Refreshing(future) => future.as_mut().poll(cx),
        }
    }
}
