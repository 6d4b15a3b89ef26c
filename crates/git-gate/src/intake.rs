//! Taking in a push before git sees any of it.
//!
//! The whole request body is read (gzip-decoded when the client sent it so,
//! each read bounded by an idle timeout), its command list checked as
//! pkt-lines within the request limit, and the pack that follows checked
//! by [`pack::Inspector`] for its inflated size while it is written to a
//! spool file. Only a push that passes reaches `git http-backend`, fed from
//! the spool, so git never unpacks a zlib bomb and the remote's lock is not
//! held while a slow client uploads. A refused push is drained to its end
//! (bounded) so the agent's git reads the gate's answer instead of a broken
//! pipe.

use std::io::{BufWriter, Seek, Write};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::pack::{self, Inspector};
use crate::pktline;

/// What a push may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of the command list (before the pack).
    pub max_request_bytes: u64,
    /// Bytes of the whole push, on the wire and once gzip-decoded.
    pub max_push_bytes: u64,
    /// Inflated sizes of the pack's objects.
    pub pack: pack::Limits,
    /// Longest wait for the next piece of the body.
    pub idle: Duration,
}

/// A push that passed: its command list and its spooled pack.
#[derive(Debug)]
pub struct Spooled {
    /// The command list, up to and including its flush.
    pub commands: Bytes,
    /// The pack (empty when the push only deletes), positioned at its start.
    pub pack: Spool,
    /// The pack's objects' inflated size.
    pub inflated_bytes: u64,
}

/// Why a push was not taken.
#[derive(Debug)]
pub enum Rejection {
    /// Not a well-formed push request (400 with this message).
    BadRequest(String),
    /// A well-formed push the gate refuses: `commands` name the refs for
    /// the report the agent's git prints, `message` says why.
    Refused {
        /// The command list.
        commands: Bytes,
        /// What to tell the agent (one line).
        message: String,
    },
    /// The client stopped sending (408).
    Stalled(Duration),
}

/// The spool file; removed when dropped.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Spool {
    /// The file, for feeding git (its position is the pack's start).
    pub fn take_file(&mut self) -> Option<std::fs::File> {
        self.file.take()
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads and checks the whole push body; see the module docs.
pub async fn receive(
    mut body: Incoming,
    gzip: bool,
    limits: Limits,
    spool: PathBuf,
) -> Result<Spooled, Rejection> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let worker = tokio::task::spawn_blocking(move || take(rx, gzip, limits, spool));
    let mut tx = Some(tx);
    let mut wire = 0u64;
    loop {
        let frame = match tokio::time::timeout(limits.idle, body.frame()).await {
            Err(_) => {
                drop(tx);
                let _ = worker.await;
                return Err(Rejection::Stalled(limits.idle));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                drop(tx);
                let _ = worker.await;
                return Err(Rejection::BadRequest(format!(
                    "reading the request body failed: {e}"
                )));
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        wire += data.len() as u64;
        if wire > limits.max_push_bytes {
            drop(tx);
            let commands = match worker.await {
                Ok(Err(Rejection::Refused { commands, .. })) => commands,
                _ => Bytes::new(),
            };
            return Err(too_large(commands, limits.max_push_bytes));
        }
        // Once the worker has refused, the rest is only drained.
        if let Some(t) = &tx
            && t.send(data).await.is_err()
        {
            tx = None;
        }
    }
    drop(tx);
    worker.await.map_err(|e| {
        Rejection::BadRequest(format!("checking the push failed inside the gate: {e}"))
    })?
}

fn too_large(commands: Bytes, limit: u64) -> Rejection {
    Rejection::Refused {
        commands,
        message: format!(
            "push refused: it is larger than {} (--max-push-bytes); push fewer commits at a time or ask the operator to raise the limit",
            pack::human(limit)
        ),
    }
}

/// The blocking side: decode, split, inspect, spool.
fn take(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    gzip: bool,
    limits: Limits,
    path: PathBuf,
) -> Result<Spooled, Rejection> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Rejection::BadRequest(format!("cannot spool the push: {e}")))?;
    // From here on, any return removes the file.
    let spool = Spool { path, file: None };
    let sink = Sink {
        limits,
        commands: Vec::new(),
        commands_done: false,
        decoded: 0,
        inspector: None,
        out: BufWriter::with_capacity(1 << 20, file),
        rejected: None,
    };
    let bad_gzip =
        |e: std::io::Error| Rejection::BadRequest(format!("the gzip request body is invalid: {e}"));
    let sink = if gzip {
        // Decoded bytes reach the sink in the decoder's small chunks, so a
        // gzip bomb is refused by the limits, not held in memory.
        let mut d = flate2::write::GzDecoder::new(sink);
        while let Some(chunk) = rx.blocking_recv() {
            if let Err(e) = d.write_all(&chunk) {
                return Err(d.get_mut().rejected.take().unwrap_or_else(|| bad_gzip(e)));
            }
        }
        if let Err(e) = d.try_finish() {
            return Err(d.get_mut().rejected.take().unwrap_or_else(|| bad_gzip(e)));
        }
        d.finish().map_err(bad_gzip)?
    } else {
        let mut sink = sink;
        while let Some(chunk) = rx.blocking_recv() {
            sink.take_in(&chunk)?;
        }
        sink
    };
    sink.finish(spool)
}

struct Sink {
    limits: Limits,
    commands: Vec<u8>,
    commands_done: bool,
    decoded: u64,
    inspector: Option<Inspector>,
    out: BufWriter<std::fs::File>,
    /// Why [`Write::write`] failed, for the gzip path.
    rejected: Option<Rejection>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.take_in(buf) {
            Ok(()) => Ok(buf.len()),
            Err(r) => {
                self.rejected = Some(r);
                Err(std::io::Error::other("push refused"))
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn refuse(&self, message: String) -> Rejection {
        Rejection::Refused {
            commands: Bytes::copy_from_slice(&self.commands),
            message,
        }
    }

    fn cannot_store(&self, e: &dyn std::fmt::Display) -> Rejection {
        self.refuse(format!(
            "push refused: the gate cannot store it ({e}); ask the operator"
        ))
    }

    fn take_in(&mut self, mut data: &[u8]) -> Result<(), Rejection> {
        if data.is_empty() {
            return Ok(());
        }
        self.decoded += data.len() as u64;
        if self.decoded > self.limits.max_push_bytes {
            return Err(too_large(
                Bytes::copy_from_slice(&self.commands),
                self.limits.max_push_bytes,
            ));
        }
        if !self.commands_done {
            let seen = self.commands.len();
            self.commands.extend_from_slice(data);
            match pktline::command_section_end(&self.commands) {
                Ok(Some(end)) => {
                    self.commands_done = true;
                    data = &data[end - seen..];
                    self.commands.truncate(end);
                }
                Ok(None) if self.commands.len() as u64 > self.limits.max_request_bytes => {
                    return Err(Rejection::BadRequest(format!(
                        "request too large: more than {} bytes before the pack data; split the push or raise --max-request-bytes",
                        self.limits.max_request_bytes
                    )));
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(Rejection::BadRequest(e.to_string())),
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        let limits = self.limits.pack;
        let inspector = self
            .inspector
            .get_or_insert_with(|| Inspector::new(limits, 20));
        if let Err(e) = inspector.feed(data) {
            return Err(self.refuse(format!("push refused: {e}")));
        }
        self.out.write_all(data).map_err(|e| self.cannot_store(&e))
    }

    fn finish(self, mut spool: Spool) -> Result<Spooled, Rejection> {
        if !self.commands_done {
            return Err(Rejection::BadRequest(if self.commands.is_empty() {
                "empty push request".into()
            } else {
                pktline::PktError::Truncated { offset: 0 }.to_string()
            }));
        }
        let inflated_bytes = match &self.inspector {
            Some(i) => {
                i.finish()
                    .map_err(|e| self.refuse(format!("push refused: {e}")))?;
                i.inflated_total()
            }
            None => 0,
        };
        let commands = Bytes::from(self.commands);
        let stored = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|mut f| f.rewind().map(|()| f));
        match stored {
            Ok(f) => spool.file = Some(f),
            Err(e) => {
                return Err(Rejection::Refused {
                    message: format!(
                        "push refused: the gate cannot store it ({e}); ask the operator"
                    ),
                    commands,
                });
            }
        }
        Ok(Spooled {
            commands,
            pack: spool,
            inflated_bytes,
        })
    }
}
