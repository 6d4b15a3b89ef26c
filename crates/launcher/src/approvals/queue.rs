//! The operator side of the proposal queue (`docs/queue-protocol.md`):
//! reading proposals and decisions, writing a decision exactly once, and
//! appending the operator's records to the audit log.
//!
//! Is: the operator's policy over the file rules of `bottle-queue` (which
//! supervise uses too: only `<id>.json` names with a valid id are read;
//! files over 1 MiB, that do not parse, carry an unknown `version` or an
//! `id` that differs from their name are refused with the path and the
//! reason; audit lines are appended under an exclusive `flock`): a scan of
//! one bottle's queue that lists what it skipped, a decision written only
//! for an existing proposal and never over another (hard-linked into
//! place, so the first decision wins), the `decisions/` directory created
//! for the other uid, and the crash-recovery backfill of decision lines.
//!
//! Is not: applying anything (see [`crate::approvals::apply`]) or deciding
//! which bottle a proposal belongs to (see [`crate::approvals`]). The queue
//! directory is writable from the supervise container, so everything read
//! here is untrusted input.

use std::path::{Path, PathBuf};

pub use bottle_queue::{AUDIT, DECISIONS, MAX_FILE_BYTES, PENDING, id_of_file_name};
use bottle_queue::{QueueDir, Written};
use manifest::queue::{
    AuditRecord, Decision, OperatorAuditRecord, PipelockEdit, Proposal, ProposalId, RoutesEdit,
};

/// Why a queue operation failed; each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A queue file or directory (see `bottle_queue::QueueError`).
    #[error(transparent)]
    File(#[from] bottle_queue::QueueError),
    /// No proposal file with this id.
    #[error("no proposal {id} in {queue}")]
    NoProposal {
        /// The id.
        id: String,
        /// The queue directory.
        queue: PathBuf,
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

/// Reads `pending/<id>.json`; invalid → an error naming the file.
pub fn read_proposal(queue: &Path, id: &ProposalId) -> Result<Option<Proposal>, QueueError> {
    Ok(QueueDir::new(queue).proposal(id)?)
}

/// Reads `decisions/<id>.json`; invalid → an error naming the file.
pub fn read_decision(queue: &Path, id: &ProposalId) -> Result<Option<Decision>, QueueError> {
    Ok(QueueDir::new(queue).decision(id)?)
}

/// Every proposal in `queue` with its decision. Invalid files are listed
/// in [`Scan::problems`] and skipped; a missing queue is empty.
pub fn scan(queue: &Path) -> Result<Scan, QueueError> {
    let dir = QueueDir::new(queue);
    let mut out = Scan::default();
    for id in dir.pending_ids()? {
        let proposal = match dir.proposal(&id) {
            Ok(Some(p)) => p,
            Ok(None) => continue, // archived between listing and reading
            Err(e) => {
                out.problems.push(e.to_string());
                continue;
            }
        };
        let decision = match dir.decision(&id) {
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
    match QueueDir::new(queue).decision(id) {
        Ok(None) => Ok(()),
        Ok(Some(d)) => Err(already(&d)),
        Err(e) => match e.invalid_file() {
            Some((path, reason)) => Err(QueueError::InvalidDecisionInTheWay {
                id: id.to_string(),
                path: path.to_owned(),
                reason,
            }),
            None => Err(e.into()),
        },
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

/// Writes `decisions/<id>.json` once ([`bottle_queue::write_new`]: temp
/// file 0644, fsync, hard link to the final name — an existing decision →
/// `AlreadyDecided`, nothing replaced —, fsync of the directory), then the
/// `decision` audit line. The proposal must exist; `decisions/` is created
/// 0777 when missing (supervise's uid reads it, the operator's writes).
pub fn write_decision(queue: &Path, decision: &Decision) -> Result<(), QueueError> {
    let q = QueueDir::new(queue);
    let id = &decision.id;
    if q.proposal(id)?.is_none() {
        return Err(QueueError::NoProposal {
            id: id.to_string(),
            queue: queue.to_owned(),
        });
    }
    ensure_undecided(queue, id)?;
    let dir = q.decisions_dir();
    if !dir.is_dir() {
        use std::os::unix::fs::PermissionsExt as _;
        let err = |cause| bottle_queue::QueueError::Dir {
            path: dir.clone(),
            cause,
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(err)?;
    }
    let mut text =
        serde_json::to_vec_pretty(decision).map_err(|e| bottle_queue::QueueError::Write {
            path: q.decision_path(id),
            cause: std::io::Error::other(e),
        })?;
    text.push(b'\n');
    match bottle_queue::write_new(&dir, &format!("{id}.json"), &text)? {
        Written::Created => {}
        // Someone decided between our check and the link.
        Written::AlreadyExists => {
            return Err(match q.decision(id) {
                Ok(Some(d)) => already(&d),
                _ => QueueError::InvalidDecisionInTheWay {
                    id: id.to_string(),
                    path: q.decision_path(id),
                    reason: "it appeared while this decision was being written".into(),
                },
            });
        }
    }
    append_audit(queue, &AuditRecord::Decision(decision.clone()))
}

/// Appends one audit line ([`bottle_queue::append_line`]: `O_APPEND`,
/// created 0666 if missing so both uids can append, exclusive `flock`, a
/// `\n` first if a crashed writer left a partial line, `fdatasync`).
pub fn append_audit(queue: &Path, record: &AuditRecord) -> Result<(), QueueError> {
    Ok(QueueDir::new(queue).append_audit(record)?)
}

/// Appends a `routes_edit` line (a change of the live routes table; see
/// `docs/queue-protocol.md`) with the same discipline as [`append_audit`].
pub fn append_routes_edit(queue: &Path, record: &RoutesEdit) -> Result<(), QueueError> {
    Ok(QueueDir::new(queue).append_audit(&OperatorAuditRecord::RoutesEdit(record.clone()))?)
}

/// Appends a `pipelock_edit` line (an operator's edit of pipelock's
/// config) with the same discipline as [`append_audit`].
pub fn append_pipelock_edit(queue: &Path, record: &PipelockEdit) -> Result<(), QueueError> {
    Ok(QueueDir::new(queue).append_audit(&OperatorAuditRecord::PipelockEdit(record.clone()))?)
}

/// Every parseable audit record, in file order (torn lines skipped).
pub fn read_audit(queue: &Path) -> Result<Vec<AuditRecord>, QueueError> {
    Ok(QueueDir::new(queue).audit_lines()?.records)
}

/// Every parseable operator record (`routes_edit`, `pipelock_edit`), in
/// file order (other lines skipped).
pub fn read_operator_records(queue: &Path) -> Result<Vec<OperatorAuditRecord>, QueueError> {
    Ok(QueueDir::new(queue).audit_lines()?.records)
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
    let q = QueueDir::new(queue);
    let recorded: std::collections::BTreeSet<ProposalId> = read_audit(queue)?
        .into_iter()
        .filter_map(|r| match r {
            AuditRecord::Decision(d) => Some(d.id),
            AuditRecord::Proposal(_) => None,
        })
        .collect();
    let mut added = 0;
    for id in q.decision_ids()? {
        if recorded.contains(&id) {
            continue;
        }
        if let Ok(Some(d)) = q.decision(&id) {
            append_audit(queue, &AuditRecord::Decision(d))?;
            added += 1;
        }
    }
    Ok(added)
}

#[cfg(test)]
pub(crate) mod tests;
