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
//! The approval loop reaches a queue through [`BottleQueue`]:
//! [`LocalQueue`] here, [`kubernetes::ExecQueue`] on a cluster.
//!
//! Is not: applying anything (see [`crate::approvals::apply`]) or deciding
//! which bottle a proposal belongs to (see [`crate::approvals`]). The queue
//! directory is writable from the supervise container, so everything read
//! here is untrusted input.

use std::path::Path;

use bottle_queue::QueueDir;
pub use bottle_queue::{AUDIT, DECISIONS, MAX_FILE_BYTES, PENDING, id_of_file_name};
use manifest::queue::{
    AuditRecord, Decision, OperatorAuditRecord, PipelockEdit, Proposal, ProposalId, RoutesEdit,
};

/// Why a queue operation failed; each message names the file (the
/// operator's rules are `bottle_queue::decide`, shared with `supervise
/// queue`).
pub use bottle_queue::decide::DecideError as QueueError;
pub use bottle_queue::decide::{Entry, Scan, ensure_undecided, scan, write_decision};

/// Reads `pending/<id>.json`; invalid → an error naming the file.
pub fn read_proposal(queue: &Path, id: &ProposalId) -> Result<Option<Proposal>, QueueError> {
    Ok(QueueDir::new(queue).proposal(id)?)
}

/// Reads `decisions/<id>.json`; invalid → an error naming the file.
pub fn read_decision(queue: &Path, id: &ProposalId) -> Result<Option<Decision>, QueueError> {
    Ok(QueueDir::new(queue).decision(id)?)
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

/// The queue of one bottle, wherever it lives: the approval loop's one
/// seam to it. [`LocalQueue`] is a directory on this machine (Docker: the
/// bottle's state directory, bind-mounted into supervise);
/// [`kubernetes::ExecQueue`] is supervise's volume in a cluster, reached
/// by running `supervise queue …` in its container. Both apply the same
/// rules (`bottle_queue::decide`), so approving, rejecting and the
/// preview are one code path (`crate::approvals`).
#[allow(async_fn_in_trait)] // used with concrete types only
pub trait BottleQueue {
    /// Where the queue is, for messages.
    fn describe(&self) -> String;
    /// Every valid proposal with its decision, and the files skipped.
    async fn scan(&self) -> Result<Scan, crate::approvals::ApprovalError>;
    /// Proposal `id` and its decision; `None` when there is no such
    /// proposal. An invalid file is an error naming it.
    async fn entry(
        &self,
        id: &ProposalId,
    ) -> Result<Option<Entry>, crate::approvals::ApprovalError>;
    /// Fails when `id` already has a decision file (valid or not).
    async fn ensure_undecided(
        &self,
        id: &ProposalId,
    ) -> Result<(), crate::approvals::ApprovalError>;
    /// Writes `decision` once, for an existing proposal, with its audit
    /// line ([`write_decision`]).
    async fn decide(&self, decision: &Decision) -> Result<(), crate::approvals::ApprovalError>;
    /// Appends an operator record (`routes_edit`, `pipelock_edit`) to the
    /// audit log.
    async fn append_operator(
        &self,
        record: &OperatorAuditRecord,
    ) -> Result<(), crate::approvals::ApprovalError>;
}

/// A queue directory on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalQueue(pub std::path::PathBuf);

impl BottleQueue for LocalQueue {
    fn describe(&self) -> String {
        self.0.display().to_string()
    }

    async fn scan(&self) -> Result<Scan, crate::approvals::ApprovalError> {
        Ok(scan(&self.0)?)
    }

    async fn entry(
        &self,
        id: &ProposalId,
    ) -> Result<Option<Entry>, crate::approvals::ApprovalError> {
        let Some(proposal) = read_proposal(&self.0, id)? else {
            return Ok(None);
        };
        Ok(Some(Entry {
            proposal,
            decision: read_decision(&self.0, id)?,
        }))
    }

    async fn ensure_undecided(
        &self,
        id: &ProposalId,
    ) -> Result<(), crate::approvals::ApprovalError> {
        Ok(ensure_undecided(&self.0, id)?)
    }

    async fn decide(&self, decision: &Decision) -> Result<(), crate::approvals::ApprovalError> {
        Ok(write_decision(&self.0, decision)?)
    }

    async fn append_operator(
        &self,
        record: &OperatorAuditRecord,
    ) -> Result<(), crate::approvals::ApprovalError> {
        Ok(QueueDir::new(&self.0)
            .append_audit(record)
            .map_err(QueueError::from)?)
    }
}

pub mod kubernetes;

#[cfg(test)]
pub(crate) mod tests;
