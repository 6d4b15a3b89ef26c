//! The log writer: lines go into a bounded buffer in memory, and one
//! background thread writes them out (stderr) in batches.
//!
//! Is: [`Journal`] (the buffer, its writer thread and the drop counter),
//! [`JournalWriter`] (a `tracing_subscriber` `MakeWriter`, so every log
//! event takes the same path and lines stay in order), and
//! [`decision_line`], which serialises a decision straight into a reused
//! byte buffer (no intermediate strings, no JSON value tree).
//!
//! A request never makes a syscall for its log line and never waits for
//! the writer: appending is a memcpy under a short lock. The writer thread
//! wakes every [`FLUSH_INTERVAL`] while lines keep coming and parks when
//! there are none (the next line wakes it: one futex call per idle→busy
//! transition, not per line).
//!
//! When the buffer is full (the reader of stderr is slower than the
//! proxy, or stopped reading), new lines are **dropped and counted**; the
//! next batch written starts with a line saying how many were lost
//! (`"message":"log lines dropped: …","dropped":N`). Requests are never
//! slowed down or blocked by logging. [`Journal::shutdown`] writes
//! everything still buffered: `main` calls it after connections drained,
//! so nothing is lost at a graceful exit.
//!
//! Is not: a file rotator or a remote shipper; it writes to one writer.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer gathers lines before writing a batch.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// The default buffer bound.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

#[derive(Debug, Default)]
struct State {
    bytes: Vec<u8>,
    /// Dropped since the last batch was written (reported with it).
    unreported: u64,
    /// Dropped since the start.
    dropped: u64,
    parked: bool,
    stopping: bool,
    /// The writer thread has exited: nothing more will be written.
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    capacity: usize,
}

/// The buffered, non-blocking line writer; see the module docs.
pub struct Journal {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Starts the writer thread over `out` with a buffer of `capacity`
    /// bytes (at least 4 KiB).
    pub fn start(capacity: usize, out: Box<dyn Write + Send>) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            capacity: capacity.max(4096),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_loop(&s, out))?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Appends one whole line (with its newline); false when it was
    /// dropped because the buffer is full.
    pub fn append(&self, line: &[u8]) -> bool {
        let mut st = self.shared.lock();
        if st.closed || st.bytes.len() + line.len() > self.shared.capacity {
            st.unreported += 1;
            st.dropped += 1;
            return false;
        }
        st.bytes.extend_from_slice(line);
        if st.parked {
            st.parked = false;
            drop(st);
            self.shared.wake.notify_one();
        }
        true
    }

    /// Lines dropped since the start.
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }

    /// Writes everything buffered and stops the writer thread. Later
    /// lines are dropped.
    pub fn shutdown(&self) {
        {
            let mut st = self.shared.lock();
            st.stopping = true;
        }
        self.shared.wake.notify_one();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn write_loop(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut batch: Vec<u8> = Vec::with_capacity(shared.capacity);
    loop {
        let (dropped, stop) = {
            let mut st = shared.lock();
            while st.bytes.is_empty() && st.unreported == 0 && !st.stopping {
                st.parked = true;
                st = shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            st.parked = false;
            std::mem::swap(&mut st.bytes, &mut batch);
            (std::mem::take(&mut st.unreported), st.stopping)
        };
        if dropped > 0 {
            let mut line = Vec::with_capacity(160);
            timestamp_prefix(&mut line, "WARN");
            let _ = writeln!(
                line,
                "\"message\":\"log lines dropped: the log reader fell behind and the buffer was full\",\"dropped\":{dropped},\"target\":\"egress_proxy::journal\"}}"
            );
            let _ = out.write_all(&line);
        }
        if !batch.is_empty() {
            let _ = out.write_all(&batch);
            batch.clear();
        }
        let _ = out.flush();
        if stop {
            // Whatever arrived while writing the last batch; then close.
            let rest = {
                let mut st = shared.lock();
                st.closed = true;
                std::mem::take(&mut st.bytes)
            };
            let _ = out.write_all(&rest);
            let _ = out.flush();
            return;
        }
        std::thread::sleep(FLUSH_INTERVAL);
    }
}

static GLOBAL: OnceLock<Journal> = OnceLock::new();

/// Whether decision lines are written as JSON by [`decision_line`] (the
/// `json` log format) rather than formatted by `tracing` (text).
static JSON_DECISIONS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the direct JSON path for decision lines on or off.
pub fn set_json_decisions(on: bool) {
    JSON_DECISIONS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Makes `journal` the process's log writer (once).
pub fn install(journal: Journal) -> &'static Journal {
    GLOBAL.get_or_init(|| journal)
}

/// The installed journal, if `main` installed one.
pub fn global() -> Option<&'static Journal> {
    GLOBAL.get()
}

/// `tracing_subscriber` writer for the installed journal (stderr when
/// none is installed).
#[derive(Clone, Copy, Debug, Default)]
pub struct JournalWriter;

/// One event's writer: the formatter writes each event in one call.
#[derive(Debug)]
pub enum LineWriter {
    Journal(&'static Journal),
    Stderr(io::Stderr),
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Journal(j) => {
                j.append(buf);
                Ok(buf.len())
            }
            Self::Stderr(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Journal(_) => Ok(()),
            Self::Stderr(e) => e.flush(),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for JournalWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        match global() {
            Some(j) => LineWriter::Journal(j),
            None => LineWriter::Stderr(io::stderr()),
        }
    }
}

/// The fields of one decision line.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    pub client: SocketAddr,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub decision: &'a str,
    pub reason: &'a str,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// Serialises `d` as one JSON line (the shape tracing's JSON formatter
/// gives other events: timestamp, level, message, fields, target) and
/// appends it to the installed journal. False when there is no journal
/// or the log format is not JSON (the caller then goes through `tracing`).
pub fn decision_line(d: &Decision<'_>) -> bool {
    if !JSON_DECISIONS.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    let Some(j) = global() else {
        return false;
    };
    LINE.with(|cell| {
        let mut b = cell.borrow_mut();
        b.clear();
        write_decision(&mut b, d);
        j.append(&b);
    });
    true
}

/// `{"timestamp":"…","level":"…",` — the opening of every line we write.
fn timestamp_prefix(b: &mut Vec<u8>, level: &str) {
    let _ = write!(
        b,
        "{{\"timestamp\":\"{}\",\"level\":\"{level}\",",
        jiff::Timestamp::now()
    );
}

/// The decision line, into `b`.
pub fn write_decision(b: &mut Vec<u8>, d: &Decision<'_>) {
    timestamp_prefix(b, "INFO");
    b.extend_from_slice(b"\"message\":\"request\",\"client\":\"");
    let _ = write!(b, "{}", d.client);
    for (key, value) in [
        ("method", d.method),
        ("host", d.host),
        ("path", d.path),
        ("route", d.route),
        ("decision", d.decision),
        ("reason", d.reason),
    ] {
        b.extend_from_slice(b"\",\"");
        b.extend_from_slice(key.as_bytes());
        b.extend_from_slice(b"\":\"");
        json_escape(b, value);
    }
    let _ = writeln!(
        b,
        "\",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{:.3},\"target\":\"egress_proxy::decision\"}}",
        d.status, d.bytes_in, d.bytes_out, d.duration_ms
    );
}

/// Appends `s` with JSON string escaping (quotes, backslashes, controls).
fn json_escape(b: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match c {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f | 0x7f => None,
            _ => continue,
        };
        b.extend_from_slice(&bytes[start..i]);
        match esc {
            Some(e) => b.extend_from_slice(e),
            None => {
                let _ = write!(b, "\\u{c:04x}");
            }
        }
        start = i + 1;
    }
    b.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests;
