//! A throwaway `PostgreSQL` database per test, on the server named by
//! `SECURITY_UPDATE_TEST_POSTGRES` (CI sets it; locally, tests that need it say they skipped).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinHandle;

pub const VAR: &str = "SECURITY_UPDATE_TEST_POSTGRES";

/// The server URL, or `None` after saying clearly that the test is skipped. Under CI a missing
/// variable fails the test instead: there the postgres tests must run.
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var(VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "{VAR} is not set under CI: the PostgreSQL tests must run there"
            );
            // Written to the real stderr, not through eprintln!, so libtest's capture does not
            // hide it: a skipped test must say so in the run's output.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set {VAR}=postgres://user@127.0.0.1:5432/db to run it"
            );
            None
        }
    }
}

/// A database created for one test and dropped after it.
pub struct TestDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create(test: &str) -> Option<Self> {
        let admin_url = server_url(test)?;
        let name = format!(
            "su_test_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = with_database(&admin_url, &name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    /// The URL of this database through another `host:port` (a proxy).
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        format!(
            "postgres://{}@{addr}/{}",
            user_of(&self.admin_url),
            self.name
        )
    }

    /// Host and port of the real server.
    pub fn upstream(&self) -> String {
        let after_scheme = self.admin_url.split_once("://").unwrap().1;
        let host_port = after_scheme.split('/').next().unwrap();
        host_port
            .rsplit_once('@')
            .map_or(host_port, |(_, hp)| hp)
            .to_owned()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = connect(&admin_url).await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

fn user_of(url: &str) -> String {
    let after_scheme = url.split_once("://").unwrap().1;
    let host_part = after_scheme.split('/').next().unwrap();
    host_part
        .rsplit_once('@')
        .map_or("postgres", |(user, _)| user)
        .to_owned()
}

/// A TCP proxy the test owns, to cut the database away and bring it back, or to leave the
/// connections open now hanging.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    hung: Arc<tokio::sync::Notify>,
}

impl Proxy {
    pub async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let hung = Arc::new(tokio::sync::Notify::new());
        let (is_cut, tasks, hangs) = (cut.clone(), connections.clone(), hung.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if is_cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (upstream, hangs) = (upstream.clone(), hangs.clone());
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let hang = hangs.notified();
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            () = hang => {
                                // Both sockets stay open and nothing more passes: a host
                                // gone, or a network dropping packets, as a client sees it.
                                std::future::pending::<()>().await;
                            }
                        }
                    }
                });
                tasks.lock().unwrap().push(task);
            }
        });
        Self {
            addr,
            cut,
            connections,
            hung,
        }
    }

    /// Stops relaying on every connection open now, holding them open; later connections
    /// are relayed.
    pub fn hang(&self) {
        self.hung.notify_waiters();
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}
