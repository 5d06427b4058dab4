//! Connection caps: how many TCP connections the server holds at once, in all and per client.
//!
//! Every accepted connection costs a file descriptor and a task until it ends. Without a cap,
//! a client that opens connections faster than they time out exhausts `RLIMIT_NOFILE`, after
//! which `accept` fails for everyone and the store cannot open files either. Two caps:
//!
//! - a global one, below the descriptor limit, so the process keeps descriptors for its
//!   store, its logs and for accepting (and at once closing) connections past the cap;
//! - a per-client one, so a single address cannot take all the global slots. Clients are
//!   grouped the way addresses are handed out: an IPv4 address is one client, an IPv6 client
//!   is its /64 (one host usually owns a whole /64 and can pick any address in it), and an
//!   IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack listener reports) is the
//!   IPv4 address it maps.
//!
//! Connections from trusted proxies (`--trusted-proxy`) carry many clients each, so they are
//! exempt from the per-client cap (they still count towards the global one).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub(crate) use super::ip_net::IpNet;

/// Connections one client may hold at once unless told otherwise: enough for load tests with
/// 64-128 connections from one address and pools behind a NAT.
pub(crate) const DEFAULT_MAX_PER_CLIENT: usize = 256;

/// The per-client cap for a global cap of `max_connections`: [`DEFAULT_MAX_PER_CLIENT`], or an
/// eighth of the global cap when that is less (at least 16), so that a few addresses cannot
/// take every slot of a server with a small descriptor limit.
#[must_use]
pub(crate) fn default_max_per_client(max_connections: usize) -> usize {
    DEFAULT_MAX_PER_CLIENT.min((max_connections / 8).max(16))
}

/// Descriptors kept out of the connection budget: stdio, the listener, the runtime's epoll and
/// eventfd, the store (`redb` file or the `PostgreSQL` pool, 16 by default), JWKS fetches, logs.
const RESERVED_DESCRIPTORS: u64 = 64;

/// The smallest global cap [`max_connections_for`] returns, however low the limit.
const MIN_MAX_CONNECTIONS: u64 = 32;

/// The global cap when the descriptor limit cannot be read (not Linux, no `/proc`).
const FALLBACK_MAX_CONNECTIONS: usize = 1024;

/// The global cap derived from this process's soft `RLIMIT_NOFILE`, read from
/// `/proc/self/limits` (no `unsafe`, no libc); see [`max_connections_for`] for the formula.
///
/// Falls back to 1024 when the limit cannot be read (other systems, no `/proc`, "unlimited").
/// If that is above the real limit, `accept` fails with `EMFILE` before the cap is reached,
/// and the accept loop backs off instead of spinning.
#[must_use]
pub(crate) fn default_max_connections() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| soft_open_files_limit(&limits))
        .map_or(FALLBACK_MAX_CONNECTIONS, max_connections_for)
}

/// The soft "Max open files" limit in the text of `/proc/<pid>/limits`, if it is a number.
///
/// The line reads `Max open files  <soft>  <hard>  files`; "unlimited" gives `None` (Linux does
/// not actually allow an unlimited descriptor limit, so that would be a strange system).
fn soft_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The global cap for a soft descriptor limit: `max(32, (limit - 64) * 0.8)`.
///
/// 64 descriptors are reserved for everything that is not a connection; of the rest, 80% go to
/// connections. The other 20% are headroom: a connection past the cap is refused only after
/// `accept` returned it (it holds a descriptor until it is closed), and a refused burst must
/// not push the process into `EMFILE`. The floor of 32 keeps a tiny limit usable; below about
/// 100 descriptors it may exceed what is really free, and `EMFILE` backoff takes over.
///
/// Examples: 1024 → 768, 4096 → 3226, 65536 → 52378.
#[must_use]
pub(crate) fn max_connections_for(soft_limit: u64) -> usize {
    let usable = soft_limit.saturating_sub(RESERVED_DESCRIPTORS);
    let cap = (usable - usable / 5).max(MIN_MAX_CONNECTIONS);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// The caps and the exemptions; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimits {
    /// Connections held at once, in all. `usize::MAX` for no cap.
    pub(crate) max_connections: usize,
    /// Connections held at once by one client (IPv4 address or IPv6 /64). `usize::MAX` for no cap.
    pub(crate) max_per_client: usize,
    /// Peers exempt from `max_per_client`: reverse proxies and load balancers, whose
    /// connections each carry many clients.
    pub(crate) trusted_proxies: Vec<IpNet>,
}

impl ConnectionLimits {
    /// Caps of `max_connections` in all and `max_per_client` per client, no trusted proxy.
    #[must_use]
    pub(crate) fn new(max_connections: usize, max_per_client: usize) -> Self {
        Self {
            max_connections,
            max_per_client,
            trusted_proxies: Vec::new(),
        }
    }

    /// The same caps, with connections from `proxies` exempt from the per-client cap.
    #[must_use]
    pub(crate) fn with_trusted_proxies(mut self, proxies: Vec<IpNet>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Whether `ip` belongs to a trusted proxy.
    #[must_use]
    pub(crate) fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server holds `limit` connections already.
    ServerFull {
        /// The global cap.
        limit: usize,
    },
    /// This client (IPv4 address or IPv6 /64) holds `limit` connections already.
    ClientFull {
        /// The per-client cap.
        limit: usize,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerFull { limit } => {
                write!(f, "server full: it holds its cap of {limit} connections")
            }
            Self::ClientFull { limit } => {
                write!(f, "client full: it holds its cap of {limit} connections")
            }
        }
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// A short fixed label, for metrics.
    #[must_use]
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::ServerFull { .. } => "global_cap",
            Self::ClientFull { .. } => "per_client_cap",
        }
    }
}

/// Counts the connections held, in all and per client, against [`ConnectionLimits`].
///
/// A `Mutex<HashMap>`: one short lock per accepted and per closed connection, nothing on the
/// request path. Entries are removed when their count reaches zero, so the map holds only the
/// clients connected right now.
#[derive(Debug)]
pub(crate) struct ConnectionTracker {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_client: HashMap<ClientKey, usize>,
}

/// One client for the per-client cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(Ipv4Addr),
    /// The first four 16-bit groups (the /64 prefix) of an IPv6 address.
    V6Prefix([u16; 4]),
}

impl ClientKey {
    fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => {
                let [a, b, c, d, ..] = v6.segments();
                Self::V6Prefix([a, b, c, d])
            }
        }
    }
}

impl ConnectionTracker {
    /// A tracker with nothing counted yet.
    #[must_use]
    pub(crate) fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits,
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Whether `ip` is a trusted proxy (its requests may name their client).
    pub(crate) fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.limits.is_trusted_proxy(ip)
    }

    /// Counts a new connection from `ip`, or says which cap it would break.
    ///
    /// The permit releases both counts when dropped: keep it for as long as the connection
    /// (its task) lives.
    ///
    /// # Errors
    ///
    /// [`Refusal::ServerFull`] at the global cap, [`Refusal::ClientFull`] at the per-client cap
    /// (never for a trusted proxy). Nothing is counted then.
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let key = (!self.limits.is_trusted_proxy(ip)).then(|| ClientKey::of(ip));
        let mut counts = self.lock();
        if counts.total >= self.limits.max_connections {
            return Err(Refusal::ServerFull {
                limit: self.limits.max_connections,
            });
        }
        if let Some(key) = key {
            // Look before inserting, so that a refusal leaves no zero entry behind.
            let held = counts.per_client.get(&key).copied().unwrap_or(0);
            if held >= self.limits.max_per_client {
                return Err(Refusal::ClientFull {
                    limit: self.limits.max_per_client,
                });
            }
            counts.per_client.insert(key, held + 1);
        }
        counts.total += 1;
        drop(counts);
        Ok(ConnectionPermit {
            tracker: Arc::clone(self),
            key,
        })
    }

    /// Connections held right now.
    #[must_use]
    pub(crate) fn active(&self) -> usize {
        self.lock().total
    }

    /// Clients (IPv4 addresses, IPv6 /64s) holding at least one connection right now; trusted
    /// proxies are not counted.
    #[must_use]
    #[cfg(test)]
    pub(crate) fn clients(&self) -> usize {
        self.lock().per_client.len()
    }

    /// The counts. Nothing panics while holding the lock, but a poisoned lock still has
    /// consistent counts, so it is used rather than propagated.
    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, key: Option<ClientKey>) {
        let mut counts = self.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(key) = key
            && let Entry::Occupied(mut entry) = counts.per_client.entry(key)
        {
            if *entry.get() <= 1 {
                entry.remove();
            } else {
                *entry.get_mut() -= 1;
            }
        }
    }
}

/// One counted connection; dropping it releases its global and per-client counts.
#[derive(Debug)]
#[must_use = "the connection is uncounted as soon as the permit is dropped"]
pub(crate) struct ConnectionPermit {
    tracker: Arc<ConnectionTracker>,
    /// `None` for a trusted proxy, counted globally only.
    key: Option<ClientKey>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.tracker.release(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    fn tracker(max: usize, per_client: usize) -> Arc<ConnectionTracker> {
        Arc::new(ConnectionTracker::new(ConnectionLimits::new(
            max, per_client,
        )))
    }

    #[test]
    fn the_global_cap_refuses_and_a_dropped_permit_frees_its_slot() {
        let tracker = tracker(2, 10);
        let a = tracker.try_acquire(ip("192.0.2.1")).unwrap();
        let _b = tracker.try_acquire(ip("192.0.2.2")).unwrap();
        assert_eq!(
            tracker.try_acquire(ip("192.0.2.3")).unwrap_err(),
            Refusal::ServerFull { limit: 2 }
        );
        assert_eq!(tracker.active(), 2);
        drop(a);
        assert_eq!(tracker.active(), 1);
        let _c = tracker.try_acquire(ip("192.0.2.3")).unwrap();
        assert_eq!(tracker.active(), 2);
    }

    #[test]
    fn the_per_client_cap_is_per_ipv4_address() {
        let tracker = tracker(100, 2);
        let first = tracker.try_acquire(ip("192.0.2.1")).unwrap();
        let _second = tracker.try_acquire(ip("192.0.2.1")).unwrap();
        assert_eq!(
            tracker.try_acquire(ip("192.0.2.1")).unwrap_err(),
            Refusal::ClientFull { limit: 2 }
        );
        // Another address is another client.
        let _other = tracker.try_acquire(ip("192.0.2.2")).unwrap();
        drop(first);
        let _again = tracker.try_acquire(ip("192.0.2.1")).unwrap();
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64_prefix() {
        let tracker = tracker(100, 1);
        let _held = tracker.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(tracker.try_acquire(ip("2001:db8:1:2:ffff::9")).is_err());
        assert!(tracker.try_acquire(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_ipv4_client() {
        let tracker = tracker(100, 1);
        let _held = tracker.try_acquire(ip("192.0.2.7")).unwrap();
        assert_eq!(
            tracker.try_acquire(ip("::ffff:192.0.2.7")).unwrap_err(),
            Refusal::ClientFull { limit: 1 }
        );
        // ...and not the ::/64 client every mapped address would otherwise share.
        let _other = tracker.try_acquire(ip("::ffff:192.0.2.8")).unwrap();
    }

    #[test]
    fn trusted_proxies_skip_the_per_client_cap_but_not_the_global_one() {
        let limits = ConnectionLimits::new(3, 1).with_trusted_proxies(vec![net("10.0.0.0/8")]);
        let tracker = Arc::new(ConnectionTracker::new(limits));
        let _a = tracker.try_acquire(ip("10.1.1.1")).unwrap();
        let _b = tracker.try_acquire(ip("10.1.1.1")).unwrap();
        let _c = tracker.try_acquire(ip("::ffff:10.1.1.1")).unwrap();
        assert_eq!(tracker.clients(), 0, "proxies are not tracked per client");
        assert_eq!(
            tracker.try_acquire(ip("10.1.1.1")).unwrap_err(),
            Refusal::ServerFull { limit: 3 }
        );
    }

    #[test]
    fn the_map_holds_only_connected_clients() {
        let tracker = tracker(100, 5);
        let permits: Vec<_> = (0..50u8)
            .map(|i| {
                tracker
                    .try_acquire(IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)))
                    .unwrap()
            })
            .collect();
        assert_eq!(tracker.clients(), 50);
        drop(permits);
        assert_eq!(tracker.clients(), 0);
        assert_eq!(tracker.active(), 0);
    }

    #[test]
    fn a_refusal_counts_nothing() {
        let tracker = tracker(100, 0);
        assert!(tracker.try_acquire(ip("192.0.2.1")).is_err());
        assert_eq!(tracker.clients(), 0, "no zero entry left behind");
        assert_eq!(tracker.active(), 0);
    }

    #[test]
    fn the_descriptor_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n\
                    Max locked memory         8388608              8388608              bytes     \n";
        assert_eq!(soft_open_files_limit(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(soft_open_files_limit(unlimited), None);
        assert_eq!(
            soft_open_files_limit("Max processes 100 100 processes\n"),
            None
        );
        assert_eq!(soft_open_files_limit(""), None);
    }

    #[test]
    fn the_global_cap_leaves_headroom_below_the_descriptor_limit() {
        assert_eq!(max_connections_for(1024), 768);
        assert_eq!(max_connections_for(4096), 3226);
        assert_eq!(max_connections_for(65536), 52378);
        assert_eq!(max_connections_for(64), 32);
        assert_eq!(default_max_per_client(15_948), 256);
        assert_eq!(default_max_per_client(768), 96);
        assert_eq!(default_max_per_client(32), 16);
        assert_eq!(max_connections_for(0), 32);
        assert!(max_connections_for(u64::MAX) > 1 << 30);
        for limit in [200_u64, 1024, 4096, 1 << 20] {
            let cap = u64::try_from(max_connections_for(limit)).unwrap();
            assert!(cap + RESERVED_DESCRIPTORS < limit, "{limit} -> {cap}");
        }
        assert!(default_max_connections() >= 32);
    }
}
