//! Mounts the security-update stack in an axum app under `/beta`, next to the app's own
//! routes, on the in-memory store, and prints a ready token and a curl line.
//!
//! ```text
//! cargo run --example axum
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use axum::Router;
use security_update::{MemoryStore, Principal, SecurityUpdateService, StaticTokens, stack};
use tower_http::trace::TraceLayer;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let token = random_token();
    let tokens = StaticTokens::new().with_token(
        &token,
        Principal::delegated(
            "00000000-0000-4000-8000-00000000d3e0",
            "00000000-0000-4000-8000-0000000000a1",
        )
        .with_upn("demo@example.com")
        .with_scopes(["SecurityEvents.ReadWrite.All"]),
    );
    let app = Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .nest_service(
            "/beta",
            stack(SecurityUpdateService::new(MemoryStore::new()), tokens),
        )
        .layer(TraceLayer::new_for_http());

    let addr = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");
    println!("token (in-memory demo, valid while this runs): {token}");
    println!(
        "curl -i -X PATCH http://{addr}/beta/me/security -H 'Authorization: Bearer {token}' \
         -H 'Content-Type: application/json' -d '{{\"@odata.type\": \"#microsoft.graph.security.security\"}}'"
    );
    axum::serve(listener, app).await
}

/// 128 random bits as hex, from the standard library's per-process random hasher keys.
fn random_token() -> String {
    let mut token = String::new();
    for _ in 0..2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        token.push_str(&format!("{:016x}", hasher.finish()));
    }
    token
}
