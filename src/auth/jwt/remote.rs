//! Keys from a JWKS URL: fetched at start, refreshed periodically, and refetched when a token
//! names a `kid` we do not know (key rotation), at most once per interval so that tokens with
//! made-up `kid`s cannot make us hammer the identity provider.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;

use super::{JwtConfigError, JwtValidator, KeySource, Refetch, Shared, config_error};

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Longest a JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How often keys from a URL are refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksRefresh {
    /// Periodic refresh interval.
    pub every: Duration,
    /// Least time between two refetches caused by an unknown `kid`.
    pub unknown_kid_at_most_every: Duration,
}

impl Default for JwksRefresh {
    /// Every hour; on unknown `kid`, at most every 30 seconds.
    fn default() -> Self {
        Self {
            every: Duration::from_secs(3600),
            unknown_kid_at_most_every: Duration::from_secs(30),
        }
    }
}

/// Keys fetched from a URL.
struct UrlKeySource {
    uri: Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl KeySource for UrlKeySource {
    fn fetch(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<JwkSet, JwtConfigError>> + Send + '_>,
    > {
        Box::pin(fetch(&self.client, &self.uri))
    }
}

impl JwtValidator {
    /// A validator whose keys come from `url` (HTTPS, or HTTP for a local proxy), fetched now
    /// and then refreshed as `refresh` says. Needs a tokio runtime; the periodic refresh stops
    /// when the last clone of the validator is dropped.
    ///
    /// # Errors
    /// When the URL is invalid or the first fetch fails or yields no usable key.
    pub async fn from_jwks_url(
        url: &str,
        issuers: impl IntoIterator<Item = impl Into<String>>,
        audiences: impl IntoIterator<Item = impl Into<String>>,
        refresh: JwksRefresh,
    ) -> Result<Self, JwtConfigError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| config_error(format!("JWKS URL {url:?} is invalid: {e}")))?;
        if !matches!(uri.scheme_str(), Some("https" | "http")) {
            return Err(config_error(format!("JWKS URL {url:?} is not http(s)")));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let jwks = fetch(&client, &uri).await?;
        let source = Refetch {
            source: Box::new(UrlKeySource { uri, client }),
            min_refetch: refresh.unknown_kid_at_most_every,
            last_refetch: tokio::sync::Mutex::new(None),
        };
        let validator = Self::build(&jwks, issuers, audiences, Some(source))?;
        tokio::spawn(refresh_periodically(
            Arc::downgrade(&validator.shared),
            refresh.every,
        ));
        Ok(validator)
    }
}

async fn refresh_periodically(shared: Weak<Shared>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let _ = JwtValidator { shared }.refresh().await;
    }
}

async fn fetch(
    client: &Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    uri: &Uri,
) -> Result<JwkSet, JwtConfigError> {
    let fail = |why: String| config_error(format!("fetching the JWKS from {uri}: {why}"));
    let request = Request::get(uri.clone())
        .header("accept", "application/json")
        .body(Empty::new())
        .map_err(|e| fail(e.to_string()))?;
    let work = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("status {}", response.status())));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| fail(format!("not a JWKS: {e}")))
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .map_err(|_| fail("timed out".to_owned()))?
}
