//! The operator side of the proposal queue (`docs/queue-protocol.md`):
//! reading proposals and decisions, writing a decision exactly once, and
//! appending decision records to the audit log.
//!
//! Is: file I/O on one bottle's queue directory with the protocol's rules —
//! only `<id>.json` names with a valid id are read, files over 1 MiB, that
//! do not parse, carry an unknown `version` or an `id` that differs from
//! their name are refused with the path and the reason; a decision is
//! written through an fsynced temp file hard-linked to its final name, so
//! the first decision wins and an existing one is never replaced; audit
//! lines are appended under an exclusive `flock`.
//!
//! Is not: applying anything (see [`crate::approvals::apply`]) or deciding which
//! bottle a proposal belongs to (see [`crate::approvals`]). The queue
//! directory is writable from the supervise container, so everything read
//! here is untrusted input.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use manifest::queue::{
    AuditRecord, Decision, OperatorAuditRecord, PipelockEdit, Proposal, ProposalId,
    QUEUE_FORMAT_VERSION, RoutesEdit,
};
use serde::de::DeserializeOwned;

/// Largest queue file read (bytes).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Proposal directory name.
pub const PENDING: &str = "pending";
/// Decision directory name.
pub const DECISIONS: &str = "decisions";
/// Audit log file name.
pub const AUDIT: &str = "audit.jsonl";

/// Why a queue operation failed; each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No proposal file with this id.
    #[error("no proposal {id} in {queue}")]
    NoProposal {
        /// The id.
        id: String,
        /// The queue directory.
        queue: PathBuf,
    },
    /// A queue file is not valid.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A valid decision already exists.
    #[error(
        "proposal {id} was already decided: {outcome} at {decided_at}{note}; a decision is final",
        note = if note.is_empty() { String::new() } else { format!(" (note: {note:?})") }
    )]
    AlreadyDecided {
        /// The id.
        id: String,
        /// `approved` or `rejected`.
        outcome: String,
        /// When.
        decided_at: String,
        /// The note it carried.
        note: String,
    },
    /// A decision file exists but is not valid (so the proposal is still
    /// pending for supervise, but a new decision cannot take its name).
    #[error(
        "{path} exists but is not a valid decision ({reason}); supervise ignores it, so proposal {id} is still pending. Move the file aside, then decide again"
    )]
    InvalidDecisionInTheWay {
        /// The id.
        id: String,
        /// The file.
        path: PathBuf,
        /// Why it is invalid.
        reason: String,
    },
}

/// One proposal and its decision, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The proposal.
    pub proposal: Proposal,
    /// Its valid decision, if one exists.
    pub decision: Option<Decision>,
}

/// What a scan of one queue found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Every valid proposal, oldest first, with its decision.
    pub entries: Vec<Entry>,
    /// Files that were skipped, each as "path: reason".
    pub problems: Vec<String>,
}

impl Scan {
    /// The proposals without a valid decision.
    pub fn pending(&self) -> impl Iterator<Item = &Proposal> {
        self.entries
            .iter()
            .filter(|e| e.decision.is_none())
            .map(|e| &e.proposal)
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> QueueError {
    let path = path.to_owned();
    move |source| QueueError::Io {
        action,
        path,
        source,
    }
}

/// The id a queue file name stands for, if it is `<valid id>.json`.
pub fn id_of_file_name(name: &str) -> Option<ProposalId> {
    if name.starts_with('.') {
        return None;
    }
    ProposalId::parse(name.strip_suffix(".json")?).ok()
}

/// Reads and validates one queue file (`pending/` or `decisions/`).
/// `Ok(None)` when it does not exist.
fn read_record<T: DeserializeOwned>(
    path: &Path,
    id: &ProposalId,
    version_of: impl Fn(&T) -> (u32, &ProposalId),
) -> Result<Option<T>, QueueError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("opening", path)(e)),
    };
    let invalid = |reason: String| QueueError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io("reading", path))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(invalid(format!(
            "larger than {MAX_FILE_BYTES} bytes; queue files are at most 1 MiB"
        )));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(QUEUE_FORMAT_VERSION)) {
        return Err(invalid(format!(
            "queue format version {} is not understood; this launcher reads version {QUEUE_FORMAT_VERSION}",
            version.map_or_else(|| "(missing)".to_owned(), |v| v.to_string())
        )));
    }
    let record: T = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
    let (_, inner_id) = version_of(&record);
    if inner_id != id {
        return Err(invalid(format!(
            "its id {inner_id} differs from its file name {id}.json"
        )));
    }
    Ok(Some(record))
}

/// Reads `pending/<id>.json`; invalid → an error naming the file.
pub fn read_proposal(queue: &Path, id: &ProposalId) -> Result<Option<Proposal>, QueueError> {
    let path = queue.join(PENDING).join(format!("{id}.json"));
    read_record(&path, id, |p: &Proposal| (p.version, &p.id))
}

/// Reads `decisions/<id>.json`; invalid → an error naming the file.
pub fn read_decision(queue: &Path, id: &ProposalId) -> Result<Option<Decision>, QueueError> {
    let path = queue.join(DECISIONS).join(format!("{id}.json"));
    read_record(&path, id, |d: &Decision| (d.version, &d.id))
}

/// Every proposal in `queue` with its decision. Invalid files are listed
/// in [`Scan::problems`] and skipped; a missing queue is empty.
pub fn scan(queue: &Path) -> Result<Scan, QueueError> {
    let mut out = Scan::default();
    let dir = queue.join(PENDING);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("listing", &dir)(e)),
    };
    let mut ids: Vec<ProposalId> = rd
        .filter_map(Result::ok)
        .filter_map(|e| id_of_file_name(&e.file_name().to_string_lossy()))
        .collect();
    ids.sort();
    for id in ids {
        let proposal = match read_proposal(queue, &id) {
            Ok(Some(p)) => p,
            Ok(None) => continue, // archived between listing and reading
            Err(e) => {
                out.problems.push(e.to_string());
                continue;
            }
        };
        let decision = match read_decision(queue, &id) {
            Ok(d) => d,
            Err(e) => {
                out.problems.push(format!("{e} (ignored: still pending)"));
                None
            }
        };
        out.entries.push(Entry { proposal, decision });
    }
    out.entries.sort_by(|a, b| {
        (a.proposal.created_at, &a.proposal.id).cmp(&(b.proposal.created_at, &b.proposal.id))
    });
    Ok(out)
}

/// Fails with [`QueueError::AlreadyDecided`] (or
/// [`QueueError::InvalidDecisionInTheWay`]) when `id` has a decision file.
pub fn ensure_undecided(queue: &Path, id: &ProposalId) -> Result<(), QueueError> {
    match read_decision(queue, id) {
        Ok(None) => Ok(()),
        Ok(Some(d)) => Err(already(&d)),
        Err(QueueError::Invalid { path, reason }) => Err(QueueError::InvalidDecisionInTheWay {
            id: id.to_string(),
            path,
            reason,
        }),
        Err(e) => Err(e),
    }
}

fn already(d: &Decision) -> QueueError {
    QueueError::AlreadyDecided {
        id: d.id.to_string(),
        outcome: outcome_str(d),
        decided_at: d.decided_at.to_string(),
        note: d.note.clone(),
    }
}

fn outcome_str(d: &Decision) -> String {
    match d.outcome {
        manifest::queue::Outcome::Approved => "approved".into(),
        manifest::queue::Outcome::Rejected => "rejected".into(),
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    // A failed getrandom still leaves a usable (if predictable) name;
    // O_EXCL below makes a collision an error, never an overwrite.
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `decisions/<id>.json` once: temp file (0644, `O_EXCL`, fsync) →
/// hard link to the final name (an existing decision → `AlreadyDecided`,
/// nothing replaced) → fsync of the directory → the `decision` audit line.
/// The proposal must exist.
pub fn write_decision(queue: &Path, decision: &Decision) -> Result<(), QueueError> {
    let id = &decision.id;
    if read_proposal(queue, id)?.is_none() {
        return Err(QueueError::NoProposal {
            id: id.to_string(),
            queue: queue.to_owned(),
        });
    }
    ensure_undecided(queue, id)?;
    let dir = queue.join(DECISIONS);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        set_mode(&dir, 0o777).map_err(io("setting the mode of", &dir))?;
    }
    let final_path = dir.join(format!("{id}.json"));
    let tmp = dir.join(format!(".{id}.json.{}.tmp", random_suffix()));
    let mut text = serde_json::to_string_pretty(decision).map_err(|e| QueueError::Invalid {
        path: final_path.clone(),
        reason: format!("cannot serialise the decision: {e}"),
    })?;
    text.push('\n');
    let result = (|| {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io("creating", &tmp))?;
        set_mode(&tmp, 0o644).map_err(io("setting the mode of", &tmp))?;
        f.write_all(text.as_bytes()).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        drop(f);
        match std::fs::hard_link(&tmp, &final_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Someone decided between our check and the link.
                match read_decision(queue, id) {
                    Ok(Some(d)) => Err(already(&d)),
                    _ => Err(QueueError::InvalidDecisionInTheWay {
                        id: id.to_string(),
                        path: final_path.clone(),
                        reason: "it appeared while this decision was being written".into(),
                    }),
                }
            }
            Err(e) => Err(io("linking into place", &final_path)(e)),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", &dir))?;
    append_audit(queue, &AuditRecord::Decision(decision.clone()))
}

/// Appends one audit line: `O_APPEND` (created 0666 if missing, so both
/// uids can append), exclusive `flock`, a `\n` first if a crashed writer
/// left a partial line, the whole line in one write, `fdatasync`.
pub fn append_audit(queue: &Path, record: &AuditRecord) -> Result<(), QueueError> {
    append_line(queue, record)
}

/// Appends a `routes_edit` line (a change of the live routes table; see
/// `docs/queue-protocol.md`) with the same discipline as [`append_audit`].
pub fn append_routes_edit(queue: &Path, record: &RoutesEdit) -> Result<(), QueueError> {
    append_line(queue, &OperatorAuditRecord::RoutesEdit(record.clone()))
}

/// Appends a `pipelock_edit` line (an operator's edit of pipelock's
/// config) with the same discipline as [`append_audit`].
pub fn append_pipelock_edit(queue: &Path, record: &PipelockEdit) -> Result<(), QueueError> {
    append_line(queue, &OperatorAuditRecord::PipelockEdit(record.clone()))
}

fn append_line(queue: &Path, record: &impl serde::Serialize) -> Result<(), QueueError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = queue.join(AUDIT);
    let mut line = serde_json::to_string(record).map_err(|e| QueueError::Invalid {
        path: path.clone(),
        reason: format!("cannot serialise the audit record: {e}"),
    })?;
    line.push('\n');
    let existed = path.exists();
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o666)
        .open(&path)
        .map_err(io("opening", &path))?;
    if !existed {
        set_mode(&path, 0o666).map_err(io("setting the mode of", &path))?;
    }
    f.lock().map_err(io("locking", &path))?;
    let len = f.metadata().map_err(io("inspecting", &path))?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        let mut r = File::open(&path).map_err(io("reading", &path))?;
        use std::io::{Seek as _, SeekFrom};
        r.seek(SeekFrom::Start(len - 1))
            .and_then(|_| r.read_exact(&mut last))
            .map_err(io("reading", &path))?;
        if last[0] != b'\n' {
            line.insert(0, '\n');
        }
    }
    f.write_all(line.as_bytes())
        .map_err(io("appending to", &path))?;
    f.sync_data().map_err(io("syncing", &path))?;
    Ok(())
}

/// Every parseable audit record, in file order (torn lines skipped).
pub fn read_audit(queue: &Path) -> Result<Vec<AuditRecord>, QueueError> {
    let path = queue.join(AUDIT);
    let text = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("reading", &path)(e)),
    };
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Every parseable operator record (`routes_edit`, `pipelock_edit`), in
/// file order (other lines skipped).
pub fn read_operator_records(queue: &Path) -> Result<Vec<OperatorAuditRecord>, QueueError> {
    let path = queue.join(AUDIT);
    let text = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("reading", &path)(e)),
    };
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Every parseable `routes_edit` record, in file order (other lines
/// skipped).
pub fn read_routes_edits(queue: &Path) -> Result<Vec<RoutesEdit>, QueueError> {
    Ok(read_operator_records(queue)?
        .into_iter()
        .filter_map(|r| match r {
            OperatorAuditRecord::RoutesEdit(r) => Some(r),
            #[allow(unreachable_patterns)] // the enum is non_exhaustive
            _ => None,
        })
        .collect())
}

/// Crash recovery: appends a `decision` record for every valid decision
/// file whose id has none yet. Returns how many were added.
pub fn backfill_decision_audit(queue: &Path) -> Result<usize, QueueError> {
    let recorded: std::collections::BTreeSet<ProposalId> = read_audit(queue)?
        .into_iter()
        .filter_map(|r| match r {
            AuditRecord::Decision(d) => Some(d.id),
            AuditRecord::Proposal(_) => None,
        })
        .collect();
    let dir = queue.join(DECISIONS);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io("listing", &dir)(e)),
    };
    let mut ids: Vec<ProposalId> = rd
        .filter_map(Result::ok)
        .filter_map(|e| id_of_file_name(&e.file_name().to_string_lossy()))
        .filter(|id| !recorded.contains(id))
        .collect();
    ids.sort();
    let mut added = 0;
    for id in ids {
        if let Ok(Some(d)) = read_decision(queue, &id) {
            append_audit(queue, &AuditRecord::Decision(d))?;
            added += 1;
        }
    }
    Ok(added)
}

#[cfg(test)]
pub(crate) mod tests;
