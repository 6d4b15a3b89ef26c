//! The proposal queue's files (`docs/queue-protocol.md`), for both sides:
//! supervise (the agent side, which writes proposals) and the launcher
//! (the operator side, which writes decisions). One implementation of the
//! file rules, so the two sides cannot drift apart.
//!
//! Is: the directory layout ([`QueueDir`]: `pending/<id>.json`,
//! `decisions/<id>.json`, `audit.jsonl`); reading a proposal or a decision
//! as untrusted input (only `<id>.json` names with a valid id are listed,
//! files over [`MAX_FILE_BYTES`], that do not parse, carry an unknown
//! `version` or an `id` that differs from their name are refused with the
//! path and the reason); the two write disciplines — [`write_atomic`]
//! (temp file, fsync, rename, fsync the directory) and [`write_new`] (the
//! same, but hard-linked into place so an existing file is never replaced:
//! the first decision wins); and the audit log (one `flock`ed, fsynced
//! line per event, a torn last line repaired, unreadable lines skipped on
//! read). The record types are `manifest::queue`.
//!
//! The operator's rules ("a decision only for a pending proposal", the
//! final-decision rule, the scan of one queue) are [`decide`], shared by
//! the launcher and `supervise queue` (the exec path on Kubernetes).
//!
//! Is not: the agent side's policy. Who may write what, the undecided
//! limit and duplicate detection stay with supervise. Sync `std` I/O only: every call is a short blocking file
//! operation (supervise runs them on tokio's blocking pool).
#![forbid(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use manifest::queue::{Decision, Proposal, ProposalId, QUEUE_FORMAT_VERSION};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest queue file read (a capability proposal carries a Dockerfile of
/// at most 256 KiB; JSON escaping can grow it).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Proposal directory name.
pub const PENDING: &str = "pending";
/// Decision directory name.
pub const DECISIONS: &str = "decisions";
/// Audit log file name.
pub const AUDIT: &str = "audit.jsonl";

/// What went wrong with a queue file; each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Listing or creating a queue directory failed.
    #[error("queue directory {path}: {cause}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        cause: io::Error,
    },
    /// Writing a queue file failed.
    #[error("writing {path}: {cause}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: io::Error,
    },
    /// Reading a queue file failed.
    #[error("reading {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: io::Error,
    },
    /// A queue file is larger than [`MAX_FILE_BYTES`].
    #[error("{path}: larger than {limit} bytes; queue files are at most 1 MiB")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A queue file does not parse as its record.
    #[error("{path}: not a valid {what} file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// `proposal` or `decision`.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// A queue file carries another format version.
    #[error(
        "{path}: queue format version {found} is not understood; this side reads version {QUEUE_FORMAT_VERSION}"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The version it carries, or `(missing)`.
        found: String,
    },
    /// A queue file's `id` differs from its file name.
    #[error("{path}: its id {found} differs from its file name {expected}.json")]
    IdMismatch {
        /// The file.
        path: PathBuf,
        /// The id inside.
        found: String,
        /// The id of the name.
        expected: String,
    },
    /// Appending to the audit log failed.
    #[error("appending to the audit log {path}: {cause}")]
    Audit {
        /// The log.
        path: PathBuf,
        /// The I/O error.
        cause: io::Error,
    },
    /// No randomness for a temp file name or an id.
    #[error("no randomness: {0}")]
    Random(String),
}

impl QueueError {
    /// The file and the reason when the error is about a file's content
    /// (too large, not parseable, another version, another id), as opposed
    /// to the file system failing.
    pub fn invalid_file(&self) -> Option<(&Path, String)> {
        match self {
            Self::TooLarge { path, .. }
            | Self::Corrupt { path, .. }
            | Self::Version { path, .. }
            | Self::IdMismatch { path, .. } => {
                let text = self.to_string();
                let prefix = format!("{}: ", path.display());
                let reason = text.strip_prefix(&prefix).unwrap_or(&text).to_owned();
                Some((path, reason))
            }
            _ => None,
        }
    }
}

/// One bottle's queue directory. Creating it (and its modes) is the
/// caller's policy; every read treats what it finds as untrusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDir {
    root: PathBuf,
}

impl QueueDir {
    /// The queue rooted at `root` (nothing is touched).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The queue directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `pending/`.
    pub fn pending_dir(&self) -> PathBuf {
        self.root.join(PENDING)
    }

    /// `decisions/`.
    pub fn decisions_dir(&self) -> PathBuf {
        self.root.join(DECISIONS)
    }

    /// `audit.jsonl`.
    pub fn audit_path(&self) -> PathBuf {
        self.root.join(AUDIT)
    }

    /// `pending/<id>.json`.
    pub fn proposal_path(&self, id: &ProposalId) -> PathBuf {
        self.pending_dir().join(format!("{id}.json"))
    }

    /// `decisions/<id>.json`.
    pub fn decision_path(&self, id: &ProposalId) -> PathBuf {
        self.decisions_dir().join(format!("{id}.json"))
    }

    /// Reads and checks `pending/<id>.json`; `Ok(None)` when absent.
    pub fn proposal(&self, id: &ProposalId) -> Result<Option<Proposal>, QueueError> {
        read_record(&self.proposal_path(id), "proposal", id, |p: &Proposal| {
            &p.id
        })
    }

    /// Reads and checks `decisions/<id>.json`; `Ok(None)` when absent. A
    /// file that is not valid is an error, never a decision.
    pub fn decision(&self, id: &ProposalId) -> Result<Option<Decision>, QueueError> {
        read_record(&self.decision_path(id), "decision", id, |d: &Decision| {
            &d.id
        })
    }

    /// The ids of `pending/<id>.json` files, sorted; temp files and
    /// foreign names are skipped. A missing directory is empty.
    pub fn pending_ids(&self) -> Result<Vec<ProposalId>, QueueError> {
        ids_in(&self.pending_dir())
    }

    /// The ids of `decisions/<id>.json` files, sorted (as
    /// [`Self::pending_ids`]).
    pub fn decision_ids(&self) -> Result<Vec<ProposalId>, QueueError> {
        ids_in(&self.decisions_dir())
    }

    /// Appends one record to the audit log (see [`append_line`]).
    pub fn append_audit(&self, record: &impl Serialize) -> Result<(), QueueError> {
        append_line(&self.audit_path(), record)
    }

    /// Every audit line that parses as `T`, in file order; the others
    /// (torn lines, records of another kind) are counted in
    /// [`AuditLines::skipped`]. A missing log is empty.
    pub fn audit_lines<T: DeserializeOwned>(&self) -> Result<AuditLines<T>, QueueError> {
        let path = self.audit_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(AuditLines::default()),
            Err(cause) => return Err(QueueError::Read { path, cause }),
        };
        let mut out = AuditLines::default();
        for line in bytes.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice(line) {
                Ok(r) => out.records.push(r),
                Err(_) => out.skipped += 1,
            }
        }
        Ok(out)
    }
}

/// What [`QueueDir::audit_lines`] read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditLines<T> {
    /// The lines that parsed, in file order.
    pub records: Vec<T>,
    /// How many non-blank lines did not.
    pub skipped: usize,
}

impl<T> Default for AuditLines<T> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            skipped: 0,
        }
    }
}

/// The id a queue file name stands for, if it is `<valid id>.json` (temp
/// files start with a dot and never are).
pub fn id_of_file_name(name: &str) -> Option<ProposalId> {
    if name.starts_with('.') {
        return None;
    }
    ProposalId::parse(name.strip_suffix(".json")?).ok()
}

fn ids_in(dir: &Path) -> Result<Vec<ProposalId>, QueueError> {
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(cause) => {
            return Err(QueueError::Dir {
                path: dir.to_owned(),
                cause,
            });
        }
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|cause| QueueError::Dir {
            path: dir.to_owned(),
            cause,
        })?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        match id_of_file_name(&text) {
            Some(id) => ids.push(id),
            None if text.starts_with('.') => {} // temp files
            None => {
                tracing::warn!(file = ?name, dir = %dir.display(), "skipping a foreign file in the queue")
            }
        }
    }
    ids.sort();
    Ok(ids)
}

/// Reads and checks one queue file; `Ok(None)` when it does not exist.
/// The version is checked before the record is parsed, so a file of
/// another version says so rather than failing to parse.
fn read_record<T: DeserializeOwned>(
    path: &Path,
    what: &'static str,
    id: &ProposalId,
    id_of: impl Fn(&T) -> &ProposalId,
) -> Result<Option<T>, QueueError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => {
            return Err(QueueError::Read {
                path: path.to_owned(),
                cause,
            });
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|cause| QueueError::Read {
            path: path.to_owned(),
            cause,
        })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(QueueError::TooLarge {
            path: path.to_owned(),
            limit: MAX_FILE_BYTES,
        });
    }
    let corrupt = |reason: String| QueueError::Corrupt {
        path: path.to_owned(),
        what,
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(QUEUE_FORMAT_VERSION)) {
        return Err(QueueError::Version {
            path: path.to_owned(),
            found: version.map_or_else(|| "(missing)".to_owned(), |v| v.to_string()),
        });
    }
    let record: T = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
    let inner = id_of(&record);
    if inner != id {
        return Err(QueueError::IdMismatch {
            path: path.to_owned(),
            found: inner.to_string(),
            expected: id.to_string(),
        });
    }
    Ok(Some(record))
}

/// Writes `dir/name` atomically, replacing what was there: a temp file
/// (`.name.<random>.tmp`, created exclusively, mode 0644 whatever the
/// umask) is written and fsynced, renamed over the target, and the
/// directory is fsynced so the rename survives a crash. Readers never see
/// a partial file.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), QueueError> {
    let target = dir.join(name);
    let tmp = write_temp(dir, name, bytes)?;
    let result = fs::rename(&tmp, &target).and_then(|()| sync_dir(dir));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|cause| QueueError::Write {
        path: target,
        cause,
    })
}

/// What [`write_new`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The file is now in place.
    Created,
    /// A file of that name already existed; nothing was replaced.
    AlreadyExists,
}

/// Writes `dir/name` once: a temp file as in [`write_atomic`], hard-linked
/// to the final name (so an existing file is never replaced and two
/// writers cannot both win), then the directory fsynced.
pub fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> Result<Written, QueueError> {
    let target = dir.join(name);
    let tmp = write_temp(dir, name, bytes)?;
    let linked = fs::hard_link(&tmp, &target);
    let _ = fs::remove_file(&tmp);
    let err = |cause| QueueError::Write {
        path: target.clone(),
        cause,
    };
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Written::AlreadyExists),
        Err(e) => return Err(err(e)),
    }
    sync_dir(dir).map_err(err)?;
    Ok(Written::Created)
}

/// Writes and fsyncs `dir/.name.<random>.tmp`; removed again on failure.
fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, QueueError> {
    let tmp = dir.join(format!(".{name}.{}.tmp", random_base36(8)?));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        // Readable by the other side whatever the umask.
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(cause) => {
            let _ = fs::remove_file(&tmp);
            Err(QueueError::Write { path: tmp, cause })
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Appends one JSON line to an audit log: `O_APPEND` (created 0666 if
/// missing, so both uids can append), an exclusive `flock` held across the
/// write (the other side takes the same lock), a newline first if a
/// crashed writer left a partial line, the whole line in one write, then
/// `fdatasync`.
pub fn append_line(path: &Path, record: &impl Serialize) -> Result<(), QueueError> {
    let err = |cause| QueueError::Audit {
        path: path.to_owned(),
        cause,
    };
    let mut line = serde_json::to_vec(record).map_err(|e| err(io::Error::other(e)))?;
    line.push(b'\n');
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o666)
        .open(path)
        .map_err(err)?;
    if !existed {
        // We probably created it: widen what the umask narrowed. If the
        // other side created it between the check and the open, it is
        // theirs and they widen it; not being allowed to is no error.
        let _ = file.set_permissions(fs::Permissions::from_mode(0o666));
    }
    file.lock().map_err(err)?;
    let len = file.metadata().map_err(err)?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1)).map_err(err)?;
        file.read_exact(&mut last).map_err(err)?;
        if last[0] != b'\n' {
            line.insert(0, b'\n');
        }
    }
    file.write_all(&line).map_err(err)?;
    file.sync_data().map_err(err)?;
    // The lock is released when `file` closes.
    Ok(())
}

/// `n` random lowercase base36 characters (temp file names, proposal ids).
pub fn random_base36(n: usize) -> Result<String, QueueError> {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| QueueError::Random(e.to_string()))?;
    // 256 % 36 = 4: the bias is negligible for a name that only needs to
    // be unique, not secret.
    Ok(buf
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % 36] as char)
        .collect())
}

pub mod cli;
pub mod decide;

#[cfg(test)]
mod tests;
