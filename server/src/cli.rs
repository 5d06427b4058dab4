//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::front_door;

/// Microsoft Graph beta "Update security" (PATCH /beta/me/security and
/// /beta/users/{id}/security), standalone.
///
/// Without --jwks the server runs in DEV MODE: it signs its own tokens with an ephemeral key
/// and prints one ready to use. Never expose a dev-mode server.
#[derive(Debug, Parser)]
#[command(name = "security-update-server", version)]
pub(crate) struct Cli {
    /// Address to listen on; ":PORT" means 127.0.0.1:PORT, and port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_listen, env = "SECURITY_UPDATE_LISTEN")]
    pub(crate) listen: SocketAddr,

    /// Directory of the embedded persistent store (the default store).
    #[arg(
        long,
        default_value = "./security-update-data",
        conflicts_with = "memory",
        env = "SECURITY_UPDATE_DATA"
    )]
    pub(crate) data: PathBuf,

    /// Keep objects in memory only: everything is lost when the server stops.
    #[arg(long, conflicts_with = "postgres")]
    pub(crate) memory: bool,

    /// `PostgreSQL` URL (postgres://user@host:port/db): one database for several servers.
    /// Prefer the environment variable (or PGPASSWORD) to keep a password out of `ps`.
    #[arg(
        long,
        conflicts_with = "data",
        env = "SECURITY_UPDATE_POSTGRES",
        hide_env_values = true
    )]
    pub(crate) postgres: Option<String>,

    /// Most `PostgreSQL` connections this process opens.
    #[arg(long, default_value_t = 16)]
    pub(crate) postgres_pool_size: usize,

    /// Longest a `PostgreSQL` statement may run, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub(crate) postgres_statement_timeout_ms: u64,

    /// JWKS file with the token signing keys (production mode; needs --issuer and --audience).
    #[arg(long, requires_all = ["issuer", "audience"], conflicts_with = "jwks_url", env = "SECURITY_UPDATE_JWKS")]
    pub(crate) jwks: Option<PathBuf>,

    /// JWKS URL of the identity provider (for Entra: `https://login.microsoftonline.com/common/discovery/v2.0/keys`),
    /// refreshed hourly and when a token names an unknown key.
    #[arg(long, requires_all = ["issuer", "audience"], env = "SECURITY_UPDATE_JWKS_URL")]
    pub(crate) jwks_url: Option<String>,

    /// Accepted token issuer (`iss`); repeat for several.
    #[arg(long, env = "SECURITY_UPDATE_ISSUER")]
    pub(crate) issuer: Vec<String>,

    /// Accepted token audience (`aud`); repeat for several.
    #[arg(long, env = "SECURITY_UPDATE_AUDIENCE")]
    pub(crate) audience: Vec<String>,

    /// Clock skew tolerated on token `exp` and `nbf`, in seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) leeway: u64,

    /// JSON Schema of the security object, for deployments that add properties.
    #[arg(long, env = "SECURITY_UPDATE_SCHEMA")]
    pub(crate) schema: Option<PathBuf>,

    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub(crate) max_body: usize,

    /// The public URL of the API root as clients reach it (for example `https://graph.contoso.com/beta`),
    /// for @odata.context. Default: the request's scheme and Host, then /beta.
    #[arg(long, value_name = "URL")]
    pub(crate) public_url: Option<String>,

    /// Largest object, serialized, a PATCH may leave behind (413 past it).
    #[arg(long, default_value_t = security_update::service::DEFAULT_MAX_OBJECT_BYTES)]
    pub(crate) max_object_bytes: usize,

    /// Most objects one tenant may have (507 quotaLimitReached for one more).
    #[arg(long, default_value_t = security_update::service::DEFAULT_MAX_OBJECTS_PER_TENANT)]
    pub(crate) max_objects_per_tenant: u64,

    /// Seconds a client may take to send its request headers before the connection is closed.
    /// For HTTP/1 the same timer bounds an idle keep-alive connection.
    #[arg(long, default_value_t = 30)]
    pub(crate) header_read_timeout: u64,

    /// Seconds a new connection may take to send its first bytes (enough to tell HTTP/1 from
    /// HTTP/2) before it is closed.
    #[arg(long, default_value_t = 10)]
    pub(crate) first_bytes_timeout: u64,

    /// Seconds an HTTP/2 connection may stay open with no request in flight (a stalled header
    /// block counts as none) before it is closed gracefully; a peer that ignores the GOAWAY
    /// is dropped after as long again with nothing in flight.
    #[arg(long, default_value_t = 60)]
    pub(crate) h2_idle_timeout: u64,

    /// Seconds a response may wait on a client that stopped reading before the connection is
    /// closed.
    #[arg(long, default_value_t = 30)]
    pub(crate) write_stall_timeout: u64,

    /// Most connections held at once; new ones past it are closed at once.
    /// Default: 80% of the open-file limit less 64 descriptors for the store and logs.
    #[arg(long)]
    pub(crate) max_connections: Option<usize>,

    /// Most connections one client address holds at once (IPv6 clients grouped by /64).
    /// Default: 256, or an eighth of --max-connections if that is less (at least 16), so a
    /// handful of addresses cannot take every slot.
    #[arg(long)]
    pub(crate) max_connections_per_ip: Option<usize>,

    /// Bytes of answers clients have not taken yet that the server holds at most, in all:
    /// past half of it, clients holding an even share of that half are answered 503
    /// (Retry-After) before their requests run; past all of it, everyone is, until clients
    /// read (or their connections are cut). 0 for no limit.
    #[arg(long, default_value_t = 1024 * 1024 * 1024)]
    pub(crate) max_held_bytes: u64,

    /// Bytes of answers one client (IPv6 clients grouped by /48) has not taken yet that the
    /// server holds at most: past it, that client's requests are answered 503 (Retry-After)
    /// before they run, until it reads. 0 for no limit.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub(crate) max_held_bytes_per_client: u64,

    /// Failed authentications a client address may make at once before it gets 429 (its
    /// tokens are then not checked until the bucket refills).
    #[arg(long, default_value_t = 100)]
    pub(crate) auth_failure_burst: u32,

    /// Failed authentications per second a client address regains.
    #[arg(long, default_value_t = 10)]
    pub(crate) auth_failure_rate: u32,

    /// A load balancer's address or network (CIDR); repeatable. Its connections carry many
    /// clients, so they are exempt from --max-connections-per-ip, and the failed-authentication
    /// throttle uses the address they append to X-Forwarded-For.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub(crate) trusted_proxies: Vec<front_door::conn_limits::IpNet>,

    /// Seconds a request may take in all, body upload included (408 past it), so a client that
    /// stalls mid-body does not hold the connection forever.
    #[arg(long, default_value_t = 60)]
    pub(crate) request_timeout: u64,

    /// Requests per second allowed to each caller (tenant + object id); 0 turns the limit off.
    /// Over it: 429 with Retry-After.
    #[arg(long, default_value_t = 50)]
    pub(crate) rate_limit: u32,

    /// Requests a caller may send at once after an idle spell (default: twice --rate-limit).
    #[arg(long)]
    pub(crate) rate_limit_burst: Option<u32>,

    /// Worker threads serving requests (default: one per core).
    #[arg(long)]
    pub(crate) worker_threads: Option<usize>,

    /// Seconds the server keeps accepting after SIGTERM/SIGINT while /readyz answers 503, so
    /// load balancers stop sending before the listener closes.
    #[arg(long, default_value_t = 0)]
    pub(crate) drain_delay: u64,

    /// PEM certificate chain (leaf first) to serve HTTPS with; needs --tls-key. Without it the
    /// server speaks plain HTTP (for local use, or behind a proxy that terminates TLS).
    #[arg(
        long,
        requires = "tls_key",
        value_name = "PEM",
        env = "SECURITY_UPDATE_TLS_CERT"
    )]
    pub(crate) tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1; RSA or ECDSA).
    #[arg(
        long,
        requires = "tls_cert",
        value_name = "PEM",
        env = "SECURITY_UPDATE_TLS_KEY"
    )]
    pub(crate) tls_key: Option<PathBuf>,

    /// Seconds a TLS handshake may take before the connection is closed.
    #[arg(long, default_value_t = 10)]
    pub(crate) tls_handshake_timeout: u64,

    /// Seconds between checks of --tls-cert and --tls-key for new content (SIGHUP reloads at
    /// once).
    #[arg(long, default_value_t = 30)]
    pub(crate) tls_reload_interval: u64,

    /// Address for GET /metrics (Prometheus text format), /healthz and /readyz, apart from the
    /// API port; off by default. ":0" picks a free port.
    #[arg(long, value_parser = parse_listen, value_name = "ADDR", env = "SECURITY_UPDATE_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<SocketAddr>,

    /// Directory where SIGUSR1 makes the server write a consistent copy of the embedded store
    /// (a new data directory, usable as --data). One server's own: unfinished copies found
    /// there are removed before each backup.
    #[arg(long, value_name = "DIR", env = "SECURITY_UPDATE_BACKUP_DIR")]
    pub(crate) backup_dir: Option<PathBuf>,

    /// Log lines as text or as one JSON object per line.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) log_format: LogFormat,

    /// Seconds to let in-flight requests (and writes whose client went away) finish after
    /// SIGTERM/SIGINT; longer than --request-timeout, so a request that may run is not cut.
    #[arg(long, default_value_t = 75)]
    pub(crate) shutdown_timeout: u64,
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let full = if text.starts_with(':') {
        format!("127.0.0.1{text}")
    } else {
        text.to_owned()
    };
    full.parse()
        .map_err(|_| format!("'{text}' is not an address like 127.0.0.1:8080 or :0"))
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
