//! [`JwtValidator`]: Microsoft identity platform access tokens, checked against a JWKS.
//!
//! A token is accepted only if all of these hold; each failure is a 401 `invalid_token` whose
//! description says which (never echoing the token):
//!
//! - it is a well-formed JWS whose header `alg` is in the allow-list (RS256, ES256): `none`
//!   and every HMAC algorithm are refused before any key is touched;
//! - its `kid` names a key of the JWKS, and that key's algorithm is the header's (JWKS keys from
//!   Entra carry no `alg`; ours is decided by the key type, never by the token) — so a token
//!   "signed" with the public key as an HMAC secret never meets a key that would verify it;
//! - the signature verifies;
//! - `exp` and `nbf` hold, give or take a small leeway (60 s by default);
//! - `iss` and `aud` are present and among the configured ones;
//! - it names a tenant (`tid`) and an object (`oid`).
//!
//! `scp` makes a delegated [`Principal`], otherwise `roles` an application one.
//!
//! Each token's signature is checked once: the principal is then cached by token until the
//! token expires, in a bounded cache that is emptied whenever the keys change.

mod cache;
mod claims;
mod future;
mod keys;
mod rejections;
#[cfg(feature = "jwks-url")]
mod remote;
mod signer;
#[cfg(test)]
mod tests;

pub use future::JwtFuture;
pub use jsonwebtoken::jwk::JwkSet;
#[cfg(feature = "jwks-url")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks-url")))]
pub use remote::JwksRefresh;
pub use signer::EphemeralSigner;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Validation};

use super::{Principal, TokenRejection, TokenValidator};
use cache::TokenCache;
use claims::{Claims, describe};
use future::{Unverified, reject};
use keys::KeySet;
use rejections::RejectionCache;

/// Default clock skew allowed on `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Default number of validated tokens remembered.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// A JWKS, issuer or audience configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfigError {
    message: String,
}

impl std::fmt::Display for JwtConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JwtConfigError {}

fn config_error(message: impl Into<String>) -> JwtConfigError {
    JwtConfigError {
        message: message.into(),
    }
}

/// Validates JWT access tokens; see the [module docs](self).
///
/// ```
/// use security_update::auth::JwtValidator;
///
/// let jwks = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1",
///   "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
///   "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
/// let validator = JwtValidator::from_jwks_json(jwks, ["https://issuer.example/"], ["api://security"])?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct JwtValidator {
    shared: Arc<Shared>,
}

struct Shared {
    keys: RwLock<Arc<KeySet>>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway_secs: AtomicU64,
    cache: TokenCache,
    /// Tokens recently refused for good.
    rejections: RejectionCache,
    /// Where fresh keys come from, if anywhere (a JWKS URL).
    source: Option<Refetch>,
    /// Told of every token outcome, once set.
    observer: std::sync::OnceLock<crate::observe::SharedObserver>,
}

/// A source of fresh keys, such as a JWKS URL (feature `jwks-url`).
pub(crate) trait KeySource: Send + Sync + 'static {
    /// Fetches the current key set.
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<JwkSet, JwtConfigError>> + Send + '_>>;
}

/// A key source, and the rate limit on refetches caused by unknown `kid`s, so that tokens with
/// made-up `kid`s cannot make us hammer the identity provider.
struct Refetch {
    source: Box<dyn KeySource>,
    min_refetch: Duration,
    /// When the last unknown-`kid` refetch started; the lock also makes concurrent requests
    /// with the new `kid` wait for one fetch instead of starting their own.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtValidator")
            .field("kids", &self.keys().kids())
            .field("issuers", &self.shared.issuers)
            .field("audiences", &self.shared.audiences)
            .field("leeway_secs", &self.leeway_secs())
            .finish_non_exhaustive()
    }
}

impl JwtValidator {
    /// A validator for tokens signed by `jwks` keys, issued by one of `issuers` for one of
    /// `audiences`.
    ///
    /// # Errors
    /// When the JWKS has no usable key, or no issuer or audience is given.
    pub fn new(
        jwks: &JwkSet,
        issuers: impl IntoIterator<Item = impl Into<String>>,
        audiences: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, JwtConfigError> {
        Self::build(jwks, issuers, audiences, None)
    }

    fn build(
        jwks: &JwkSet,
        issuers: impl IntoIterator<Item = impl Into<String>>,
        audiences: impl IntoIterator<Item = impl Into<String>>,
        source: Option<Refetch>,
    ) -> Result<Self, JwtConfigError> {
        let issuers: Vec<String> = issuers.into_iter().map(Into::into).collect();
        let audiences: Vec<String> = audiences.into_iter().map(Into::into).collect();
        if issuers.is_empty() || audiences.is_empty() {
            return Err(config_error("an issuer and an audience are required"));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                keys: RwLock::new(Arc::new(KeySet::from_jwks(jwks)?)),
                issuers,
                audiences,
                leeway_secs: AtomicU64::new(DEFAULT_LEEWAY.as_secs()),
                cache: TokenCache::new(DEFAULT_CACHE_CAPACITY),
                rejections: RejectionCache::new(),
                source,
                observer: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Like [`new`](Self::new), from a JWKS document's JSON text.
    ///
    /// # Errors
    /// When the text is not a JWKS, or as for [`new`](Self::new).
    pub fn from_jwks_json(
        json: &str,
        issuers: impl IntoIterator<Item = impl Into<String>>,
        audiences: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, JwtConfigError> {
        let jwks: JwkSet = serde_json::from_str(json)
            .map_err(|e| config_error(format!("not a JWKS document: {e}")))?;
        Self::new(&jwks, issuers, audiences)
    }

    /// Sets the clock skew allowed on `exp` and `nbf` (whole seconds), for this validator and
    /// its clones.
    #[must_use]
    pub fn with_leeway(self, leeway: Duration) -> Self {
        self.shared
            .leeway_secs
            .store(leeway.as_secs(), Ordering::Relaxed);
        self
    }

    /// Sets how many validated tokens are remembered (0 disables the cache), for this
    /// validator and its clones.
    #[must_use]
    pub fn with_cache_capacity(self, capacity: usize) -> Self {
        self.shared
            .cache
            .capacity
            .store(capacity, Ordering::Relaxed);
        self.shared.cache.clear();
        self
    }

    /// Reports every token outcome (cache hit, verified, rejected and why) to `observer`, for
    /// this validator and its clones. Only the first observer set is kept.
    #[must_use]
    pub fn with_observer(self, observer: crate::observe::SharedObserver) -> Self {
        let _ = self.shared.observer.set(observer);
        self
    }

    fn observe(&self, verdict: &Result<Principal, TokenRejection>, cached: bool) {
        use crate::observe::TokenOutcome;
        if let Some(observer) = self.shared.observer.get() {
            observer.token(match verdict {
                Ok(_) if cached => TokenOutcome::CacheHit,
                Ok(_) => TokenOutcome::Verified,
                Err(rejection) => TokenOutcome::Rejected {
                    reason: rejection.reason(),
                },
            });
        }
    }

    fn leeway_secs(&self) -> u64 {
        self.shared.leeway_secs.load(Ordering::Relaxed)
    }

    /// Replaces the keys (a JWKS refresh) and forgets every cached token.
    ///
    /// # Errors
    /// When the new JWKS has no usable key; the old keys then stay.
    pub fn replace_keys(&self, jwks: &JwkSet) -> Result<(), JwtConfigError> {
        let keys = Arc::new(KeySet::from_jwks(jwks)?);
        *self
            .shared
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        // After the swap: an insert that checked the old keys under the cache lock is cleared
        // here; one that checks after the swap sees new keys and skips.
        self.shared.cache.clear();
        self.shared.rejections.clear();
        Ok(())
    }

    /// Fetches the keys from their source (a JWKS URL) now and replaces them (and forgets
    /// cached tokens).
    ///
    /// # Errors
    /// When this validator's keys have no source, or the fetch fails; the old keys then stay.
    pub async fn refresh(&self) -> Result<(), JwtConfigError> {
        let Some(refetch) = &self.shared.source else {
            return Err(config_error("this validator's keys do not come from a URL"));
        };
        let jwks = refetch.source.fetch().await?;
        self.replace_keys(&jwks)
    }

    /// Called with a token whose `kid` is unknown: refetch, unless one was done too recently.
    pub(crate) async fn refresh_for_unknown_kid(&self) {
        let Some(refetch) = &self.shared.source else {
            return;
        };
        let mut last = refetch.last_refetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < refetch.min_refetch) {
            return;
        }
        *last = Some(Instant::now());
        // A failed refetch keeps the old keys; the token is then refused as unknown.
        let _ = self.refresh().await;
    }

    fn keys(&self) -> Arc<KeySet> {
        self.shared
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Validates `token` fully (no cache), returning the principal, its expiry and not-before,
    /// and the key set that verified it.
    fn verify(&self, token: &str) -> Result<(Principal, u64, u64, Arc<KeySet>), Unverified> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| reject("malformed", "the token is not a well-formed JWT"))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(Unverified::Rejected(
                TokenRejection::new(format!(
                    "the token's algorithm {:?} is not accepted",
                    header.alg
                ))
                .with_reason("algorithm"),
            ));
        }
        let kid = header
            .kid
            .ok_or_else(|| reject("malformed", "the token names no signing key (kid)"))?;
        let keys = self.keys();
        let (algorithm, key) = keys.keys.get(&kid).ok_or(Unverified::UnknownKid)?;
        if *algorithm != header.alg {
            return Err(reject(
                "algorithm",
                "the token's algorithm does not match its signing key",
            ));
        }
        let mut validation = Validation::new(*algorithm);
        validation.leeway = self.leeway_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&self.shared.issuers);
        validation.set_audience(&self.shared.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ImmatureSignature) {
                Unverified::NotYet(describe(e))
            } else {
                Unverified::Rejected(describe(e))
            }
        })?;
        let claims = data.claims;
        let exp = claims.exp;
        let nbf = claims.nbf.unwrap_or(0);
        let principal = claims
            .into_principal()
            .map_err(|rejection| Unverified::Rejected(rejection.with_reason("claims")))?;
        Ok((principal, exp, nbf, keys))
    }

    /// Verifies and caches; the final answer for a token whose key is known.
    fn verify_and_remember(&self, token: &str) -> Result<Principal, Unverified> {
        self.verify(token).map(|(principal, exp, nbf, keys)| {
            // Cache only if those keys are still current: a token verified by a key that was
            // rotated out meanwhile must not outlive the rotation in the cache.
            self.shared
                .cache
                .insert_if(token, &principal, exp, nbf, || {
                    Arc::ptr_eq(&keys, &self.keys())
                });
            principal
        })
    }
}

impl TokenValidator for JwtValidator {
    type Future = JwtFuture;

    fn validate(&self, token: &str) -> Self::Future {
        let now = unix_now();
        if let Some(principal) = self
            .shared
            .cache
            .get(token.as_bytes(), now, self.leeway_secs())
        {
            let verdict = Ok(principal);
            self.observe(&verdict, true);
            return JwtFuture::ready(verdict);
        }
        if let Some(rejection) = self.shared.rejections.get(token) {
            let verdict = Err(rejection);
            self.observe(&verdict, true);
            return JwtFuture::ready(verdict);
        }
        let keys = self.keys();
        let verdict = match self.verify_and_remember(token) {
            Ok(principal) => Ok(principal),
            Err(Unverified::UnknownKid) if self.shared.source.is_some() => {
                return JwtFuture::refreshing(self.clone(), token.to_owned());
            }
            Err(Unverified::Rejected(rejection)) => {
                self.shared
                    .rejections
                    .insert_if(token, &rejection, || Arc::ptr_eq(&keys, &self.keys()));
                Err(rejection)
            }
            Err(unverified) => Err(unverified.into_rejection()),
        };
        self.observe(&verdict, false);
        JwtFuture::ready(verdict)
    }

    /// A token in the principal cache, still within its lifetime.
    fn is_known_good(&self, token: &str) -> bool {
        self.shared
            .cache
            .get(token.as_bytes(), unix_now(), self.leeway_secs())
            .is_some()
    }

    /// A token in the principal cache, still within its lifetime: it was a `token68` and a
    /// JWT this validator verified.
    fn cached(&self, token: &[u8]) -> Option<Principal> {
        let principal = self
            .shared
            .cache
            .get(token, unix_now(), self.leeway_secs())?;
        let verdict = Ok(principal);
        self.observe(&verdict, true);
        verdict.ok()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
