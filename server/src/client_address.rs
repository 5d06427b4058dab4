//! Which client a request came from, for per-client limits (the failed-authentication
//! throttle): the peer address, or, on a connection from a `--trusted-proxy`, the first address
//! from the right of `X-Forwarded-For` that is not itself a trusted proxy (entries to its left
//! are the client's own claims). Ports and IPv6 brackets are stripped (`203.0.113.9:4711`,
//! `[2001:db8::1]:443`). When a trusted proxy names no usable client, the request carries no
//! address and is not throttled: lumping every client behind the proxy into one bucket would
//! let one attacker lock them all out. Anyone else's `X-Forwarded-For` is ignored, so a client
//! cannot pick its own bucket.

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use security_update::auth::ClientAddress;
use tower::Service;

/// Decides which addresses are trusted proxies.
pub(crate) type IsTrusted = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// Inserts the [`ClientAddress`] a trusted proxy names into each of its requests; one per
/// connection. On a connection from anyone else the client is the peer for every request:
/// the connection's services are made for it ([`connection_client`]: the stack's
/// `for_client`, the held-answer budget's), and no request carries it, so that a request has
/// no extensions map to make (~700 instructions of a PATCH's ~38,500, benches/README.md).
#[derive(Clone)]
pub(crate) struct WithClientAddress<S> {
    inner: S,
    /// The peer is a trusted proxy (decided once: the proxies are fixed at start).
    from_proxy: bool,
    is_trusted: IsTrusted,
    /// The connection is TLS: HTTP/1 requests (whose target carries no scheme) get `https`,
    /// so `@odata.context` names the scheme the client used.
    tls: bool,
}

impl<S> WithClientAddress<S> {
    pub(crate) fn new(inner: S, peer: IpAddr, is_trusted: IsTrusted, tls: bool) -> Self {
        Self {
            inner,
            from_proxy: is_trusted(peer),
            is_trusted,
            tls,
        }
    }
}

/// The client of every request on a connection from `peer`: the peer, unless it is a
/// trusted proxy (then each request names its own, which [`WithClientAddress`] inserts).
pub(crate) fn connection_client(peer: IpAddr, is_trusted: &IsTrusted) -> Option<IpAddr> {
    (!is_trusted(peer)).then_some(peer)
}

/// `request`'s target made absolute with `https`, when it has no scheme yet: with its own
/// authority if it has one, else with its `Host` if it sent exactly one and that is a valid
/// authority (else it stays as it is). Of two `Host` lines neither is taken: RFC 9112 §3.2
/// makes such a request a 400, and which one a proxy before us read is unknown.
fn mark_https<B>(request: &mut Request<B>) {
    if request.uri().scheme().is_some() {
        return;
    }
    let mut hosts = request.headers().get_all(http::header::HOST).iter();
    let host = match (request.uri().authority(), hosts.next(), hosts.next()) {
        (Some(authority), _, _) => authority.clone(),
        (None, Some(host), None) => match http::uri::Authority::try_from(host.as_bytes()) {
            Ok(host) => host,
            Err(_) => return,
        },
        _ => return,
    };
    let mut parts = request.uri().clone().into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTPS);
    parts.authority = Some(host);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
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
        if self.from_proxy
            && let Some(address) = forwarded_client(&request, &*self.is_trusted)
        {
            // The first thing a request's extensions get: room for the stack's too.
            security_update::make_extension_room(request.extensions_mut());
            request.extensions_mut().insert(ClientAddress(address));
        }
        if self.tls {
            mark_https(&mut request);
        }
        self.inner.call(request)
    }
}

/// The first `X-Forwarded-For` entry from the right that is not a trusted proxy, if it parses.
fn forwarded_client<B>(
    request: &Request<B>,
    is_trusted: &dyn Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    let entries: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    for entry in entries.into_iter().rev() {
        let address = parse_entry(entry.trim())?;
        if !is_trusted(address) {
            return Some(address);
        }
    }
    None
}

/// `203.0.113.9`, `203.0.113.9:4711`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(address) = entry.parse() {
        return Some(address);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client the services of a connection from `peer` see for a request with these
    /// `X-Forwarded-For` lines (the request's own [`ClientAddress`], else the connection's),
    /// and whether the request has an extensions map.
    fn seen(peer: &str, xff: &[&str]) -> (Option<String>, bool) {
        let mut request = Request::new(());
        for value in xff {
            request
                .headers_mut()
                .append("x-forwarded-for", value.parse().unwrap());
        }
        let is_trusted: IsTrusted = Arc::new(|ip: IpAddr| ip.to_string().starts_with("10."));
        let peer: IpAddr = peer.parse().unwrap();
        let connection = connection_client(peer, &is_trusted);
        let mut service = WithClientAddress::new(
            tower::service_fn(move |request: Request<()>| async move {
                let own = request.extensions().get::<ClientAddress>().map(|a| a.0);
                Ok::<_, std::convert::Infallible>((
                    own.or(connection).map(|a| a.to_string()),
                    !request.extensions().is_empty(),
                ))
            }),
            peer,
            is_trusted,
            false,
        );
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(service.call(request))
            .unwrap()
    }

    fn address(peer: &str, xff: &[&str]) -> Option<String> {
        seen(peer, xff).0
    }

    #[test]
    fn only_a_proxys_requests_carry_their_client() {
        // From the client itself: known to the connection, nothing made for the request.
        assert_eq!(
            seen("198.51.100.1", &[]),
            (Some("198.51.100.1".into()), false)
        );
        assert_eq!(
            seen("198.51.100.1", &["203.0.113.9"]),
            (Some("198.51.100.1".into()), false)
        );
        // From a trusted proxy: each request carries the client it names.
        assert_eq!(
            seen("10.0.0.2", &["203.0.113.9"]),
            (Some("203.0.113.9".into()), true)
        );
        assert_eq!(seen("10.0.0.2", &["garbage"]), (None, false));
    }

    #[test]
    fn tls_requests_carry_https_and_their_host() {
        let mut request = Request::get("/beta/me/security?$select=id")
            .header("host", "graph.contoso.com:8443")
            .body(())
            .unwrap();
        mark_https(&mut request);
        assert_eq!(
            request.uri().to_string(),
            "https://graph.contoso.com:8443/beta/me/security?$select=id"
        );
        // A Host that is not an authority leaves the target alone.
        let mut request = Request::get("/beta/me/security")
            .header("host", "bad host/x")
            .body(())
            .unwrap();
        mark_https(&mut request);
        assert_eq!(request.uri().to_string(), "/beta/me/security");
        // Nor do two.
        let mut request = Request::get("/beta/me/security")
            .header("host", "a.contoso.com")
            .header("host", "b.contoso.com")
            .body(())
            .unwrap();
        mark_https(&mut request);
        assert_eq!(request.uri().to_string(), "/beta/me/security");
    }

    #[test]
    fn only_a_trusted_proxy_names_the_client() {
        let some = |s: &str| Some(s.to_owned());
        // Anyone else's header is ignored.
        assert_eq!(
            address("198.51.100.1", &["203.0.113.9"]),
            some("198.51.100.1")
        );
        // A trusted proxy: the rightmost entry that is not a trusted proxy itself.
        assert_eq!(
            address("10.0.0.2", &["1.2.3.4, 203.0.113.9"]),
            some("203.0.113.9")
        );
        assert_eq!(
            address("10.0.0.2", &["1.2.3.4, 203.0.113.9, 10.0.0.7"]),
            some("203.0.113.9")
        );
        assert_eq!(
            address("10.0.0.2", &["1.2.3.4", "203.0.113.9:4711"]),
            some("203.0.113.9")
        );
        assert_eq!(
            address("10.0.0.2", &["[2001:db8::1]:443"]),
            some("2001:db8::1")
        );
        // No usable client: no address, so no shared bucket for everyone behind the proxy.
        assert_eq!(address("10.0.0.2", &["garbage"]), None);
        assert_eq!(address("10.0.0.2", &[]), None);
        assert_eq!(address("10.0.0.2", &["10.0.0.9"]), None);
    }
}
