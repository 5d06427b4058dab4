//! The two baselines of the benches, served over loopback exactly as `security-update-server`
//! serves our stack (hyper-util auto builder, tokio with the same number of worker threads), so
//! `scripts/loopback.sh` can load all three the same way.
//!
//! ```text
//! cargo run --release -p security-update-tools --bin bench_servers -- floor 127.0.0.1:8091 1
//! cargo run --release -p security-update-tools --bin bench_servers -- axum  127.0.0.1:8092 1
//! ```

#[path = "../../../benches/support/mod.rs"]
mod support;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "floor".to_owned());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8091".to_owned());
    let workers: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        println!("listening on {}", listener.local_addr().expect("addr"));
        let serving = async move {
            match which.as_str() {
                "axum" => serve(listener, support::axum_baseline()).await,
                _ => serve(listener, support::Floor::default().service()).await,
            }
        };
        // Ctrl-C (SIGINT) returns from `main`, so that an instrumented build
        // (scripts/pgo_build.sh) writes its profile at exit.
        tokio::select! {
            () = serving => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
}

async fn serve<S, B>(listener: tokio::net::TcpListener, service: S)
where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
