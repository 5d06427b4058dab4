//! One structured log line per request: method, path, status, latency, request-id.
//! Never headers, query strings or bodies, so never a token. The path is the client's: it is
//! escaped so that no byte of it can end a line or forge a field (see [`escape`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{Method, Request, Response};
use pin_project_lite::pin_project;
use tower::Service;
use tracing::level_filters::LevelFilter;

use crate::direct_lines::{DirectLines, Field, Line, field, head};

#[derive(Debug, Clone)]
pub(crate) struct AccessLog<S> {
    inner: S,
    lines: DirectLines,
}

impl<S> AccessLog<S> {
    pub(crate) fn new(inner: S, lines: DirectLines) -> Self {
        Self { inner, lines }
    }
}

impl<S, B, ResBody> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = LogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        tracing::debug!(method = %request.method(), "request started");
        // With every level off (`RUST_LOG=off`, set once at start-up) no line can be written
        // for this request: its path is not copied, the clock not read, the sink not shared.
        // Boxed: inline, its ~136 bytes (the path is kept in place) were in every request's
        // future, and in each of the futures around it, copied as each was made.
        let record = (LevelFilter::current() >= LevelFilter::WARN).then(|| {
            Box::new(Record {
                lines: self.lines.clone(),
                method: request.method().clone(),
                path: ShownPath::of(request.uri().path()),
                started: Instant::now(),
            })
        });
        LogFuture {
            record,
            inner: self.inner.call(request),
        }
    }
}

/// What the lines of one request say besides its answer, taken when it arrives.
struct Record {
    lines: DirectLines,
    method: Method,
    path: ShownPath,
    started: Instant,
}

pin_project! {
    pub(crate) struct LogFuture<F> {
        #[pin]
        inner: F,
        record: Option<Box<Record>>,
    }
}

impl<F, B, E> Future for LogFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let (Ok(response), Some(record)) = (&result, this.record.as_ref()) {
            record.write(response);
        }
        Poll::Ready(result)
    }
}

impl Record {
    /// The lines of a request answered with `response`: a warning when the store failed, and
    /// the access line.
    fn write<B>(&self, response: &Response<B>) {
        if let Some(detail) = response
            .extensions()
            .get::<security_update::GraphError>()
            .and_then(|error| error.detail())
        {
            tracing::warn!(path = %self.path.as_str(), detail, "request failed in the store");
        }
        // `tracing::info!(method = %method, path = %path, status, latency_us, request_id,
        // "request")`, written directly (`direct_lines`).
        if crate::line_gate::wanted!(
            target: module_path!(),
            tracing::Level::INFO,
            fields: ["message", "method", "path", "status", "latency_us", "request_id"]
        ) {
            let request_id = response
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            let latency_us = self.started.elapsed().as_micros() as u64;
            self.lines
                .write(head!(INFO, module_path!(), "request"), |line| {
                    match self.method {
                        Method::PATCH => line.constant(field!("method" = %"PATCH")),
                        Method::GET => line.constant(field!("method" = %"GET")),
                        Method::POST => line.constant(field!("method" = %"POST")),
                        _ => line.shown(field!("method"), self.method.as_str()),
                    }
                    self.path.show(line, field!("path"));
                    line.number(field!("status"), u64::from(response.status().as_u16()));
                    line.number(field!("latency_us"), latency_us);
                    line.text(field!("request_id"), request_id);
                });
        }
    }
}

/// The response header the line's `request_id` comes from; a constant, so that the lookup
/// does not parse the name on every request.
const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("request-id");

/// Longest path kept in place: a path as long as this, all of it printable ASCII without
/// quotes or backslashes, is its own escape and is kept as it is, without an allocation.
const INLINE_PATH: usize = 64;

/// The path as the access line shows it ([`escape`]d, at most 256 characters), kept without
/// an allocation for the usual short and plain path.
pub(crate) enum ShownPath {
    Inline([u8; INLINE_PATH], u8),
    Escaped(String),
}

impl ShownPath {
    pub(crate) fn of(path: &str) -> Self {
        let bytes = path.as_bytes();
        if bytes.len() <= INLINE_PATH && bytes.iter().all(|&b| is_shown_as_is(char::from(b))) {
            let mut inline = [0; INLINE_PATH];
            inline[..bytes.len()].copy_from_slice(bytes);
            // At most INLINE_PATH (64) bytes: fits a u8.
            Self::Inline(inline, bytes.len() as u8)
        } else {
            Self::Escaped(escape(path, 256))
        }
    }

    /// Writes the path as field `field` of `line`: kept in place, it goes as it is, without
    /// being made a `&str` again (a UTF-8 check per line).
    pub(crate) fn show(&self, line: &mut Line<'_>, field: &Field) {
        match self {
            Self::Inline(bytes, len) => line.shown_plain(field, &bytes[..usize::from(*len)]),
            Self::Escaped(text) => line.shown(field, text),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Printable ASCII, checked when made.
            Self::Inline(bytes, len) => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("")
            }
            Self::Escaped(text) => text,
        }
    }
}

/// Whether `c` is written as it is by [`escape`].
fn is_shown_as_is(c: char) -> bool {
    c.is_ascii_graphic() && c != '"' && c != '\\'
}

/// `text`, at most `max_chars` of it, with everything but printable ASCII (space, quotes and
/// backslashes included) written as `\u{..}`: line and paragraph separators (U+2028, U+0085),
/// bidi overrides (U+202E) and look-alike spaces (U+00A0) cannot forge a log field or line.
pub(crate) fn escape(text: &str, max_chars: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len().min(max_chars));
    for c in text.chars().take(max_chars) {
        if is_shown_as_is(c) {
            out.push(c);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of one `method` request to a service answering 200 at once, under `filter`.
    fn served(filter: &str, format: crate::cli::LogFormat, method: Method) -> Vec<String> {
        use tower::ServiceExt;
        use tracing_subscriber::layer::SubscriberExt;
        crate::direct_lines::tests::direct(format, |log| {
            let service = AccessLog::new(
                tower::service_fn(|_: Request<()>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(()))
                }),
                log.clone(),
            );
            let subscriber = tracing_subscriber::registry()
                .with(tracing_subscriber::EnvFilter::new(filter))
                .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
            let _default = tracing::subscriber::set_default(subscriber);
            let request = Request::builder()
                .method(method)
                .uri("/beta/me/security")
                .body(())
                .unwrap();
            let response = futures_now(service.oneshot(request)).unwrap();
            assert_eq!(response.status(), 200);
        })
    }

    /// One line per request when its event would be written, as `RUST_LOG` says: by target
    /// and level, and by the field names a directive names (the line's or another event's).
    #[test]
    fn a_line_per_request_when_its_event_would_be_written() {
        for (filter, lines) in [
            ("info", 1),
            ("warn", 0),
            ("info,security_update_server::access_log=off", 0),
            ("off,security_update_server::access_log=info", 1),
            (
                "warn,security_update_server::access_log[{latency_us}]=info",
                1,
            ),
            (
                "info,security_update_server::access_log[{request_id}]=off",
                0,
            ),
            ("warn,security_update_server::access_log[{detail}]=info", 0),
        ] {
            let written = served(filter, crate::cli::LogFormat::Text, Method::GET);
            assert_eq!(written.len(), lines, "{filter}: {written:?}");
        }
    }

    /// The line is the event's, byte for byte, in both formats, for the methods written as
    /// constants and for others.
    #[test]
    fn lines_are_the_events_lines_for_every_method() {
        for format in [crate::cli::LogFormat::Text, crate::cli::LogFormat::Json] {
            for method in [
                Method::PATCH,
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
            ] {
                let ours = served("info", format, method.clone());
                assert_eq!(ours.len(), 1, "{ours:?}");
                // The latency the line measured, for the event to say the same.
                let after = ours[0].split("latency_us").nth(1).unwrap();
                let digits: String = after
                    .chars()
                    .skip_while(|c| !c.is_ascii_digit())
                    .take_while(char::is_ascii_digit)
                    .collect();
                let latency_us: u64 = digits.parse().unwrap();
                let theirs = crate::direct_lines::tests::through_tracing(format, || {
                    tracing::info!(
                        target: "security_update_server::access_log",
                        method = %method,
                        path = %"/beta/me/security",
                        status = 200u64,
                        latency_us,
                        request_id = "-",
                        "request"
                    );
                });
                assert_eq!(ours, theirs, "{format:?} {method}");
            }
        }
    }

    /// A future that is ready at once, polled once.
    fn futures_now<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
        {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("not ready at once"),
        }
    }

    #[test]
    fn client_text_cannot_forge_a_field_or_a_line() {
        assert_eq!(escape("/beta/me/security", 256), "/beta/me/security");
        for forged in [
            "/beta/log\u{a0}status=200",
            "/beta/log\u{2028}status=200",
            "/beta/log\u{85}x",
            "/beta/\u{202e}txt",
            "/a b\"c\\d\ne",
        ] {
            let escaped = escape(forged, 256);
            assert!(
                escaped.chars().all(|c| c.is_ascii_graphic()),
                "{forged:?} -> {escaped:?}"
            );
            assert!(!escaped.contains('"') && escaped.matches('\\').count() >= 1);
        }
        assert_eq!(escape("a\u{a0}b", 256), "a\\u{a0}b");
        assert_eq!(escape(&"x".repeat(300), 256).len(), 256);
        // Kept in place or escaped, the path shows the same.
        for path in [
            "/beta/me/security",
            "/users/a\"b/security",
            "/a b",
            "/\u{2028}",
            &format!("/{}", "x".repeat(63)),
            &format!("/{}", "x".repeat(64)),
            &"y".repeat(300),
        ] {
            assert_eq!(ShownPath::of(path).as_str(), escape(path, 256), "{path}");
        }
        assert!(matches!(
            ShownPath::of("/beta/me/security"),
            ShownPath::Inline(..)
        ));
    }
}
