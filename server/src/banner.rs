//! What the server prints on stdout once it listens: the dev-mode token and how to try it,
//! the store, the address. Scripts and tests read the `listening on` line.

use std::io::Write;

use crate::cli::Cli;
use crate::dev;

/// Prints the banner for a server on `addr`.
pub(crate) fn announce(addr: std::net::SocketAddr, dev_token: Option<&str>, cli: &Cli, tls: bool) {
    let scheme = if tls { "https" } else { "http" };
    let mut out = std::io::stdout().lock();
    if let Some(token) = dev_token {
        let _ = writeln!(
            out,
            "WARNING: dev mode (no --jwks): tokens are signed by an ephemeral key that dies with \
             this process. Do not expose this server; give --jwks, --issuer and --audience in production."
        );
        let _ = writeln!(
            out,
            "token for tenant {} user {} (scope SecurityEvents.ReadWrite.All, valid 1 hour):",
            dev::TENANT,
            dev::USER
        );
        let _ = writeln!(out, "{token}");
        let _ = writeln!(
            out,
            "try: curl -i -X PATCH {scheme}://{addr}/beta/me/security -H 'Authorization: Bearer {token}' \
             -H 'Content-Type: application/json' -d '{{\"@odata.type\": \"#microsoft.graph.security.security\"}}'"
        );
    }
    let store = if cli.memory {
        "memory (nothing is kept)".to_owned()
    } else if cli.postgres.is_some() {
        "PostgreSQL".to_owned()
    } else {
        format!("embedded, in {}", cli.data.display())
    };
    let _ = writeln!(out, "store: {store}");
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}
