//! Which client a request came from, for per-client limits (the failed-authentication
//! throttle): the peer address, or, on a connection from a `--trusted-proxy`, the address that
//! proxy appended to `X-Forwarded-For` (the rightmost entry: the only one it vouches for).
//! Anyone else's `X-Forwarded-For` is ignored, so a client cannot pick its own bucket.

use std::net::IpAddr;
use std::task::{Context, Poll};

use http::Request;
use security_update::auth::ClientAddress;
use tower::Service;

/// Inserts the request's [`ClientAddress`]; one per connection.
#[derive(Debug, Clone)]
pub(crate) struct WithClientAddress<S> {
    inner: S,
    peer: IpAddr,
    peer_is_trusted_proxy: bool,
}

impl<S> WithClientAddress<S> {
    pub(crate) fn new(inner: S, peer: IpAddr, peer_is_trusted_proxy: bool) -> Self {
        Self {
            inner,
            peer,
            peer_is_trusted_proxy,
        }
    }
}

impl<S, B> Service<Request<B>> for WithClientAddress<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let address = if self.peer_is_trusted_proxy {
            forwarded_for(&request).unwrap_or(self.peer)
        } else {
            self.peer
        };
        request.extensions_mut().insert(ClientAddress(address));
        self.inner.call(request)
    }
}

/// The rightmost address of the last `X-Forwarded-For` header, if it parses.
fn forwarded_for<B>(request: &Request<B>) -> Option<IpAddr> {
    let last = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .next_back()?;
    let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
    entry.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(peer: &str, trusted: bool, xff: &[&str]) -> IpAddr {
        let mut request = Request::new(());
        for value in xff {
            request
                .headers_mut()
                .append("x-forwarded-for", value.parse().unwrap());
        }
        let mut service = WithClientAddress::new(
            tower::service_fn(|request: Request<()>| async move {
                Ok::<_, std::convert::Infallible>(
                    request.extensions().get::<ClientAddress>().unwrap().0,
                )
            }),
            peer.parse().unwrap(),
            trusted,
        );
        futures_lite(service.call(request))
    }

    fn futures_lite<F: std::future::Future<Output = Result<IpAddr, std::convert::Infallible>>>(
        future: F,
    ) -> IpAddr {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
            .unwrap()
    }

    #[test]
    fn only_a_trusted_proxy_names_the_client() {
        let spoofed = ["203.0.113.9"];
        assert_eq!(
            address("198.51.100.1", false, &spoofed).to_string(),
            "198.51.100.1"
        );
        assert_eq!(
            address("10.0.0.2", true, &["1.2.3.4, 203.0.113.9"]).to_string(),
            "203.0.113.9"
        );
        assert_eq!(
            address("10.0.0.2", true, &["garbage"]).to_string(),
            "10.0.0.2"
        );
        assert_eq!(address("10.0.0.2", true, &[]).to_string(), "10.0.0.2");
    }
}
