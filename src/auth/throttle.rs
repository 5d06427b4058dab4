//! [`FailureThrottle`]: bounds the work an unauthenticated client can make us do.
//!
//! A bad signature costs a signature check (~150 µs for RS256, ~370 µs for ES256), and a
//! client with no valid token at all could send them without end. Each client address gets a
//! bucket of failed authentications (a burst that refills at a steady rate); once it is empty,
//! further tokens from that address are answered 429 with `Retry-After` without being checked
//! — unless the validator knows the token is good without work (a cached token), so a valid
//! caller is never throttled by failures from elsewhere, nor by its own neighbours' once it
//! has been validated.
//!
//! The address comes from the request's [`ClientAddress`] extension, or, for a request that
//! has none, from the built stack's [`Stack::for_client`](crate::Stack::for_client): the server
//! makes its stack for each connection's peer, and inserts the client a trusted proxy names
//! into each of that proxy's requests. Without either nothing is throttled.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// The address a request came from, for per-client limits, in the request's extensions: put
/// there by an embedder or a server (ours, for a trusted proxy's requests), or by a stack made
/// for a connection's client ([`Stack::for_client`](crate::Stack::for_client)) for a request
/// that names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(pub IpAddr);

/// Buckets kept before refilled (idle) ones are dropped; bounds memory under address churn.
const MAX_BUCKETS: usize = 65_536;

/// Failed authentications allowed per client address: a burst that refills at a steady rate;
/// past it, tokens from that address get 429 without being checked (see [`AuthLayer::with_failure_throttle`](crate::AuthLayer::with_failure_throttle)).
#[derive(Debug)]
pub struct FailureThrottle {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl FailureThrottle {
    /// `burst` failures at once, refilling `per_second` each second. The server's default is
    /// a burst of 100 refilling 10 per second: a client retrying a few bad tokens never meets
    /// it.
    #[must_use]
    pub fn new(burst: u32, per_second: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_second.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// IPv6 clients are grouped by /64 (a host can pick any address in its /64); IPv4-mapped
    /// addresses are their IPv4 address.
    fn key(address: IpAddr) -> IpAddr {
        match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
            v4 @ IpAddr::V4(_) => v4,
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }

    /// Seconds until `address` may fail again, or `None` while it still may.
    #[must_use]
    pub fn retry_after(&self, address: IpAddr) -> Option<u32> {
        let buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = *buckets.get(&Self::key(address))?;
        let tokens = self.refilled(bucket, Instant::now());
        (tokens < 1.0).then(|| ((1.0 - tokens) / self.per_second).ceil().clamp(1.0, 3600.0) as u32)
    }

    /// Counts one failed authentication from `address`.
    pub fn record_failure(&self, address: IpAddr) {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS {
            let (burst, per_second) = (self.burst, self.per_second);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * per_second
                    < burst
            });
        }
        let key = Self::key(address);
        let tokens = buckets
            .get(&key)
            .map_or(self.burst, |bucket| self.refilled(*bucket, now));
        buckets.insert(
            key,
            Bucket {
                tokens: (tokens - 1.0).max(0.0),
                updated: now,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_throttled_after_its_burst_and_others_are_not() {
        let throttle = FailureThrottle::new(3, 1);
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.retry_after(attacker), None);
            throttle.record_failure(attacker);
        }
        assert_eq!(throttle.retry_after(attacker), Some(1));
        assert_eq!(throttle.retry_after(other), None);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64() {
        let throttle = FailureThrottle::new(1, 1);
        throttle.record_failure("2001:db8:1:2::1".parse().unwrap());
        assert!(
            throttle
                .retry_after("2001:db8:1:2::ffff".parse().unwrap())
                .is_some()
        );
        assert!(
            throttle
                .retry_after("2001:db8:1:3::1".parse().unwrap())
                .is_none()
        );
        throttle.record_failure("::ffff:192.0.2.9".parse().unwrap());
        assert!(throttle.retry_after("192.0.2.9".parse().unwrap()).is_some());
    }
}
