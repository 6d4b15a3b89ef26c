//! The operator side's rules over the queue files, for whichever process
//! writes decisions: the launcher on the operator's machine, or
//! `supervise queue decide` run by `exec` in the bottle's supervise
//! container (Kubernetes). One implementation, so both paths refuse the
//! same things.
//!
//! Is: a scan of one queue (every valid proposal with its decision, the
//! files skipped with their reasons), "a decision only for an existing
//! proposal, never over another" (hard-linked into place: the first
//! decision wins; an invalid decision file in the way is named, not
//! replaced), the `decisions/` directory created for the other uid, and
//! the `decision` audit line after the file.
//!
//! Is not: what a decision means (applying routes is the launcher's).

use std::path::{Path, PathBuf};

use manifest::queue::{AuditRecord, Decision, Outcome, Proposal, ProposalId};

use crate::{QueueDir, QueueError, Written, write_new};

/// Why a decision or a scan failed; each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// A queue file or directory.
    #[error(transparent)]
    File(#[from] QueueError),
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
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// The proposal.
    pub proposal: Proposal,
    /// Its valid decision, if one exists.
    pub decision: Option<Decision>,
}

/// What a scan of one queue found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// Every proposal in `queue` with its decision. Invalid files are listed
/// in [`Scan::problems`] and skipped; a missing queue is empty.
pub fn scan(queue: &Path) -> Result<Scan, DecideError> {
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

/// Fails with [`DecideError::AlreadyDecided`] (or
/// [`DecideError::InvalidDecisionInTheWay`]) when `id` has a decision file.
pub fn ensure_undecided(queue: &Path, id: &ProposalId) -> Result<(), DecideError> {
    match QueueDir::new(queue).decision(id) {
        Ok(None) => Ok(()),
        Ok(Some(d)) => Err(already(&d)),
        Err(e) => match e.invalid_file() {
            Some((path, reason)) => Err(DecideError::InvalidDecisionInTheWay {
                id: id.to_string(),
                path: path.to_owned(),
                reason,
            }),
            None => Err(e.into()),
        },
    }
}

impl DecideError {
    /// The refusal of a second decision: `d` stands.
    pub fn already_decided(d: &Decision) -> Self {
        already(d)
    }
}

fn already(d: &Decision) -> DecideError {
    DecideError::AlreadyDecided {
        id: d.id.to_string(),
        outcome: match d.outcome {
            Outcome::Approved => "approved".into(),
            Outcome::Rejected => "rejected".into(),
        },
        decided_at: d.decided_at.to_string(),
        note: d.note.clone(),
    }
}

/// Writes `decisions/<id>.json` once ([`write_new`]: temp file 0644,
/// fsync, hard link to the final name — an existing decision →
/// `AlreadyDecided`, nothing replaced —, fsync of the directory), then the
/// `decision` audit line. The proposal must exist; `decisions/` is created
/// 0777 when missing (supervise's uid reads it, the operator's writes).
pub fn write_decision(queue: &Path, decision: &Decision) -> Result<(), DecideError> {
    let q = QueueDir::new(queue);
    let id = &decision.id;
    if q.proposal(id)?.is_none() {
        return Err(DecideError::NoProposal {
            id: id.to_string(),
            queue: queue.to_owned(),
        });
    }
    ensure_undecided(queue, id)?;
    let dir = q.decisions_dir();
    if !dir.is_dir() {
        use std::os::unix::fs::PermissionsExt as _;
        let err = |cause| QueueError::Dir {
            path: dir.clone(),
            cause,
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(err)?;
    }
    let mut text = serde_json::to_vec_pretty(decision).map_err(|e| QueueError::Write {
        path: q.decision_path(id),
        cause: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    match write_new(&dir, &format!("{id}.json"), &text)? {
        Written::Created => {}
        // Someone decided between our check and the link.
        Written::AlreadyExists => {
            return Err(match q.decision(id) {
                Ok(Some(d)) => already(&d),
                _ => DecideError::InvalidDecisionInTheWay {
                    id: id.to_string(),
                    path: q.decision_path(id),
                    reason: "it appeared while this decision was being written".into(),
                },
            });
        }
    }
    Ok(q.append_audit(&AuditRecord::Decision(decision.clone()))?)
}
