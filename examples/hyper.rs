//! Serves the security-update stack with plain hyper (HTTP/1.1 and HTTP/2) under `/beta`, on
//! the in-memory store, with one fixed demo token.
//!
//! ```text
//! cargo run --example hyper
//! curl -i -X PATCH http://127.0.0.1:3001/beta/me/security -H 'Authorization: Bearer demo' \
//!   -H 'Content-Type: application/json' -d '{"@odata.type": "#microsoft.graph.security.security"}'
//! ```

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use security_update::{MemoryStore, Principal, StackBuilder, StaticTokens, stack};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let tokens = StaticTokens::new().with_token(
        "demo",
        Principal::delegated(
            "00000000-0000-4000-8000-00000000d3e0",
            "00000000-0000-4000-8000-0000000000a1",
        )
        .with_scopes(["SecurityEvents.ReadWrite.All"]),
    );
    let service = StackBuilder::new(MemoryStore::new())
        .with_path_prefix("/beta")
        .into_service();
    let app = stack(service, tokens);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let app = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            if let Err(error) = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), app)
                .await
            {
                eprintln!("connection error: {error}");
            }
        });
    }
}
