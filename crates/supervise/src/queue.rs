//! The file queue shared with the operator side (the launcher): proposals
//! in `pending/`, decisions in `decisions/`, history in `audit.jsonl`.
//!
//! Is: the write discipline (temp file, fsync, rename, fsync the directory;
//! files are never edited in place), reading and checking what the operator
//! side wrote, and the audit append (one `flock`ed, fsynced line per event).
//! The contract is `docs/queue-protocol.md`; the record types are
//! `manifest::queue`, so both sides compile against one definition.
//!
//! Is not: async, and not a watcher. Every call is a short blocking file
//! operation; the server runs them on the blocking pool and polls.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use manifest::queue::{
    AuditRecord, Decision, Proposal, ProposalId, ProposalRequest, QUEUE_FORMAT_VERSION,
};

/// Largest queue file we read (a capability proposal carries a Dockerfile of
/// at most 256 KiB; JSON escaping can grow it).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// How many undecided proposals one bottle may have queued at once.
pub const MAX_UNDECIDED: usize = 32;

const PENDING: &str = "pending";
const DECISIONS: &str = "decisions";
const AUDIT: &str = "audit.jsonl";

/// What went wrong with the queue; each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue directory {path}: {cause}")]
    Dir { path: PathBuf, cause: io::Error },
    #[error("writing {path}: {cause}")]
    Write { path: PathBuf, cause: io::Error },
    #[error("reading {path}: {cause}")]
    Read { path: PathBuf, cause: io::Error },
    #[error("{path}: {size} bytes exceeds the {limit}-byte limit for queue files")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path}: not a valid {what} file: {reason}")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{path}: queue format version {found}; this supervise understands version {expected}")]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{path}: the file names proposal {found:?} but its file name says {expected:?}")]
    IdMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("appending to the audit log {path}: {cause}")]
    Audit { path: PathBuf, cause: io::Error },
    #[error(
        "{count} proposals are already waiting for the operator (limit {limit}); wait for their decisions (proposal-status) before asking for more"
    )]
    TooManyPending { count: usize, limit: usize },
    #[error("no randomness for a proposal id: {0}")]
    Random(String),
}

/// Where a proposal stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Queued, no decision yet.
    Pending(Proposal),
    /// The operator decided. The proposal file may have been archived by the
    /// operator side, so it is optional.
    Decided {
        proposal: Option<Proposal>,
        decision: Decision,
    },
    /// Neither file exists.
    Unknown,
}

/// The result of [`Queue::submit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The queued proposal (a new one, or the identical one already waiting).
    pub proposal: Proposal,
    /// True when an identical undecided request was already queued and no
    /// new file was written.
    pub reused: bool,
}

/// One bottle's queue directory.
#[derive(Debug)]
pub struct Queue {
    pending: PathBuf,
    decisions: PathBuf,
    audit: PathBuf,
    /// Serialises submits (duplicate detection + limit) and audit appends
    /// within this process; `flock` covers other processes.
    submit_lock: Mutex<()>,
}

impl Queue {
    /// Opens (creating if needed) the queue under `dir`.
    pub fn open(dir: &Path) -> Result<Self, QueueError> {
        let pending = dir.join(PENDING);
        let decisions = dir.join(DECISIONS);
        for d in [&pending, &decisions] {
            fs::create_dir_all(d).map_err(|cause| QueueError::Dir {
                path: d.clone(),
                cause,
            })?;
        }
        remove_stale_temp_files(&pending);
        let audit = dir.join(AUDIT);
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o666)
            .open(&audit)
            .map_err(|cause| QueueError::Audit {
                path: audit.clone(),
                cause,
            })?;
        // The operator side runs as another uid: it must be able to create
        // decisions, append to the audit log, and remove the whole queue
        // with the bottle's state (which needs write access to pending/). The bottle's state
        // directory around the queue keeps other host users out.
        share(&pending, 0o777);
        share(&decisions, 0o777);
        share(&audit, 0o666);
        Ok(Self {
            pending,
            decisions,
            audit,
            submit_lock: Mutex::new(()),
        })
    }

    /// Path of the proposal file for `id`.
    pub fn proposal_path(&self, id: &ProposalId) -> PathBuf {
        self.pending.join(format!("{id}.json"))
    }

    /// Path of the decision file for `id`.
    pub fn decision_path(&self, id: &ProposalId) -> PathBuf {
        self.decisions.join(format!("{id}.json"))
    }

    /// Path of the audit log.
    pub fn audit_path(&self) -> &Path {
        &self.audit
    }

    /// Queues a proposal: writes `pending/<id>.json` atomically, then
    /// appends the `proposal` audit record. An identical undecided request
    /// from the same bottle is not queued twice: its proposal is returned
    /// with `reused: true`.
    pub fn submit(
        &self,
        bottle: &str,
        request: ProposalRequest,
        justification: &str,
        now: jiff::Timestamp,
    ) -> Result<Submitted, QueueError> {
        let _guard = self.submit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let undecided = self.undecided()?;
        if let Some(existing) = undecided
            .iter()
            .find(|p| p.bottle == bottle && p.request == request)
        {
            return Ok(Submitted {
                proposal: existing.clone(),
                reused: true,
            });
        }
        if undecided.len() >= MAX_UNDECIDED {
            return Err(QueueError::TooManyPending {
                count: undecided.len(),
                limit: MAX_UNDECIDED,
            });
        }
        let id = self.fresh_id(now)?;
        let proposal = Proposal {
            version: QUEUE_FORMAT_VERSION,
            id,
            bottle: bottle.to_owned(),
            request,
            justification: justification.to_owned(),
            created_at: now,
        };
        let mut bytes = serde_json::to_vec_pretty(&proposal).map_err(|e| QueueError::Corrupt {
            path: self.proposal_path(&proposal.id),
            what: "proposal",
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        write_atomic(&self.pending, &format!("{}.json", proposal.id), &bytes)?;
        self.append_audit_locked(&AuditRecord::Proposal(proposal.clone()))?;
        Ok(Submitted {
            proposal,
            reused: false,
        })
    }

    /// Reads `pending/<id>.json`; `Ok(None)` when absent.
    pub fn proposal(&self, id: &ProposalId) -> Result<Option<Proposal>, QueueError> {
        let path = self.proposal_path(id);
        let Some(p) = read_record::<Proposal>(&path, "proposal")? else {
            return Ok(None);
        };
        check_header(&path, p.version, p.id.as_str(), id)?;
        Ok(Some(p))
    }

    /// Reads `decisions/<id>.json`; `Ok(None)` when absent. A file that does
    /// not parse, has another version, or names another id is an error the
    /// caller logs; it never counts as a decision.
    pub fn decision(&self, id: &ProposalId) -> Result<Option<Decision>, QueueError> {
        let path = self.decision_path(id);
        let Some(d) = read_record::<Decision>(&path, "decision")? else {
            return Ok(None);
        };
        check_header(&path, d.version, d.id.as_str(), id)?;
        Ok(Some(d))
    }

    /// Where `id` stands. A corrupt decision file is an error (the proposal
    /// is still waiting as far as anyone can tell).
    pub fn status(&self, id: &ProposalId) -> Result<Status, QueueError> {
        let decision = self.decision(id)?;
        let proposal = match self.proposal(id) {
            Ok(p) => p,
            // A decision without a readable proposal is still a decision.
            Err(e) if decision.is_some() => {
                tracing::warn!(error = %e, "skipping unreadable proposal file");
                None
            }
            Err(e) => return Err(e),
        };
        Ok(match (proposal, decision) {
            (proposal, Some(decision)) => Status::Decided { proposal, decision },
            (Some(p), None) => Status::Pending(p),
            (None, None) => Status::Unknown,
        })
    }

    /// Every readable proposal without a valid decision, oldest first.
    /// Unreadable files are logged and skipped.
    pub fn undecided(&self) -> Result<Vec<Proposal>, QueueError> {
        let mut out = Vec::new();
        for id in self.pending_ids()? {
            match self.proposal(&id) {
                Ok(Some(p)) => match self.decision(&id) {
                    Ok(Some(_)) => {}
                    Ok(None) => out.push(p),
                    Err(e) => {
                        tracing::warn!(id = %id, error = %e, "skipping corrupt decision file");
                        out.push(p);
                    }
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(id = %id, error = %e, "skipping corrupt proposal file"),
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    /// Appends a `proposal` audit record for every proposal file whose id
    /// the audit log does not mention yet: recovery from a crash between
    /// the rename and the append. Returns how many records were added.
    pub fn reconcile_audit(&self) -> Result<usize, QueueError> {
        let _guard = self.submit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let file = File::open(&self.audit).map_err(|cause| QueueError::Read {
            path: self.audit.clone(),
            cause,
        })?;
        let mut seen = HashSet::new();
        let mut skipped = 0usize;
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(|cause| QueueError::Read {
                path: self.audit.clone(),
                cause,
            })?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<AuditRecord>(&line) {
                Ok(AuditRecord::Proposal(p)) => {
                    seen.insert(p.id);
                }
                Ok(AuditRecord::Decision(_)) => {}
                Err(_) => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!(path = %self.audit.display(), lines = skipped, "audit log has lines that are not audit records");
        }
        let mut added = 0;
        for id in self.pending_ids()? {
            if seen.contains(&id) {
                continue;
            }
            match self.proposal(&id) {
                Ok(Some(p)) => {
                    self.append_audit_locked(&AuditRecord::Proposal(p))?;
                    added += 1;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(id = %id, error = %e, "skipping corrupt proposal file"),
            }
        }
        Ok(added)
    }

    /// Ids of `pending/*.json` files (temp files and foreign names skipped).
    fn pending_ids(&self) -> Result<Vec<ProposalId>, QueueError> {
        let entries = fs::read_dir(&self.pending).map_err(|cause| QueueError::Dir {
            path: self.pending.clone(),
            cause,
        })?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|cause| QueueError::Dir {
                path: self.pending.clone(),
                cause,
            })?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            match ProposalId::parse(stem) {
                Ok(id) => ids.push(id),
                Err(_) if stem.starts_with('.') => {} // our temp files
                Err(e) => {
                    tracing::warn!(file = ?name, error = %e, "skipping foreign file in pending/")
                }
            }
        }
        Ok(ids)
    }

    /// A new id `<yyyymmdd>-<hhmmss>-<8 base36>`, unused in both directories.
    fn fresh_id(&self, now: jiff::Timestamp) -> Result<ProposalId, QueueError> {
        let stamp = now.strftime("%Y%m%d-%H%M%S").to_string();
        for _ in 0..8 {
            let id = ProposalId::parse(&format!("{stamp}-{}", random_base36(8)?))
                .map_err(QueueError::Random)?;
            if !self.proposal_path(&id).exists() && !self.decision_path(&id).exists() {
                return Ok(id);
            }
        }
        Err(QueueError::Random("eight id collisions in a row".into()))
    }

    /// Appends one record; the caller holds `submit_lock`.
    fn append_audit_locked(&self, record: &AuditRecord) -> Result<(), QueueError> {
        append_audit(&self.audit, record)
    }
}

/// Appends one JSON line to an audit log: `O_APPEND`, an exclusive `flock`
/// held across the write (the operator side takes the same lock), a
/// newline first if a crashed writer left a partial line, then `fsync`.
pub fn append_audit(path: &Path, record: &AuditRecord) -> Result<(), QueueError> {
    let err = |cause| QueueError::Audit {
        path: path.to_owned(),
        cause,
    };
    let mut line = serde_json::to_vec(record).map_err(|e| err(io::Error::other(e)))?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o666)
        .open(path)
        .map_err(err)?;
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

/// Writes `dir/name` atomically: a temp file (`.name.<random>.tmp`, created
/// exclusively, mode 0644) is written and fsynced, renamed over the target,
/// and the directory is fsynced so the rename survives a crash. Readers
/// never see a partial file.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), QueueError> {
    let target = dir.join(name);
    let err = |cause| QueueError::Write {
        path: target.clone(),
        cause,
    };
    let tmp = dir.join(format!(".{name}.{}.tmp", random_base36(8)?));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        // Readable by the other side whatever the umask.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &target)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Widens the mode of a path we may own (the umask narrowed it at
/// creation). A path owned by the operator side is left as it is: it
/// chose its own mode.
fn share(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        tracing::debug!(path = %path.display(), error = %e, "leaving the mode as it is");
    }
}

/// Removes `.*.tmp` files a crashed writer left in `pending/` (supervise
/// is that directory's only writer, and it is not writing yet).
fn remove_stale_temp_files(pending: &Path) {
    let Ok(entries) = fs::read_dir(pending) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(n) = name.to_str() else { continue };
        if n.starts_with('.') && n.ends_with(".tmp") {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = n, "removed a temp file left by an interrupted write")
                }
                Err(e) => tracing::warn!(file = n, error = %e, "cannot remove a stale temp file"),
            }
        }
    }
}

/// Reads and parses one queue file; `Ok(None)` when it does not exist.
fn read_record<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
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
            size: bytes.len() as u64,
            limit: MAX_FILE_BYTES,
        });
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| QueueError::Corrupt {
            path: path.to_owned(),
            what,
            reason: e.to_string(),
        })
}

fn check_header(
    path: &Path,
    version: u32,
    found: &str,
    expected: &ProposalId,
) -> Result<(), QueueError> {
    if version != QUEUE_FORMAT_VERSION {
        return Err(QueueError::Version {
            path: path.to_owned(),
            found: version,
            expected: QUEUE_FORMAT_VERSION,
        });
    }
    if found != expected.as_str() {
        return Err(QueueError::IdMismatch {
            path: path.to_owned(),
            found: found.to_owned(),
            expected: expected.to_string(),
        });
    }
    Ok(())
}

/// `n` random lowercase base36 characters.
fn random_base36(n: usize) -> Result<String, QueueError> {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| QueueError::Random(e.to_string()))?;
    // 256 % 36 = 4: the bias is negligible for an id that only needs to be
    // unique, not secret.
    Ok(buf
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % 36] as char)
        .collect())
}

#[cfg(test)]
mod tests;
