//! `security-update-server`: Microsoft Graph beta "Update security" served standalone under
//! `/beta`, HTTP/1.1 and HTTP/2, on the embedded durable store by default. `--help` lists the
//! flags. Exit codes: 0 after a clean shutdown, 2 for a bad flag or an unreadable file, 1 when
//! the server cannot start (address or data directory in use).

mod access_log;
mod any_store;
mod audit_lines;
mod backup;
mod banner;
mod cli;
mod client_address;
mod dev;
mod direct_lines;
mod escapes;
mod front_door;
mod json_lines;
mod line_buffer;
mod line_gate;
mod line_time;
mod logs;
mod metrics_endpoint;
mod probes;
mod reload;
mod text_lines;
mod tls;

use std::io::Write;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use security_update::auth::FailureThrottle;
use security_update::metrics::{MetricsLayer, PrometheusMetrics};
use security_update::{
    JwtValidator, MemoryStore, PostgresStore, RateLimitLayer, RedbStore, ResourceSchema,
    StackBuilder, store::PostgresOptions,
};
use tower::Layer;

use access_log::AccessLog;
use any_store::AnyStore;
use cli::Cli;
use front_door::conn_limits::{ConnectionLimits, ConnectionTracker};
use front_door::held_answers::{AnswerBudget, HeldAnswers};

/// Exit code for usage errors, as clap uses.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print in full; a usage error is its first line, exit code 2.
        // clap prints --help / --version itself and exits 0.
        #[allow(clippy::exit)]
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => {
            let text = error.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("{} (see --help)", first.trim());
            return ExitCode::from(USAGE);
        }
    };
    // Log lines go to stderr in batches from a background thread (see `logs`).
    let (_flush_on_exit, log_lines) = match logs::install(cli.log_format) {
        Ok(installed) => installed,
        Err(error) => return fail(1, &format!("cannot start the log writer: {error}")),
    };
    // Use the open-file allowance the system grants (soft limit up to the hard one, as Go and
    // nginx do): the connection cap is derived from it.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::trace!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = cli.worker_threads {
        runtime.worker_threads(workers.max(1));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(1, &format!("cannot start the runtime: {error}")),
    };
    runtime.block_on(run(cli, log_lines))
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

fn read_file(flag: &str, path: &std::path::Path) -> Result<String, ExitCode> {
    std::fs::read_to_string(path).map_err(|error| {
        fail(
            USAGE,
            &format!("cannot read {flag} {}: {error}", path.display()),
        )
    })
}

async fn run(cli: Cli, log_lines: direct_lines::DirectLines) -> ExitCode {
    // Signal handlers first: the default action of SIGHUP and SIGUSR1 ends the process, and a
    // log rotation or a backup cron may send them while the store is still opening; a SIGTERM
    // from then on is kept and acted on when the accept loop starts: a drain, never a kill.
    let hup = reload::sighup();
    let usr1 = backup::install();
    let shutdown = shutdown_signal();
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => {
            let files = tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            match tls::Tls::load(files) {
                Ok(tls) => Some(tls),
                Err(error) => return fail(USAGE, &error),
            }
        }
        _ => None,
    };
    let metrics = cli
        .metrics_listen
        .map(|_| Arc::new(PrometheusMetrics::new()));
    let leeway = Duration::from_secs(cli.leeway);
    let (validator, dev_token) = match (&cli.jwks, &cli.jwks_url) {
        (_, Some(url)) => {
            let refresh = security_update::auth::jwt::JwksRefresh::default();
            match JwtValidator::from_jwks_url(
                url,
                cli.issuer.clone(),
                cli.audience.clone(),
                refresh,
            )
            .await
            {
                Ok(validator) => (validator.with_leeway(leeway), None),
                Err(error) => return fail(1, &format!("--jwks-url: {error}")),
            }
        }
        (Some(path), None) => {
            let json = match read_file("--jwks", path) {
                Ok(json) => json,
                Err(code) => return code,
            };
            match JwtValidator::from_jwks_json(&json, cli.issuer.clone(), cli.audience.clone()) {
                Ok(validator) => (validator.with_leeway(leeway), None),
                Err(error) => return fail(USAGE, &format!("--jwks {}: {error}", path.display())),
            }
        }
        (None, None) => match dev::start(leeway) {
            Ok(dev) => (dev.validator, Some(dev.token)),
            Err(error) => return fail(1, &format!("dev mode: {error}")),
        },
    };
    let (schema, schema_reloader) = match &cli.schema {
        None => (ResourceSchema::graph(), None),
        Some(path) => {
            let text = match read_file("--schema", path) {
                Ok(text) => text,
                Err(code) => return code,
            };
            match reload::parse_schema(&text) {
                Ok(schema) => {
                    let (schema, reloader) = schema.reloadable();
                    (schema, Some((path.clone(), reloader)))
                }
                Err(error) => return fail(USAGE, &format!("--schema {}: {error}", path.display())),
            }
        }
    };
    let validator = match &metrics {
        Some(metrics) => validator.with_observer(metrics.clone()),
        None => validator,
    };
    let reloadable = reload::Reloadable {
        jwks: cli
            .jwks
            .clone()
            .filter(|_| cli.jwks_url.is_none())
            .map(|path| (path, validator.clone())),
        schema: schema_reloader,
    };
    tokio::spawn(reloadable.run(hup.subscribe()));
    let store = if cli.memory {
        AnyStore::Memory(MemoryStore::new())
    } else if let Some(url) = &cli.postgres {
        let options = PostgresOptions {
            max_connections: cli.postgres_pool_size,
            statement_timeout: Duration::from_millis(cli.postgres_statement_timeout_ms),
            ..PostgresOptions::default()
        };
        match PostgresStore::connect(url, options).await {
            Ok(store) => AnyStore::Postgres(store),
            Err(error) => return fail(1, &format!("cannot use PostgreSQL: {}", error.message())),
        }
    } else {
        match RedbStore::open(&cli.data) {
            Ok(store) => AnyStore::Redb(store),
            Err(error) => return fail(1, &error.to_string()),
        }
    };

    let rate_limit = if cli.rate_limit == 0 {
        RateLimitLayer::unlimited()
    } else {
        RateLimitLayer::new(cli.rate_limit, Duration::from_secs(1)).with_burst(
            cli.rate_limit_burst
                .unwrap_or(cli.rate_limit.saturating_mul(2)),
        )
    };
    let readiness = Arc::new(probes::Readiness::new(store.clone()));
    let redb = match &store {
        AnyStore::Redb(store) => Some(store.clone()),
        _ => None,
    };
    backup::on_sigusr1(usr1, redb, cli.backup_dir.clone());
    let builder = StackBuilder::new(store);
    let builder = match &metrics {
        Some(metrics) => builder.with_observer(metrics.clone()),
        None => builder,
    };
    let in_flight = builder.in_flight();
    let builder = match &cli.public_url {
        Some(url) => builder.with_service_root(url),
        None => builder,
    };
    let stack = builder
        .with_schema(schema)
        .with_audit(Arc::new(audit_lines::AuditLines::new(log_lines.clone())))
        .with_path_prefix("/beta")
        .with_body_limit(cli.max_body)
        .with_max_object_bytes(cli.max_object_bytes)
        .with_max_objects_per_tenant(cli.max_objects_per_tenant)
        .with_rate_limit(rate_limit)
        .with_timeout(Duration::from_secs(cli.request_timeout.max(1)))
        .with_failure_throttle(FailureThrottle::new(
            cli.auth_failure_burst,
            cli.auth_failure_rate,
        ))
        .build(validator);
    // Answers not taken are counted from here in; past the budget a request is refused here,
    // logged and measured, before the stack runs it.
    let budget = AnswerBudget::for_process(cli.max_held_bytes, cli.max_held_bytes_per_client);
    // Made for each connection: the stack and the budget know its client, if the peer is
    // one (`client_address`), so that no request carries it.
    let app_for = {
        let (metrics, readiness) = (metrics.clone(), readiness.clone());
        move |client: Option<std::net::IpAddr>| {
            let stack = match client {
                Some(address) => stack.clone().for_client(address),
                None => stack.clone(),
            };
            let held = HeldAnswers::new(stack, budget, metrics.clone()).for_client(client);
            let logged = AccessLog::new(held, log_lines.clone());
            // Probes first: no access-log line, no token, no rate limit, no metrics for them.
            let measured = match &metrics {
                Some(metrics) => {
                    tower::util::Either::Left(MetricsLayer::new(metrics.clone()).layer(logged))
                }
                None => tower::util::Either::Right(logged),
            };
            probes::Probes::new(measured, readiness.clone())
        }
    };

    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(listener) => listener,
        Err(error) => return fail(1, &format!("cannot listen on {}: {error}", cli.listen)),
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => return fail(1, &format!("cannot read the bound address: {error}")),
    };
    if let (Some(metrics), Some(metrics_addr)) = (&metrics, cli.metrics_listen) {
        let service = probes::Probes::new(
            metrics_endpoint::MetricsEndpoint::new(metrics.clone(), budget),
            readiness.clone(),
        );
        match metrics_endpoint::serve(metrics_addr, service).await {
            Ok(bound) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "metrics on {bound}");
            }
            Err(error) => {
                return fail(
                    1,
                    &format!("cannot listen on {metrics_addr} for metrics: {error}"),
                );
            }
        }
    }
    if let Some(tls) = &tls {
        tokio::spawn(tls::watch(
            tls.slot.clone(),
            Duration::from_secs(cli.tls_reload_interval.max(1)),
            hup.subscribe(),
        ));
    }
    banner::announce(addr, dev_token.as_deref(), &cli, tls.is_some());

    let deadlines = front_door::Deadlines {
        first_bytes: Duration::from_secs(cli.first_bytes_timeout.max(1)),
        tls_handshake: Duration::from_secs(cli.tls_handshake_timeout.max(1)),
        header_read: Duration::from_secs(cli.header_read_timeout.max(1)),
        h2_idle: Duration::from_secs(cli.h2_idle_timeout.max(1)),
        write_stall: Duration::from_secs(cli.write_stall_timeout.max(1)),
        grace: Duration::from_secs(cli.h2_idle_timeout.max(1)),
    };
    let max_connections = cli
        .max_connections
        .unwrap_or_else(front_door::conn_limits::default_max_connections);
    let limits = ConnectionLimits::new(
        max_connections,
        cli.max_connections_per_ip
            .unwrap_or_else(|| front_door::conn_limits::default_max_per_client(max_connections)),
    )
    .with_trusted_proxies(cli.trusted_proxies.clone());
    let tracker = Arc::new(ConnectionTracker::new(limits));
    let is_trusted: client_address::IsTrusted = {
        let tracker = tracker.clone();
        Arc::new(move |ip| tracker.is_trusted_proxy(ip))
    };
    let (drain, draining) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(10);
    // After SIGTERM: /readyz says 503 and the server keeps accepting for --drain-delay, so
    // load balancers stop sending before the listener closes.
    let mut drain_delay: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            () = async { drain_delay.as_mut().expect("guarded").await }, if drain_delay.is_some() => {
                tracing::info!("drain delay over: no new connections, draining in-flight requests");
                break;
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => {
                        backoff = Duration::from_millis(10);
                        accepted
                    }
                    Err(error) => {
                        // Out of file descriptors (EMFILE/ENFILE) and the like: back off,
                        // doubling up to a second, instead of spinning on a listener that
                        // stays readable.
                        tracing::warn!(%error, "accept failed; backing off");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                let permit = match tracker.try_acquire(peer.ip()) {
                    Ok(permit) => permit,
                    Err(refusal) => {
                        tracing::debug!(%refusal, "connection refused");
                        if let Some(metrics) = &metrics {
                            metrics.connection_refused(refusal.label());
                        }
                        drop(stream);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let client = client_address::connection_client(peer.ip(), &is_trusted);
                let service = client_address::WithClientAddress::new(
                    app_for(client),
                    peer.ip(),
                    is_trusted.clone(),
                    tls.is_some(),
                );
                let draining = draining.clone();
                let acceptor = tls.as_ref().map(|tls| tls.acceptor.clone());
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    if let Some(metrics) = &metrics {
                        metrics.connection_opened();
                    }
                    front_door::serve_connection(stream, acceptor, service, deadlines, draining).await;
                    drop(permit);
                    if let Some(metrics) = &metrics {
                        metrics.connection_closed();
                    }
                });
            }
            signal = &mut shutdown, if drain_delay.is_none() => {
                readiness.start_draining();
                if cli.drain_delay == 0 {
                    tracing::info!(signal, "shutting down: no new connections, draining in-flight requests");
                    break;
                }
                tracing::info!(signal, delay = cli.drain_delay, "shutting down: /readyz is 503, still accepting for the drain delay");
                drain_delay = Some(Box::pin(tokio::time::sleep(Duration::from_secs(cli.drain_delay))));
            }
        }
    }
    drop(listener);
    let _ = drain.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(cli.shutdown_timeout), async {
        while tracker.active() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Writes whose client went away run on: each must land and be audited before exit.
        in_flight.drained().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("shutdown timeout reached; closing the remaining connections");
    }
    // The accept loop's share of the store goes here; the runtime's tasks (readiness, the
    // metrics port, backups) drop theirs as `main` drops the runtime, and the last one
    // closes redb's file cleanly.
    drop(app_for);
    tracing::info!("store closed; bye");
    ExitCode::SUCCESS
}

/// Resolves with the name of the first of SIGTERM or SIGINT. The handlers are installed here,
/// when this is called, not when the future is first polled: the accept loop may not poll it
/// before a request is answered (`select!` stops at the first ready branch), and a SIGTERM
/// sent before the handler is installed kills the process without a drain.
fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    /// The next delivery of a watched signal; never, for one that could not be watched.
    async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
        match signal {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    use tokio::signal::unix::{SignalKind, signal};
    let watch = |kind: SignalKind, name: &str| {
        signal(kind)
            .inspect_err(|error| tracing::warn!(%error, "cannot watch {name}"))
            .ok()
    };
    let (mut terminate, mut interrupt) = (
        watch(SignalKind::terminate(), "SIGTERM"),
        watch(SignalKind::interrupt(), "SIGINT"),
    );
    async move {
        tokio::select! {
            () = next(&mut terminate) => "SIGTERM",
            () = next(&mut interrupt) => "SIGINT",
        }
    }
}
