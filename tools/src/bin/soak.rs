//! A bounded load and soak run against the real server binary over loopback.
//!
//! It starts `security-update-server` (JWT mode, with a JWKS it makes, so it can mint a token
//! for each of many users), then for a fixed time drives many keep-alive connections: half of
//! them write one shared object, the rest each write their own. Every writer sets its own
//! member to a counter, so the last acknowledged value of every writer must be in the object
//! at the end; anything else is a lost update. It reports requests/s, latency percentiles,
//! status counts (5xx must be 0), lost updates (must be 0) and the server's memory growth,
//! then stops the server and exits non-zero if an invariant broke. With a durable store
//! (`--durable`, `--postgres`) it also times synced 4 KiB writes in the temporary directory's
//! file system before and after the load: what the store's commits wait on, in the same run.
//!
//! ```text
//! cargo build --release -p security-update-server -p security-update-tools
//! target/release/soak --seconds 20 --connections 64            # memory store
//! target/release/soak --seconds 20 --connections 64 --durable  # embedded store
//! target/release/soak --postgres postgres://postgres@127.0.0.1:5432/test   # PostgreSQL
//! target/release/soak --spread --server-cpu 0                  # every connection its own object,
//!                                                              # the server pinned to core 0
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use security_update::auth::EphemeralSigner;
use serde_json::{Value, json};

const ISS: &str = "https://soak.invalid/";
const AUD: &str = "api://soak";
const TENANT: &str = "50a50a50-0000-4000-8000-000000000000";

struct Options {
    seconds: u64,
    connections: usize,
    durable: bool,
    server: String,
    /// `--postgres URL`: the PostgreSQL store.
    postgres: Option<String>,
    /// `--spread`: every connection writes its own object (none shared).
    spread: bool,
    /// `--server-cpu N`: run the server under `taskset -c N`.
    server_cpu: Option<String>,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 20,
        connections: 64,
        durable: false,
        server: "target/release/security-update-server".to_owned(),
        postgres: None,
        spread: false,
        server_cpu: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => options.seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(20),
            "--connections" => {
                options.connections = args.next().and_then(|v| v.parse().ok()).unwrap_or(64);
            }
            "--durable" => options.durable = true,
            "--server" => options.server = args.next().unwrap_or(options.server),
            "--postgres" => options.postgres = args.next(),
            "--spread" => options.spread = true,
            "--server-cpu" => options.server_cpu = args.next(),
            other => {
                eprintln!("unknown argument {other}");
                #[allow(clippy::exit)] // a usage error in a load tool: nothing to clean up yet
                std::process::exit(2);
            }
        }
    }
    options
}

fn user(n: usize) -> String {
    format!("50a50a50-0000-4000-8000-{n:012}")
}

fn token(signer: &EphemeralSigner, user: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    signer
        .sign(
            &json!({"iss": ISS, "aud": AUD, "exp": now + 3600, "nbf": now - 5, "tid": TENANT,
            "oid": user, "scp": "SecurityEvents.ReadWrite.All"}),
        )
        .unwrap()
}

/// CPU time each thread of process `pid` has used so far, in clock ticks (user, system), by
/// thread name: what a store costs the server a request, and whether it had the core to itself.
/// The whole process under the name "" (threads that ended included), each live thread under
/// its own.
fn cpu_ticks(pid: u32) -> BTreeMap<String, (u64, u64)> {
    let mut by_name: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    if let Some((_, ticks)) = stat_ticks(&format!("/proc/{pid}/stat")) {
        by_name.insert(String::new(), ticks);
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Some((name, (user, system))) = stat_ticks(&task.path().join("stat").to_string_lossy())
        else {
            continue;
        };
        let entry = by_name.entry(name).or_default();
        entry.0 += user;
        entry.1 += system;
    }
    by_name
}

/// The name and the (user, system) ticks in a `stat` file of `proc_pid_stat(5)`.
fn stat_ticks(path: &str) -> Option<(String, (u64, u64))> {
    let stat = std::fs::read_to_string(path).ok()?;
    // `pid (comm) state ...`: the name may hold spaces, so split after its last ')'.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Fields 14 and 15, counted here from the state (field 3).
    let user = fields.get(11)?.parse().ok()?;
    let system = fields.get(12)?.parse().ok()?;
    Some((stat[open + 1..close].to_owned(), (user, system)))
}

/// Microseconds of CPU a request, by thread name, between two `cpu_ticks` readings.
fn cpu_report(
    before: &BTreeMap<String, (u64, u64)>,
    after: &BTreeMap<String, (u64, u64)>,
    requests: u64,
    seconds: f64,
) -> String {
    // sysconf is not reachable without libc; Linux has reported 100 ticks a second (USER_HZ)
    // on every architecture since 2.6, whatever the kernel's own HZ.
    const TICKS_PER_SECOND: f64 = 100.0;
    let micros = |ticks: u64| ticks as f64 * 1e6 / TICKS_PER_SECOND / requests.max(1) as f64;
    let spent = |name: &str, &(user, system): &(u64, u64)| {
        let (user0, system0) = before.get(name).copied().unwrap_or_default();
        (user.saturating_sub(user0), system.saturating_sub(system0))
    };
    // The process's own count keeps the time of threads that ended (tokio's blocking
    // threads leave after 10 s idle); the threads' are the breakdown.
    let total = after
        .get("")
        .map(|ticks| spent("", ticks))
        .unwrap_or_default();
    let mut threads = Vec::new();
    for (name, ticks) in after.iter().filter(|(name, _)| !name.is_empty()) {
        let (user, system) = spent(name, ticks);
        if user + system > 0 {
            threads.push(format!("{name} {:.1}", micros(user + system)));
        }
    }
    let busy = (total.0 + total.1) as f64 / TICKS_PER_SECOND / seconds;
    format!(
        "server CPU: {:.1} us a request (user {:.1}, system {:.1}; by thread: {}), {:.0}% of one core",
        micros(total.0 + total.1),
        micros(total.0),
        micros(total.1),
        threads.join(", "),
        busy * 100.0
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Synced writes [`sync_latency`] times.
const SYNC_SAMPLES: usize = 50;

/// How long a 4 KiB write and its `fdatasync` take in `dir`'s file system: the median and the
/// 90th percentile of [`SYNC_SAMPLES`] appended to a new file (as `dd oflag=dsync` does), in
/// microseconds. A durable store answers a write only once it is synced, so its throughput
/// follows this figure.
fn sync_latency(dir: &Path) -> std::io::Result<(u64, u64)> {
    let path = dir.join("sync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5a_u8; 4096];
    let mut times = Vec::with_capacity(SYNC_SAMPLES);
    for _ in 0..SYNC_SAMPLES {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    drop(file);
    std::fs::remove_file(&path)?;
    times.sort_unstable();
    Ok((times[SYNC_SAMPLES / 2], times[SYNC_SAMPLES * 9 / 10]))
}

/// A [`sync_latency`] figure as the report prints it.
fn shown_sync(measured: &std::io::Result<(u64, u64)>) -> String {
    match measured {
        Ok((median, p90)) => format!("p50 {median} us, p90 {p90} us"),
        Err(error) => format!("not measured ({error})"),
    }
}

#[tokio::main]
async fn main() {
    let options = options();
    let dir = std::env::temp_dir().join(format!("security-update-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let signer = EphemeralSigner::generate().unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, serde_json::to_string(signer.jwks()).unwrap()).unwrap();
    let schema = dir.join("schema.json");
    std::fs::write(&schema, r#"{"type":"object"}"#).unwrap();

    let mut command = match &options.server_cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpu, &options.server]);
            command
        }
        None => Command::new(&options.server),
    };
    command.args([
        "--listen",
        ":0",
        "--jwks",
        jwks.to_str().unwrap(),
        "--issuer",
        ISS,
        "--audience",
        AUD,
    ]);
    command.args(["--schema", schema.to_str().unwrap(), "--rate-limit", "0"]);
    if let Some(url) = &options.postgres {
        command.args(["--postgres", url]);
    } else if options.durable {
        command.args(["--data", dir.join("data").to_str().unwrap()]);
    } else {
        command.arg("--memory");
    }
    let mut server = command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (build it with cargo build --release)",
                options.server
            )
        });
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .unwrap();
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.parse().unwrap();
        }
    };
    let pid = server.id();

    // Half the connections share one user's object; the others each have their own.
    let shared_user = user(0);
    let writers: Vec<(usize, String)> = (0..options.connections)
        .map(|i| {
            (
                i,
                if i % 2 == 0 && !options.spread {
                    shared_user.clone()
                } else {
                    user(i + 1)
                },
            )
        })
        .collect();
    // The disk a durable store waits on, measured beside the run (before and after it): its
    // speed moves from hour to hour on a shared machine, and the store's with it.
    let disk_before = (options.durable || options.postgres.is_some()).then(|| sync_latency(&dir));
    let warmup_rss = rss_kib(pid);
    let cpu_before = cpu_ticks(pid);
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let statuses: Arc<std::sync::Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = writers
        .iter()
        .cloned()
        .map(|(writer, user)| {
            let token = token(&signer, &user);
            let statuses = statuses.clone();
            let errors = errors.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut last_acknowledged: Option<u64> = None;
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let _ = stream.set_nodelay(true);
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let body = json!({ format!("w{writer}"): n }).to_string();
                    let request = Request::patch("/beta/me/security")
                        .header("authorization", format!("Bearer {token}"))
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    let sent = Instant::now();
                    let Ok(response) = sender.send_request(request).await else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    };
                    let status = response.status().as_u16();
                    let _ = response.into_body().collect().await;
                    latencies.push(sent.elapsed().as_micros() as u64);
                    *statuses.lock().unwrap().entry(status).or_default() += 1;
                    if status == 200 {
                        last_acknowledged = Some(n);
                    }
                }
                (writer, user, last_acknowledged, latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut expected: Vec<(usize, String, u64)> = Vec::new();
    for task in tasks {
        let (writer, user, last, mut lat) = task.await.unwrap();
        latencies.append(&mut lat);
        if let Some(last) = last {
            expected.push((writer, user, last));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let end_rss = rss_kib(pid);
    let cpu_after = cpu_ticks(pid);
    let disk_after = disk_before.is_some().then(|| sync_latency(&dir));

    // Every writer's last acknowledged value must be what the object holds.
    let mut lost = 0;
    for (writer, user, last) in &expected {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::get("/beta/me/security")
            .header("authorization", format!("Bearer {}", token(&signer, user)))
            .body(Full::<Bytes>::default())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let object: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if object[format!("w{writer}")] != json!(last) {
            lost += 1;
            eprintln!(
                "lost update: writer {writer} acknowledged {last}, object has {}",
                object[format!("w{writer}")]
            );
        }
    }

    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);

    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let statuses = statuses.lock().unwrap().clone();
    let total: u64 = statuses.values().sum();
    let server_errors: u64 = statuses
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, c)| c)
        .sum();
    println!(
        "store: {}",
        if options.postgres.is_some() {
            "PostgreSQL (the database's own CPU is not counted below)"
        } else if options.durable {
            "embedded (redb, group commit, fsync before each answer)"
        } else {
            "memory"
        }
    );
    println!(
        "connections: {} ({} on one shared object, {} on their own), {elapsed:.1} s",
        options.connections,
        if options.spread {
            0
        } else {
            options.connections.div_ceil(2)
        },
        if options.spread {
            options.connections
        } else {
            options.connections / 2
        }
    );
    println!(
        "requests: {total}, {:.0} requests/s",
        total as f64 / elapsed
    );
    println!(
        "latency: p50 {} us, p90 {} us, p99 {} us, max {} us",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        latencies.last().copied().unwrap_or(0)
    );
    if let (Some(before), Some(after)) = (&disk_before, &disk_after) {
        println!(
            "disk: a 4 KiB write and its fdatasync in {}'s file system ({SYNC_SAMPLES} each) \
             {} before the run, {} after",
            std::env::temp_dir().display(),
            shown_sync(before),
            shown_sync(after)
        );
    }
    println!(
        "statuses: {statuses:?}; transport errors: {}",
        errors.load(Ordering::Relaxed)
    );
    println!("5xx: {server_errors}");
    println!("{}", cpu_report(&cpu_before, &cpu_after, total, elapsed));
    println!(
        "lost updates: {lost} (of {} writers checked)",
        expected.len()
    );
    println!(
        "server memory: {warmup_rss} KiB at start, {end_rss} KiB at end, growth {} KiB",
        end_rss.saturating_sub(warmup_rss)
    );
    if server_errors > 0 || lost > 0 || errors.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
}
