//! Turning a bearer token into a [`Principal`].

use std::future::{Future, Ready, ready};
use std::sync::Arc;

use super::Principal;

/// Why a token was refused; becomes `401` with `error="invalid_token"`.
///
/// The description is for the caller and must never contain the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRejection {
    description: std::borrow::Cow<'static, str>,
    reason: &'static str,
}

impl TokenRejection {
    /// A rejection with a description for the caller (never the token).
    pub fn new(description: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self {
            description: description.into(),
            reason: "invalid",
        }
    }

    /// Sets the short, fixed label of why (`expired`, `signature`, ...), for metrics.
    #[must_use]
    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }

    /// The short, fixed label of why (default `invalid`): safe as a metric label.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// What was wrong with the token.
    #[must_use]
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl std::fmt::Display for TokenRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl std::error::Error for TokenRejection {}

/// Validates bearer tokens for [`AuthLayer`](super::AuthLayer).
///
/// The future is `Unpin` (box any async work) so the layer can poll it once in place and skip
/// cloning the inner service when validation completes at once, which cached and static
/// validators always do.
pub trait TokenValidator: Send + Sync + 'static {
    /// The validation in progress.
    type Future: Future<Output = Result<Principal, TokenRejection>> + Send + Unpin + 'static;

    /// Validates `token` (the bytes after `Bearer `).
    fn validate(&self, token: &str) -> Self::Future;

    /// Whether `token` is known to be good without expensive work (a cached token): such a
    /// token passes a [`FailureThrottle`](crate::auth::FailureThrottle) that has run dry for
    /// its address. The default, `false`, throttles every token of a throttled address.
    fn is_known_good(&self, token: &str) -> bool {
        let _ = token;
        false
    }

    /// The principal of `token` when the validator knows the token good without any work
    /// (one it validated before, cached), else `None` (the default). `token` is the bytes
    /// after `Bearer `, its form not checked yet: [`Auth`](crate::auth::Auth) asks this
    /// first and checks the form of tokens it does not know (a token known good passed that
    /// check when it was validated), so a cached token costs a lookup, not a scan. A token
    /// found here passes a dry [`FailureThrottle`](crate::auth::FailureThrottle), as one
    /// [`is_known_good`](Self::is_known_good) says good does.
    fn cached(&self, token: &[u8]) -> Option<Principal> {
        let _ = token;
        None
    }
}

impl<V: TokenValidator> TokenValidator for Arc<V> {
    type Future = V::Future;

    fn validate(&self, token: &str) -> Self::Future {
        (**self).validate(token)
    }

    fn is_known_good(&self, token: &str) -> bool {
        (**self).is_known_good(token)
    }

    fn cached(&self, token: &[u8]) -> Option<Principal> {
        (**self).cached(token)
    }
}

/// A fixed table of tokens and the principals they stand for: for tests, demos and embedding
/// behind a gateway that already authenticated the caller.
///
/// Tokens are compared in constant time (for equal lengths), and every entry is compared, so
/// response timing says nothing about how much of a guess was right.
///
/// ```
/// use security_update::{Principal, StaticTokens};
///
/// let tokens = StaticTokens::new()
///     .with_token("alice-token", Principal::delegated("t", "a").with_scopes(["SecurityEvents.ReadWrite.All"]));
/// assert_eq!(tokens.len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct StaticTokens {
    entries: Arc<[(Box<[u8]>, Principal)]>,
}

impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the tokens themselves.
        f.debug_struct("StaticTokens")
            .field("len", &self.entries.len())
            .finish()
    }
}

impl StaticTokens {
    /// An empty table: every token is rejected.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `token`, standing for `principal`.
    #[must_use]
    pub fn with_token(self, token: &str, principal: Principal) -> Self {
        let mut entries: Vec<_> = self.entries.iter().cloned().collect();
        entries.push((token.as_bytes().into(), principal));
        Self {
            entries: entries.into(),
        }
    }

    /// How many tokens are known.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl TokenValidator for StaticTokens {
    type Future = Ready<Result<Principal, TokenRejection>>;

    fn validate(&self, token: &str) -> Self::Future {
        ready(
            self.lookup(token.as_bytes())
                .cloned()
                .ok_or_else(|| TokenRejection::new("the access token is not recognized")),
        )
    }

    /// A table lookup is no work worth throttling: known tokens always pass.
    fn is_known_good(&self, token: &str) -> bool {
        self.lookup(token.as_bytes()).is_some()
    }

    /// A table lookup is the whole of this validator's work: a token in the table is known
    /// good at no cost, once it has the form of a bearer token (`token68`), which
    /// [`Auth`](crate::auth::Auth) checks before it asks [`validate`](Self::validate).
    fn cached(&self, token: &[u8]) -> Option<Principal> {
        let principal = self.lookup(token)?;
        super::bearer::is_token68(token).then(|| principal.clone())
    }
}

impl StaticTokens {
    /// The principal `token` stands for. Every entry is compared, each in time that depends
    /// only on the lengths.
    fn lookup(&self, token: &[u8]) -> Option<&Principal> {
        let mut found = None;
        for (known, principal) in self.entries.iter() {
            if constant_time_eq(known, token) && found.is_none() {
                found = Some(principal);
            }
        }
        found
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_matches_only_equal_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[tokio::test]
    async fn static_tokens_map_tokens_to_principals() {
        let alice = Principal::delegated("t", "a");
        let tokens = StaticTokens::new()
            .with_token("one", alice.clone())
            .with_token("two", Principal::delegated("t", "b"));
        assert_eq!(tokens.validate("one").await.unwrap(), alice);
        assert_eq!(tokens.validate("two").await.unwrap().object_id(), "b");
        assert!(tokens.validate("three").await.is_err());
        assert!(!format!("{tokens:?}").contains("one"));
    }
}
