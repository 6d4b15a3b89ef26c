//! The file queue shared with the operator side (the launcher): proposals
//! in `pending/`, decisions in `decisions/`, history in `audit.jsonl`.
//!
//! Is: the agent side's policy over the shared file rules of
//! `bottle-queue` (which the launcher uses too): submitting a proposal
//! (the undecided limit, an identical request queued once, a fresh id,
//! the proposal file then its `proposal` audit line), where a proposal
//! stands, and recovering a missing audit line after a crash. Creating the
//! queue with modes the operator's uid can use is done here, at open. The
//! contract is `docs/queue-protocol.md`; the record types are
//! `manifest::queue`.
//!
//! Is not: async, and not a watcher. Every call is a short blocking file
//! operation; the server runs them on the blocking pool and polls.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use bottle_queue::write_atomic;
use bottle_queue::{QueueDir, random_base36};
use manifest::queue::{
    AuditRecord, Decision, Proposal, ProposalId, ProposalRequest, QUEUE_FORMAT_VERSION,
};

/// How many undecided proposals one bottle may have queued at once.
pub const MAX_UNDECIDED: usize = 32;

/// What went wrong with the queue; each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A queue file or directory (see `bottle_queue::QueueError`).
    #[error(transparent)]
    File(#[from] bottle_queue::QueueError),
    #[error(
        "{count} proposals are already waiting for the operator (limit {limit}); wait for their decisions (proposal-status) before asking for more"
    )]
    TooManyPending { count: usize, limit: usize },
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
    dir: QueueDir,
    audit: PathBuf,
    /// Serialises submits (duplicate detection + limit) and audit appends
    /// within this process; `flock` covers other processes.
    submit_lock: Mutex<()>,
}

impl Queue {
    /// Opens (creating if needed) the queue under `dir`.
    pub fn open(dir: &Path) -> Result<Self, QueueError> {
        let dir = QueueDir::new(dir);
        let pending = dir.pending_dir();
        let decisions = dir.decisions_dir();
        for d in [&pending, &decisions] {
            fs::create_dir_all(d).map_err(|cause| bottle_queue::QueueError::Dir {
                path: d.clone(),
                cause,
            })?;
        }
        remove_stale_temp_files(&pending);
        let audit = dir.audit_path();
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o666)
            .open(&audit)
            .map_err(|cause| bottle_queue::QueueError::Audit {
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
            dir,
            audit,
            submit_lock: Mutex::new(()),
        })
    }

    /// Path of the proposal file for `id`.
    pub fn proposal_path(&self, id: &ProposalId) -> PathBuf {
        self.dir.proposal_path(id)
    }

    /// Path of the decision file for `id`.
    pub fn decision_path(&self, id: &ProposalId) -> PathBuf {
        self.dir.decision_path(id)
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
        let mut bytes = serde_json::to_vec_pretty(&proposal).map_err(|e| {
            bottle_queue::QueueError::Corrupt {
                path: self.proposal_path(&proposal.id),
                what: "proposal",
                reason: e.to_string(),
            }
        })?;
        bytes.push(b'\n');
        write_atomic(
            &self.dir.pending_dir(),
            &format!("{}.json", proposal.id),
            &bytes,
        )?;
        self.append_audit_locked(&AuditRecord::Proposal(proposal.clone()))?;
        Ok(Submitted {
            proposal,
            reused: false,
        })
    }

    /// Reads `pending/<id>.json`; `Ok(None)` when absent.
    pub fn proposal(&self, id: &ProposalId) -> Result<Option<Proposal>, QueueError> {
        Ok(self.dir.proposal(id)?)
    }

    /// Reads `decisions/<id>.json`; `Ok(None)` when absent. A file that does
    /// not parse, has another version, or names another id is an error the
    /// caller logs; it never counts as a decision.
    pub fn decision(&self, id: &ProposalId) -> Result<Option<Decision>, QueueError> {
        Ok(self.dir.decision(id)?)
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
        let lines = self.dir.audit_lines::<AuditRecord>()?;
        let skipped = lines.skipped;
        let seen: HashSet<ProposalId> = lines
            .records
            .into_iter()
            .filter_map(|r| match r {
                AuditRecord::Proposal(p) => Some(p.id),
                AuditRecord::Decision(_) => None,
            })
            .collect();
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
        Ok(self.dir.pending_ids()?)
    }

    /// A new id `<yyyymmdd>-<hhmmss>-<8 base36>`, unused in both directories.
    fn fresh_id(&self, now: jiff::Timestamp) -> Result<ProposalId, QueueError> {
        let stamp = now.strftime("%Y%m%d-%H%M%S").to_string();
        for _ in 0..8 {
            let id = ProposalId::parse(&format!("{stamp}-{}", random_base36(8)?))
                .map_err(bottle_queue::QueueError::Random)?;
            if !self.proposal_path(&id).exists() && !self.decision_path(&id).exists() {
                return Ok(id);
            }
        }
        Err(bottle_queue::QueueError::Random("eight id collisions in a row".into()).into())
    }

    /// Appends one record; the caller holds `submit_lock`.
    fn append_audit_locked(&self, record: &AuditRecord) -> Result<(), QueueError> {
        Ok(bottle_queue::append_line(&self.audit, record)?)
    }
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

#[cfg(test)]
mod tests;
