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

use std::collections::HashMap;
use std::future::{Future, ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

#[cfg(feature = "jwks-url")]
mod remote;
#[cfg(feature = "jwks-url")]
pub use remote::JwksRefresh;

use super::{Principal, TokenRejection, TokenValidator};

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
    #[cfg(feature = "jwks-url")]
    remote: Option<remote::Remote>,
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

/// Verification keys by `kid`, each with the one algorithm it verifies.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
}

impl KeySet {
    fn from_jwks(jwks: &JwkSet) -> Result<Self, JwtConfigError> {
        let mut keys = HashMap::new();
        for jwk in &jwks.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let by_type = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Some(Algorithm::ES256)
                }
                _ => None,
            };
            let algorithm = match (jwk.common.key_algorithm, by_type) {
                (None, Some(alg)) => alg,
                (Some(KeyAlgorithm::RS256), Some(Algorithm::RS256)) => Algorithm::RS256,
                (Some(KeyAlgorithm::ES256), Some(Algorithm::ES256)) => Algorithm::ES256,
                // Symmetric keys, other curves and algorithms are never trusted.
                _ => continue,
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| config_error(format!("JWKS key {kid:?} is unusable: {e}")))?;
            keys.insert(kid, (algorithm, key));
        }
        if keys.is_empty() {
            return Err(config_error(
                "the JWKS has no RS256 or ES256 signing key with a kid",
            ));
        }
        Ok(Self { keys })
    }

    fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<_> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
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
        Self::build(
            jwks,
            issuers,
            audiences,
            #[cfg(feature = "jwks-url")]
            None,
        )
    }

    fn build(
        jwks: &JwkSet,
        issuers: impl IntoIterator<Item = impl Into<String>>,
        audiences: impl IntoIterator<Item = impl Into<String>>,
        #[cfg(feature = "jwks-url")] remote: Option<remote::Remote>,
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
                #[cfg(feature = "jwks-url")]
                remote,
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
    pub fn with_leeway(self, leeway: Duration) -> Self {
        self.shared
            .leeway_secs
            .store(leeway.as_secs(), Ordering::Relaxed);
        self
    }

    /// Sets how many validated tokens are remembered (0 disables the cache), for this
    /// validator and its clones.
    pub fn with_cache_capacity(self, capacity: usize) -> Self {
        self.shared
            .cache
            .capacity
            .store(capacity, Ordering::Relaxed);
        self.shared.cache.clear();
        self
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
        *self.shared.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        // After the swap: an insert that checked the old keys under the cache lock is cleared
        // here; one that checks after the swap sees new keys and skips.
        self.shared.cache.clear();
        Ok(())
    }

    fn keys(&self) -> Arc<KeySet> {
        self.shared
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Validates `token` fully (no cache), returning the principal, its expiry and not-before,
    /// and the key set that verified it.
    fn verify(&self, token: &str) -> Result<(Principal, u64, u64, Arc<KeySet>), Unverified> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| reject("the token is not a well-formed JWT"))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(Unverified::Rejected(TokenRejection::new(format!(
                "the token's algorithm {:?} is not accepted",
                header.alg
            ))));
        }
        let kid = header
            .kid
            .ok_or_else(|| reject("the token names no signing key (kid)"))?;
        let keys = self.keys();
        let (algorithm, key) = keys.keys.get(&kid).ok_or(Unverified::UnknownKid)?;
        if *algorithm != header.alg {
            return Err(reject(
                "the token's algorithm does not match its signing key",
            ));
        }
        let mut validation = Validation::new(*algorithm);
        validation.leeway = self.leeway_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&self.shared.issuers);
        validation.set_audience(&self.shared.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| Unverified::Rejected(describe(e)))?;
        let claims = data.claims;
        let exp = claims.exp;
        let nbf = claims.nbf.unwrap_or(0);
        let principal = claims.into_principal().map_err(Unverified::Rejected)?;
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

/// Why [`JwtValidator::verify`] did not produce a principal.
enum Unverified {
    /// The `kid` is not among the keys: a refreshed JWKS might know it.
    UnknownKid,
    Rejected(TokenRejection),
}

impl Unverified {
    fn into_rejection(self) -> TokenRejection {
        match self {
            Self::UnknownKid => TokenRejection::new("the token's signing key (kid) is unknown"),
            Self::Rejected(rejection) => rejection,
        }
    }
}

fn reject(description: &'static str) -> Unverified {
    Unverified::Rejected(TokenRejection::new(description))
}

fn describe(error: jsonwebtoken::errors::Error) -> TokenRejection {
    use jsonwebtoken::errors::ErrorKind as Kind;
    TokenRejection::new(match error.kind() {
        Kind::ExpiredSignature => "the token has expired",
        Kind::ImmatureSignature => "the token is not valid yet",
        Kind::InvalidAudience => "the token is for another audience",
        Kind::InvalidIssuer => "the token is from another issuer",
        Kind::InvalidSignature => "the token's signature is invalid",
        Kind::MissingRequiredClaim(_) => "the token lacks a required claim (exp, iss, aud)",
        Kind::InvalidAlgorithm => "the token's algorithm does not match its signing key",
        _ => "the token is not a well-formed JWT",
    })
}

impl TokenValidator for JwtValidator {
    type Future = JwtFuture;

    fn validate(&self, token: &str) -> Self::Future {
        let now = unix_now();
        if let Some(principal) = self.shared.cache.get(token, now, self.leeway_secs()) {
            return JwtFuture::ready(Ok(principal));
        }
        match self.verify_and_remember(token) {
            Ok(principal) => JwtFuture::ready(Ok(principal)),
            #[cfg(feature = "jwks-url")]
            Err(Unverified::UnknownKid) if self.shared.remote.is_some() => {
                JwtFuture::refreshing(self.clone(), token.to_owned())
            }
            Err(unverified) => JwtFuture::ready(Err(unverified.into_rejection())),
        }
    }
}

type Verdict = Result<Principal, TokenRejection>;

/// The future of [`JwtValidator::validate`]: ready at once, unless an unknown `kid` sends it
/// to refresh the keys from their URL first.
pub struct JwtFuture {
    kind: JwtFutureKind,
}

enum JwtFutureKind {
    Ready(std::future::Ready<Verdict>),
    #[cfg(feature = "jwks-url")]
    Refreshing(Pin<Box<dyn Future<Output = Verdict> + Send>>),
}

impl JwtFuture {
    fn ready(verdict: Verdict) -> Self {
        Self {
            kind: JwtFutureKind::Ready(ready(verdict)),
        }
    }

    #[cfg(feature = "jwks-url")]
    fn refreshing(validator: JwtValidator, token: String) -> Self {
        Self {
            kind: JwtFutureKind::Refreshing(Box::pin(async move {
                validator.refresh_for_unknown_kid().await;
                validator
                    .verify_and_remember(&token)
                    .map_err(Unverified::into_rejection)
            })),
        }
    }

    /// The verdict, if it needed no waiting (used by tests and synchronous callers).
    pub fn now(self) -> Option<Verdict> {
        match self.kind {
            JwtFutureKind::Ready(ready) => Some(ready.into_inner()),
            #[cfg(feature = "jwks-url")]
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
            #[cfg(feature = "jwks-url")]
            JwtFutureKind::Refreshing(future) => future.as_mut().poll(cx),
        }
    }
}

/// The claims we read from an access token.
#[derive(Deserialize)]
struct Claims {
    exp: u64,
    nbf: Option<u64>,
    tid: Option<String>,
    oid: Option<String>,
    scp: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    wids: Vec<String>,
    upn: Option<String>,
    preferred_username: Option<String>,
    appid: Option<String>,
    azp: Option<String>,
}

impl Claims {
    fn into_principal(self) -> Result<Principal, TokenRejection> {
        let (Some(tid), Some(oid)) = (self.tid, self.oid) else {
            return Err(TokenRejection::new(
                "the token names no tenant (tid) or object (oid)",
            ));
        };
        let mut principal = match self.scp {
            Some(scp) => Principal::delegated(&tid, &oid)
                .with_scopes(scp.split(' ').filter(|s| !s.is_empty()))
                .with_role_template_ids(&self.wids),
            None => Principal::application(&tid, &oid).with_roles(&self.roles),
        };
        if let Some(upn) = self.upn.or(self.preferred_username) {
            principal = principal.with_upn(&upn);
        }
        if let Some(app_id) = self.appid.or(self.azp) {
            principal = principal.with_app_id(&app_id);
        }
        Ok(principal)
    }
}

/// Principals of validated tokens, until each token expires. Bounded: when full, expired
/// entries go first, then everything (the next request for each token re-verifies it).
struct TokenCache {
    capacity: AtomicUsize,
    /// Entries by a keyed hash of the token's last 64 bytes (inside the signature, so as
    /// varied as a hash needs); each entry keeps the whole token and is compared in full.
    /// SipHash over a whole 1-2 KB token on every request cost more than everything else in
    /// the lookup. Only verified tokens are inserted, so nobody can fill a bucket at will.
    entries: RwLock<HashMap<u64, Vec<Cached>>>,
    hasher: std::collections::hash_map::RandomState,
    len: AtomicUsize,
}

struct Cached {
    token: Box<str>,
    principal: Principal,
    exp: u64,
    nbf: u64,
}

impl TokenCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: AtomicUsize::new(capacity),
            entries: RwLock::new(HashMap::new()),
            hasher: std::collections::hash_map::RandomState::new(),
            len: AtomicUsize::new(0),
        }
    }

    fn bucket_of(&self, token: &str) -> u64 {
        use std::hash::BuildHasher;
        let bytes = token.as_bytes();
        self.hasher
            .hash_one(&bytes[bytes.len().saturating_sub(64)..])
    }

    fn get(&self, token: &str, now: u64, leeway: u64) -> Option<Principal> {
        if self.capacity.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let bucket = self.bucket_of(token);
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let cached = entries.get(&bucket)?.iter().find(|c| &*c.token == token)?;
        let valid =
            now < cached.exp.saturating_add(leeway) && now.saturating_add(leeway) >= cached.nbf;
        valid.then(|| cached.principal.clone())
    }

    /// Inserts unless `still_valid`, checked under the cache lock, says no.
    fn insert_if(
        &self,
        token: &str,
        principal: &Principal,
        exp: u64,
        nbf: u64,
        still_valid: impl FnOnce() -> bool,
    ) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        if capacity == 0 {
            return;
        }
        let bucket = self.bucket_of(token);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if !still_valid() {
            return;
        }
        if self.len.load(Ordering::Relaxed) >= capacity {
            let now = unix_now();
            entries.retain(|_, cached| {
                cached.retain(|c| c.exp > now);
                !cached.is_empty()
            });
            let mut len: usize = entries.values().map(Vec::len).sum();
            if len >= capacity {
                entries.clear();
                len = 0;
            }
            self.len.store(len, Ordering::Relaxed);
        }
        let slot = entries.entry(bucket).or_default();
        if let Some(existing) = slot.iter_mut().find(|c| &*c.token == token) {
            existing.exp = exp;
            existing.nbf = nbf;
            existing.principal = principal.clone();
            return;
        }
        slot.push(Cached {
            token: token.into(),
            principal: principal.clone(),
            exp,
            nbf,
        });
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.len.store(0, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An ES256 signing key made fresh in memory, with the JWKS that verifies it: for dev mode
/// and tests. The private key never leaves the process.
pub struct EphemeralSigner {
    kid: String,
    key: jsonwebtoken::EncodingKey,
    jwks: JwkSet,
}

impl std::fmt::Debug for EphemeralSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl EphemeralSigner {
    /// A new P-256 key from the operating system's random source.
    ///
    /// # Errors
    /// When the OS has no random source.
    pub fn generate() -> Result<Self, JwtConfigError> {
        // PKCS#8 wrapping of a SEC1 P-256 private key without the optional public key:
        // the fixed prefix, then the 32-byte scalar.
        const PREFIX: [u8; 35] = [
            0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
            0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27,
            0x30, 0x25, 0x02, 0x01, 0x01, 0x04, 0x20,
        ];
        for _ in 0..16 {
            let mut der = PREFIX.to_vec();
            let mut scalar = [0u8; 32];
            getrandom::fill(&mut scalar)
                .map_err(|e| config_error(format!("no randomness: {e}")))?;
            der.extend_from_slice(&scalar);
            let key = jsonwebtoken::EncodingKey::from_ec_der(&der);
            // A scalar of zero or above the group order is refused here; draw again.
            let Ok(mut jwk) = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::ES256)
            else {
                continue;
            };
            let mut kid_bytes = [0u8; 8];
            getrandom::fill(&mut kid_bytes)
                .map_err(|e| config_error(format!("no randomness: {e}")))?;
            let kid: String = kid_bytes.iter().map(|b| format!("{b:02x}")).collect();
            jwk.common.key_id = Some(kid.clone());
            return Ok(Self {
                kid,
                key,
                jwks: JwkSet { keys: vec![jwk] },
            });
        }
        Err(config_error("could not draw a valid P-256 key"))
    }

    /// The JWKS that verifies this signer's tokens.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Signs `claims` (a JSON object) as an ES256 JWT with this key's `kid`.
    ///
    /// # Errors
    /// When signing fails.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, JwtConfigError> {
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| config_error(format!("signing failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://login.microsoftonline.com/t/v2.0";
    const AUD: &str = "api://security-update";

    fn claims(extra: serde_json::Value) -> serde_json::Value {
        let now = unix_now();
        let mut base = json!({
            "iss": ISS, "aud": AUD, "exp": now + 600, "nbf": now - 10, "iat": now - 10,
            "tid": "t", "oid": "o", "scp": "SecurityEvents.ReadWrite.All User.Read",
            "upn": "u@example.com", "wids": ["w"],
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base
    }

    fn setup() -> (EphemeralSigner, JwtValidator) {
        let signer = EphemeralSigner::generate().unwrap();
        let validator = JwtValidator::new(signer.jwks(), [ISS], [AUD]).unwrap();
        (signer, validator)
    }

    fn check(validator: &JwtValidator, token: &str) -> Result<Principal, String> {
        validator
            .validate(token)
            .now()
            .expect("a file-based validator answers at once")
            .map_err(|r| r.description().to_owned())
    }

    #[test]
    fn a_good_token_becomes_a_delegated_principal() {
        let (signer, validator) = setup();
        let principal = check(&validator, &signer.sign(&claims(json!({}))).unwrap()).unwrap();
        assert_eq!(principal.tenant_id(), "t");
        assert_eq!(principal.object_id(), "o");
        assert_eq!(principal.upn(), Some("u@example.com"));
        assert!(principal.has_permission("SecurityEvents.ReadWrite.All"));
        assert!(principal.has_role_template("w"));
    }

    #[test]
    fn roles_without_scp_make_an_application() {
        let (signer, validator) = setup();
        let token = signer
            .sign(&claims(
                json!({"scp": null, "roles": ["SecurityEvents.ReadWrite.All"], "appid": "a"}),
            ))
            .unwrap();
        let principal = check(&validator, &token).unwrap();
        assert_eq!(principal.kind(), super::super::PrincipalKind::Application);
        assert_eq!(principal.app_id(), Some("a"));
    }

    #[test]
    fn claims_are_enforced() {
        let (signer, validator) = setup();
        let now = unix_now();
        let cases = [
            (json!({"exp": now - 3600}), "expired"),
            (json!({"nbf": now + 3600}), "not valid yet"),
            (json!({"aud": "api://other"}), "audience"),
            (json!({"iss": "https://evil/"}), "issuer"),
            (json!({"aud": null}), "required claim"),
            (json!({"iss": null}), "required claim"),
            (json!({"tid": null}), "tenant"),
            (json!({"oid": null}), "object"),
        ];
        for (extra, needle) in cases {
            let token = signer.sign(&claims(extra.clone())).unwrap();
            let error = check(&validator, &token).unwrap_err();
            assert!(error.contains(needle), "{extra}: {error}");
        }
    }

    #[test]
    fn leeway_tolerates_small_skew() {
        let (signer, validator) = setup();
        let token = signer
            .sign(&claims(json!({"exp": unix_now() - 5})))
            .unwrap();
        assert!(check(&validator, &token).is_ok());
        let strict = validator.with_leeway(Duration::ZERO);
        assert_eq!(strict.leeway_secs(), 0);
        assert!(check(&strict, &token).is_err());
    }

    #[test]
    fn another_keys_signature_is_refused() {
        let (_, validator) = setup();
        let (other, _) = setup();
        let token = other.sign(&claims(json!({}))).unwrap();
        assert!(check(&validator, &token).unwrap_err().contains("kid"));
    }

    #[test]
    fn cached_tokens_are_dropped_when_keys_change() {
        let (signer, validator) = setup();
        let token = signer.sign(&claims(json!({}))).unwrap();
        assert!(check(&validator, &token).is_ok());
        assert!(check(&validator, &token).is_ok(), "served from the cache");
        let (other, _) = setup();
        validator.replace_keys(other.jwks()).unwrap();
        assert!(
            check(&validator, &token).is_err(),
            "a rotated-out key still works"
        );
    }

    #[test]
    fn cache_stays_bounded() {
        let (signer, validator) = setup();
        let validator = validator.with_cache_capacity(4);
        for i in 0..20 {
            let token = signer
                .sign(&claims(json!({"oid": format!("o{i}")})))
                .unwrap();
            assert!(check(&validator, &token).is_ok());
            let len = validator.shared.cache.len();
            assert!(len <= 4, "cache grew to {len}");
        }
    }

    #[test]
    fn jwks_without_usable_keys_is_a_config_error() {
        assert!(JwtValidator::from_jwks_json(r#"{"keys":[]}"#, [ISS], [AUD]).is_err());
        let hmac = r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#;
        assert!(JwtValidator::from_jwks_json(hmac, [ISS], [AUD]).is_err());
        assert!(JwtValidator::from_jwks_json("nope", [ISS], [AUD]).is_err());
        let (signer, _) = setup();
        assert!(JwtValidator::new(signer.jwks(), Vec::<String>::new(), [AUD]).is_err());
    }
}
