//! Log lines: formatted by `tracing-subscriber` on the thread that logs, gathered in one
//! memory buffer, and written to stderr in batches by one background thread.
//!
//! A line costs an append under a mutex: no allocation per line, no channel message, and no
//! wake-up per line. `tracing-appender`, which this replaces, sends every line through a
//! channel and wakes its writer thread for it; profiled under load (one pinned worker, two
//! lines per PATCH) those wake-ups and one `write` per line cost the worker about a tenth
//! of its core. Here the writer thread is woken once per batch, lingers [`LINGER`] to let
//! the batch fill, and writes it with one system call.
//!
//! Bounds: the buffer holds at most [`MAX_BUFFERED`] bytes. It is not lossy (audit lines must
//! not be dropped): when stderr cannot keep up, loggers wait for room, as they would for a
//! blocking write. On a clean exit the guard writes out what is left.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::LogFormat;
use crate::direct_lines::DirectLines;

/// How long the writer thread waits after the first line of a batch before writing it: the
/// delay a line may see before it reaches stderr, and what turns a line per system call into
/// a batch per system call under load.
const LINGER: Duration = Duration::from_millis(5);
/// Most bytes waiting to be written; loggers wait beyond it.
const MAX_BUFFERED: usize = 4 * 1024 * 1024;
/// How long the exit waits for the buffer to be written: a stderr nobody reads (a stalled
/// pipe, a paused terminal) must not keep the process from exiting.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Installs the global subscriber: `RUST_LOG` (default `info`) with the audit trail kept at
/// `info` unless `RUST_LOG` names it, in `format`; and gives the writer of the access and
/// audit lines (`direct_lines`), in the same format into the same buffer. Keep the guard
/// until the end of `main`.
///
/// # Errors
/// When the writer thread cannot be started.
pub(crate) fn install(format: LogFormat) -> std::io::Result<(FlushOnExit, DirectLines)> {
    let (writer, guard) = BatchedStderr::start_with(std::io::stderr(), EXIT_WAIT)?;
    let direct = {
        let writer = writer.clone();
        DirectLines::new(
            format,
            Arc::new(move |line: &[u8]| {
                // As `tracing-subscriber` hands over a line: whole, in one write.
                let _ = writer.make_writer().write_all(line);
            }),
        )
    };
    let filter_text = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let mut filter = EnvFilter::try_new(&filter_text).unwrap_or_else(|_| EnvFilter::new("info"));
    if !filter_text.contains("security_update::audit")
        && let Ok(directive) = "security_update::audit=info".parse()
    {
        filter = filter.add_directive(directive);
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => logs.event_format(crate::text_lines::TextLines).init(),
        // One JSON object per line, for log shippers.
        LogFormat::Json => logs.event_format(crate::json_lines::JsonLines).init(),
    }
    Ok((guard, direct))
}

/// What loggers and the writer thread share.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// The writer thread waits here for a first line or for the end.
    work: Condvar,
    /// Loggers wait here for room.
    room: Condvar,
    /// The exit waits here for the writer thread to finish.
    finished: Condvar,
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<u8>,
    /// The writer thread is asleep waiting for a first line.
    idle: bool,
    closing: bool,
    /// The writer thread has written everything and stopped.
    done: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A logger that panicked mid-append left whole lines or a cut one; keep logging.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `MakeWriter` given to `tracing-subscriber`.
#[derive(Debug, Clone)]
pub(crate) struct BatchedStderr {
    shared: Arc<Shared>,
}

/// Writes out what is buffered and stops the writer thread when dropped, waiting for it at
/// most `wait`.
#[derive(Debug)]
pub(crate) struct FlushOnExit {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    wait: Duration,
}

impl BatchedStderr {
    fn start_with(
        out: impl Write + Send + 'static,
        wait: Duration,
    ) -> std::io::Result<(Self, FlushOnExit)> {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn({
                let shared = shared.clone();
                move || write_batches(&shared, out)
            })?;
        let guard = FlushOnExit {
            shared: shared.clone(),
            thread: Some(thread),
            wait,
        };
        Ok((Self { shared }, guard))
    }
}

/// The writer thread: sleep until a line arrives, linger, take the batch, write it.
fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.pending.is_empty() && !state.closing {
            state.idle = true;
            state = shared
                .work
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.idle = false;
        if !state.closing {
            drop(state);
            std::thread::sleep(LINGER);
            state = shared.lock();
        }
        std::mem::swap(&mut batch, &mut state.pending);
        let closing = state.closing;
        drop(state);
        shared.room.notify_all();
        // A failed write (stderr closed) loses this batch; there is nowhere to report it.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if closing {
            let mut state = shared.lock();
            if state.pending.is_empty() {
                state.done = true;
                shared.finished.notify_all();
                return;
            }
        }
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

/// One event's writer: `tracing-subscriber` formats the whole line first and hands it over
/// in one `write_all`, so lines are never interleaved.
#[derive(Debug)]
pub(crate) struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.shared.lock();
        // Wait for room, unless the buffer is empty (a line longer than the bound still goes).
        while !state.pending.is_empty()
            && state.pending.len() + line.len() > MAX_BUFFERED
            && !state.closing
        {
            state = self
                .shared
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.pending.extend_from_slice(line);
        if state.idle {
            state.idle = false;
            self.shared.work.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for FlushOnExit {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closing = true;
        self.shared.work.notify_one();
        self.shared.room.notify_all();
        let (state, _) = self
            .shared
            .finished
            .wait_timeout_while(state, self.wait, |state| !state.done)
            .unwrap_or_else(PoisonError::into_inner);
        let done = state.done;
        drop(state);
        // Past the wait the thread is left to the process's exit.
        if let (true, Some(thread)) = (done, self.thread.take()) {
            let _ = thread.join();
        }
    }
}

/// What a subscriber writes, kept for the event formats' tests.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct CapturedLines(pub(crate) Arc<Mutex<Vec<u8>>>);

#[cfg(test)]
impl Write for CapturedLines {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A `Write` that keeps what it is given and counts the calls.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<AtomicUsize>,
    }

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.bytes.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Lines from many threads arrive whole, in each thread's order, all of them by the time
    /// the guard is dropped, in far fewer writes than lines.
    #[test]
    fn every_line_arrives_whole_in_batches() {
        let sink = Sink::default();
        let (writer, guard) = BatchedStderr::start_with(sink.clone(), EXIT_WAIT).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        let line = format!("thread {t} line {i} {}\n", "x".repeat(i % 300));
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.bytes.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; 4];
        for line in text.lines() {
            let mut words = line.split(' ');
            assert_eq!(words.next(), Some("thread"), "{line:?}");
            let t: usize = words.next().unwrap().parse().unwrap();
            assert_eq!(words.next(), Some("line"));
            let i: usize = words.next().unwrap().parse().unwrap();
            assert_eq!(i, next[t], "thread {t} out of order or cut");
            assert_eq!(words.next().unwrap().len(), i % 300, "a cut line");
            next[t] += 1;
        }
        assert_eq!(next, [2_000; 4], "lines lost");
        let writes = sink.writes.load(Ordering::SeqCst);
        assert!(
            writes < 8_000,
            "{writes} writes for 8,000 lines: not batched"
        );
    }

    /// Past the bound, a logger waits for the writer instead of growing the buffer.
    #[test]
    fn the_buffer_stays_within_its_bound() {
        /// A slow sink that records the largest batch it was handed.
        #[derive(Clone, Default)]
        struct Slow(Arc<AtomicUsize>);
        impl Write for Slow {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.0.fetch_max(data.len(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let slow = Slow::default();
        let (writer, guard) = BatchedStderr::start_with(slow.clone(), EXIT_WAIT).unwrap();
        let line = vec![b'x'; 64 * 1024];
        for _ in 0..256 {
            writer.make_writer().write_all(&line).unwrap();
        }
        drop(guard);
        let largest = slow.0.load(Ordering::SeqCst);
        assert!(largest <= MAX_BUFFERED, "a batch of {largest} bytes");
        assert!(largest >= line.len());
    }

    /// A stderr that never takes the bytes does not keep the exit waiting past its bound.
    #[test]
    fn the_exit_waits_for_a_stuck_stderr_only_so_long() {
        /// A writer that blocks until told to go on.
        struct Stuck(std::sync::mpsc::Receiver<()>);
        impl Write for Stuck {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.recv();
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (go_on, stuck) = std::sync::mpsc::channel();
        let wait = Duration::from_millis(100);
        let (writer, guard) = BatchedStderr::start_with(Stuck(stuck), wait).unwrap();
        writer.make_writer().write_all(b"a line\n").unwrap();
        let started = std::time::Instant::now();
        drop(guard);
        let waited = started.elapsed();
        assert!(
            waited >= wait,
            "the exit did not wait for the writer: {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(30),
            "the exit hung: {waited:?}"
        );
        let _ = go_on.send(());
    }
}
