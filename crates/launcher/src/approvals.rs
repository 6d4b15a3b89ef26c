//! Deciding proposals: finding a proposal across the bottles' state
//! directories, rejecting it, and approving an `egress-block` by making the
//! merged route table live before the decision is written.
//!
//! Is: the operator-side rules of `docs/queue-protocol.md` and
//! `docs/approvals.md` — the proposal is validated again (the queue is
//! writable from the bottle), a decision is written only for a pending
//! proposal of a running bottle, `approved` means applied, and one apply
//! at a time runs per bottle (an exclusive lock on `<state>/apply.lock`).
//!
//! Is not: the apply mechanics (see [`apply`]) or queue file I/O (see
//! [`queue`]).
//!
//! The queue a decision goes into is a [`queue::BottleQueue`]: a local
//! directory (Docker; the plain functions) or supervise's volume in a
//! cluster reached through `exec` (Kubernetes; the `*_in` functions take
//! the queue), with the same sequence either way.
//!
//! The approval loop's other parts live in this directory: what approval
//! changes, shown before anyone decides ([`preview`], with [`agent_text`]
//! escaping what the agent wrote), the operator's queue side ([`queue`]),
//! making routes live in egress ([`apply`], the [`apply::EgressControl`]
//! seam), a `capability-block` approval ([`capability`]) and the edit loop
//! of `routes edit` / `pipelock edit` ([`routes_edit`]).

use std::path::{Path, PathBuf};

use manifest::merge::ProposedRoute;
use manifest::queue::{
    Decision, Outcome, Proposal, ProposalId, ProposalRequest, QUEUE_FORMAT_VERSION, RoutesEdit,
};
use manifest::routes::RouteTable;

use crate::lifecycle::state::{self, BottleState};
use crate::plan::identity::Identity;
use apply::{ApplyError, EgressControl, PipelockMirror};
use preview::route_preview;
use queue::{BottleQueue, LocalQueue, QueueError};

pub mod agent_text;
pub mod apply;
pub mod capability;
pub mod preview;
pub mod queue;
pub mod routes_edit;

/// Lock file serialising applies to one bottle.
pub const APPLY_LOCK: &str = "apply.lock";

/// Why a decision could not be made; nothing was applied unless the
/// message says so.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// Not a proposal id.
    #[error("{0}; see `launcher proposals` for the pending ones")]
    BadId(String),
    /// No bottle has this proposal.
    #[error(
        "no proposal {id} in any bottle's queue under {root}; see `launcher proposals` for the pending ones"
    )]
    UnknownId {
        /// The id.
        id: String,
        /// The state root searched.
        root: PathBuf,
    },
    /// The proposal names a different bottle than the queue it is in.
    #[error(
        "proposal {id} in {identity}'s queue claims to come from bottle {claimed:?}; refusing to act on it"
    )]
    WrongBottle {
        /// The id.
        id: String,
        /// The queue's bottle.
        identity: String,
        /// What the file says.
        claimed: String,
    },
    /// The bottle is not running.
    #[error(
        "bottle {identity} is not running ({why}), so nobody waits for proposal {id}; nothing was applied. Its state is in {state}"
    )]
    Stopped {
        /// The bottle.
        identity: String,
        /// The id.
        id: String,
        /// What was found.
        why: String,
        /// The state directory.
        state: PathBuf,
    },
    /// A queue file problem.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The proposal does not validate.
    #[error("proposal {id} is invalid and cannot be applied ({reason}); reject it with a note")]
    InvalidProposal {
        /// The id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The approval would send a credential to a host that does not carry
    /// it, and the operator did not grant it.
    #[error(
        "proposal {id} asks to send your ${token_ref} to {host}, which does not carry it now: {held}. Approving that needs your explicit grant: `launcher approve {id} --grant {token_ref}`; or approve without it (`--without-auth`), or reject it"
    )]
    NewCredential {
        /// The id.
        id: String,
        /// The host.
        host: String,
        /// The operator variable (or the slot, when its variable is unknown).
        token_ref: String,
        /// Where the bottle holds it now and what a grant reads, in words.
        held: String,
    },
    /// `--grant` names something other than what the proposal needs.
    #[error("--grant {grant} does not match proposal {id}, which {wanted}; nothing was applied")]
    GrantMismatch {
        /// The id.
        id: String,
        /// The variable the operator granted.
        grant: String,
        /// What the proposal needs, in words.
        wanted: String,
    },
    /// `--grant NAME` names a variable that is not set.
    #[error(
        "--grant {name}: ${name} is not set (or is empty) in this environment; export it and approve again"
    )]
    GrantUnset {
        /// The variable.
        name: String,
    },
    /// `--grant NAME` is not a variable name.
    #[error(
        "--grant {name:?} is not an environment variable name; expected letters, digits and _ (e.g. GITHUB_TOKEN)"
    )]
    GrantInvalid {
        /// What was given.
        name: String,
    },
    /// This tool's approval is not handled here.
    #[error("{0}")]
    Unsupported(String),
    /// A rejection needs words.
    #[error("a rejection needs a note telling the agent why (--note TEXT)")]
    EmptyNote,
    /// Applying failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The lock or another local file failed.
    /// Running `supervise queue …` in a cluster failed.
    #[error(
        "supervise's queue in namespace {ns}: `supervise queue {command}` {reason}; nothing was decided by this step"
    )]
    QueueExec {
        /// The bottle's namespace.
        ns: String,
        /// The queue command.
        command: String,
        /// What went wrong (the command's own message when it ran).
        reason: String,
    },
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A proposal found in a bottle's queue.
#[derive(Clone, Debug)]
pub struct Located {
    /// The bottle it belongs to.
    pub identity: Identity,
    /// That bottle's state.
    pub state: BottleState,
    /// The proposal.
    pub proposal: Proposal,
}

impl Located {
    /// The bottle's queue directory.
    pub fn queue(&self) -> PathBuf {
        self.state.queue_dir()
    }
}

/// A pending proposal across bottles, for listing.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The bottle.
    pub identity: Identity,
    /// The proposal.
    pub proposal: Proposal,
}

/// Every pending proposal under `root` (optionally of one bottle), oldest
/// first, and the queue files skipped with their reasons.
pub fn list_pending(
    root: &Path,
    only: Option<&Identity>,
) -> Result<(Vec<Pending>, Vec<String>), ApprovalError> {
    let ids = state::list(root).map_err(|e| ApprovalError::Unsupported(e.to_string()))?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for identity in ids {
        if only.is_some_and(|o| *o != identity) {
            continue;
        }
        let st = BottleState::new(root, &identity);
        let scan = queue::scan(&st.queue_dir())?;
        pending_of(
            &identity,
            &st.queue_dir().display().to_string(),
            &scan,
            &mut out,
            &mut problems,
        );
    }
    sort_pending(&mut out);
    Ok((out, problems))
}

/// [`list_pending`] over queues reached through [`BottleQueue`] (the
/// bottles of a cluster), with the same checks. A queue that cannot be
/// read (its supervise is not running) is a problem line, not a failure
/// of the whole listing.
pub async fn list_pending_in<Q: BottleQueue>(
    bottles: &[(Identity, Q)],
) -> Result<(Vec<Pending>, Vec<String>), ApprovalError> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (identity, q) in bottles {
        match q.scan().await {
            Ok(scan) => pending_of(identity, &q.describe(), &scan, &mut out, &mut problems),
            Err(e) => problems.push(format!(
                "bottle {identity}: {e} (its proposals are not listed)"
            )),
        }
    }
    sort_pending(&mut out);
    Ok((out, problems))
}

/// The pending proposals of one bottle's scan that name this bottle.
fn pending_of(
    identity: &Identity,
    place: &str,
    scan: &queue::Scan,
    out: &mut Vec<Pending>,
    problems: &mut Vec<String>,
) {
    problems.extend(scan.problems.iter().cloned());
    for p in scan.pending() {
        if p.bottle != identity.as_str() {
            problems.push(format!(
                "{place}: proposal {} claims bottle {:?} but is in {identity}'s queue (skipped)",
                p.id, p.bottle
            ));
            continue;
        }
        out.push(Pending {
            identity: identity.clone(),
            proposal: p.clone(),
        });
    }
}

fn sort_pending(out: &mut [Pending]) {
    out.sort_by(|a, b| {
        (a.proposal.created_at, &a.proposal.id).cmp(&(b.proposal.created_at, &b.proposal.id))
    });
}

/// Finds proposal `id` in the queue of whichever bottle under `root` has
/// it. Invalid files are errors here (the operator named this one).
pub fn locate(root: &Path, id: &str) -> Result<Located, ApprovalError> {
    let pid = ProposalId::parse(id).map_err(ApprovalError::BadId)?;
    let ids = state::list(root).map_err(|e| ApprovalError::Unsupported(e.to_string()))?;
    for identity in ids {
        let st = BottleState::new(root, &identity);
        if let Some(proposal) = queue::read_proposal(&st.queue_dir(), &pid)? {
            if proposal.bottle != identity.as_str() {
                return Err(ApprovalError::WrongBottle {
                    id: id.to_owned(),
                    identity: identity.to_string(),
                    claimed: proposal.bottle,
                });
            }
            return Ok(Located {
                identity,
                state: st,
                proposal,
            });
        }
    }
    Err(ApprovalError::UnknownId {
        id: id.to_owned(),
        root: root.to_owned(),
    })
}

/// Finds proposal `id` among `bottles`' queues (reached through
/// [`BottleQueue`]: the bottles of a cluster), with the checks of
/// [`locate`]; the bottle's operator-side state (apply lock, granted
/// token slots) is under `state_root`. Returns the index of the bottle
/// whose queue has it. A queue that cannot be read is skipped; if no
/// other has the proposal, its error is the answer (it may be there).
pub async fn locate_in<Q: BottleQueue>(
    bottles: &[(Identity, Q)],
    state_root: &Path,
    id: &str,
) -> Result<(Located, usize), ApprovalError> {
    let pid = ProposalId::parse(id).map_err(ApprovalError::BadId)?;
    let mut unreadable = None;
    for (i, (identity, q)) in bottles.iter().enumerate() {
        let found = match q.entry(&pid).await {
            Ok(found) => found,
            Err(e) => {
                unreadable.get_or_insert(e);
                continue;
            }
        };
        if let Some(entry) = found {
            if entry.proposal.bottle != identity.as_str() {
                return Err(ApprovalError::WrongBottle {
                    id: id.to_owned(),
                    identity: identity.to_string(),
                    claimed: entry.proposal.bottle,
                });
            }
            return Ok((
                Located {
                    identity: identity.clone(),
                    state: BottleState::new(state_root, identity),
                    proposal: entry.proposal,
                },
                i,
            ));
        }
    }
    if let Some(e) = unreadable {
        return Err(e);
    }
    Err(ApprovalError::UnknownId {
        id: id.to_owned(),
        root: PathBuf::from(
            bottles
                .iter()
                .map(|(_, q)| q.describe())
                .collect::<Vec<_>>()
                .join(", "),
        ),
    })
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Writes a `rejected` decision with `note` (must not be empty).
pub fn reject(loc: &Located, note: &str) -> Result<Decision, ApprovalError> {
    let d = rejection(loc, note)?;
    let _lock = lock(&loc.state)?;
    queue::write_decision(&loc.queue(), &d)?;
    Ok(d)
}

/// [`reject`] into a queue reached through [`BottleQueue`].
pub async fn reject_in(
    loc: &Located,
    queue: &impl BottleQueue,
    note: &str,
) -> Result<Decision, ApprovalError> {
    let d = rejection(loc, note)?;
    let _lock = lock(&loc.state)?;
    queue.decide(&d).await?;
    Ok(d)
}

/// The `rejected` decision of `loc` with `note` (must not be empty).
fn rejection(loc: &Located, note: &str) -> Result<Decision, ApprovalError> {
    if note.trim().is_empty() {
        return Err(ApprovalError::EmptyNote);
    }
    Ok(Decision {
        version: QUEUE_FORMAT_VERSION,
        id: loc.proposal.id.clone(),
        outcome: Outcome::Rejected,
        note: note.trim().to_owned(),
        decided_at: now(),
        diff: None,
    })
}

/// The operator's consent to hand one of their credentials to a host:
/// `--grant NAME` names the variable. Its value, read from the operator's
/// environment, is needed only when the bottle does not hold the
/// credential yet, and is written only into the egress container.
/// `Debug` never shows the value.
#[derive(Clone)]
pub struct Grant {
    token_ref: String,
    value: Option<String>,
}

impl Grant {
    /// Consent for `name`, with its value read through `env` (the
    /// operator's environment) when it is set and not empty.
    pub fn from_env(
        name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ApprovalError> {
        if !manifest::valid_env_name(name) {
            return Err(ApprovalError::GrantInvalid {
                name: name.to_owned(),
            });
        }
        Ok(Self {
            token_ref: name.to_owned(),
            value: env(name).filter(|v| !v.trim().is_empty()),
        })
    }

    /// The operator's variable granted.
    pub fn token_ref(&self) -> &str {
        &self.token_ref
    }

    /// The value, or [`ApprovalError::GrantUnset`].
    fn value(&self) -> Result<&str, ApprovalError> {
        self.value
            .as_deref()
            .ok_or_else(|| ApprovalError::GrantUnset {
                name: self.token_ref.clone(),
            })
    }
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("token_ref", &self.token_ref)
            .field("value", &self.value.as_ref().map(|_| "***"))
            .finish()
    }
}

/// How an egress approval went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressApproved {
    /// The decision written.
    pub decision: Decision,
    /// False when the table already allowed everything asked for (nothing
    /// was written to the proxy).
    pub changed: bool,
    /// The version now live.
    pub version: String,
    /// Token variables the live table names that the proxy lacks.
    pub missing_token_env: Vec<String>,
    /// Set when the route went live but its `routes_edit` audit line could
    /// not be appended (the decision is still written: the change is live).
    pub audit_warning: Option<String>,
    /// The credentials the operator's grant sent to a new host.
    pub granted: Vec<preview::Attachment>,
}

/// Approves an `egress-block` proposal: validate again → merge into the
/// live table → (a granted credential's token file) → apply (pipelock,
/// write, SIGHUP, confirm) → only then the `approved` decision with the
/// diff. `without_auth` drops a proposed credential. Sending any
/// credential to a host that does not carry it now needs the operator's
/// `grant` naming it, whether or not the bottle holds it already
/// ([`preview::attachments`]); a credential the bottle does not hold yet
/// also needs the grant's value.
pub async fn approve_egress(
    loc: &Located,
    egress: &impl EgressControl,
    pipelock: Option<&impl PipelockMirror>,
    note: &str,
    without_auth: bool,
    grant: Option<&Grant>,
    allow_private: bool,
) -> Result<EgressApproved, ApprovalError> {
    approve_egress_in(
        loc,
        &LocalQueue(loc.queue()),
        egress,
        pipelock,
        note,
        without_auth,
        grant,
        allow_private,
    )
    .await
}

/// [`approve_egress`] with the decision written into `queue` (a local
/// directory, or supervise's queue in a cluster): the same sequence.
#[allow(clippy::too_many_arguments)] // approve_egress's, plus the queue
pub async fn approve_egress_in(
    loc: &Located,
    queue: &impl BottleQueue,
    egress: &impl EgressControl,
    pipelock: Option<&impl PipelockMirror>,
    note: &str,
    without_auth: bool,
    grant: Option<&Grant>,
    allow_private: bool,
) -> Result<EgressApproved, ApprovalError> {
    let id = loc.proposal.id.to_string();
    let ProposalRequest::Egress(req) = &loc.proposal.request else {
        return Err(ApprovalError::Unsupported(format!(
            "proposal {id} is a {} proposal, not egress-block",
            loc.proposal.request.tool()
        )));
    };
    // The reason may quote the agent's host or path: escaped for the terminal.
    let mut proposed =
        ProposedRoute::from_request(req).map_err(|e| ApprovalError::InvalidProposal {
            id: id.clone(),
            reason: agent_text::one_line(&e.to_string()),
        })?;
    if without_auth {
        proposed.auth = None;
    }
    let _lock = lock(&loc.state)?;
    queue.ensure_undecided(&loc.proposal.id).await?;
    let bottle = loc.identity.as_str();
    let slots = loc
        .state
        .token_slots()
        .map_err(|e| ApprovalError::Unsupported(format!("{e}; nothing was applied")))?;
    let (table, before) = apply::live_table(bottle, egress).await?;
    let preview = route_preview(&table, &slots, &proposed);
    check_grant(&id, &preview, grant)?;
    let granted = preview.attaches;
    // The operator's opt-in to non-global addresses (never the agent's).
    let merged = if allow_private {
        preview.merge.allow_private(&table, &proposed.host)
    } else {
        preview.merge
    };
    if let (Some(slot), Some(g)) = (&merged.new_slot, grant) {
        // A credential the bottle does not hold yet: its value comes with
        // the grant (an unset one is refused here, nothing changed yet).
        let value = g.value()?;
        egress
            .write_token(&slot.token_env, value)
            .await
            .map_err(|reason| ApplyError::Token {
                bottle: bottle.to_owned(),
                token_env: slot.token_env.clone(),
                reason,
                live: before.version.clone(),
            })?;
    }
    let status = if merged.changed {
        apply::apply_table(
            bottle,
            egress,
            pipelock,
            &table.render(),
            &before,
            &merged.table,
            apply::CONFIRM_TIMEOUT,
        )
        .await?
    } else {
        before.clone()
    };
    let audit_warning = if merged.changed {
        record_routes_edit(
            loc,
            queue,
            Some(&loc.proposal.id),
            &before.version,
            &status.version,
            &merged.diff,
        )
        .await
        .err()
    } else {
        None
    };
    // Remember the granted slot so a later proposal for the same
    // credential reuses it. A failure only costs a second grant later.
    let audit_warning = match &merged.new_slot {
        Some(slot) => {
            let mut all = slots.clone();
            all.push(slot.clone());
            match loc.state.write_token_slots(&all) {
                Ok(()) => audit_warning,
                Err(e) => Some(
                    [
                        audit_warning,
                        Some(format!("recording token slot {}: {e}", slot.token_env)),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; "),
                ),
            }
        }
        None => audit_warning,
    };
    let decision = Decision {
        version: QUEUE_FORMAT_VERSION,
        id: loc.proposal.id.clone(),
        outcome: Outcome::Approved,
        note: note.trim().to_owned(),
        decided_at: now(),
        diff: merged.changed.then(|| merged.diff.clone()),
    };
    queue.decide(&decision).await.map_err(|e| {
        if merged.changed {
            ApprovalError::Unsupported(format!(
                "the route is live in {bottle}'s egress proxy (version {}), but writing the decision failed: {e}. The agent has not been told; retry `launcher approve {id}` (the merge is already applied, so it only writes the decision)",
                status.version
            ))
        } else {
            e
        }
    })?;
    Ok(EgressApproved {
        decision,
        changed: merged.changed,
        version: status.version,
        missing_token_env: status.missing_token_env,
        audit_warning,
        granted,
    })
}

/// Approves a `pipelock-block` proposal: the host (validated again like an
/// egress host; `*.x` becomes `x`, an IP literal is refused — pipelock's
/// allowlist holds names) is added to the running pipelock's allowlist,
/// and only then the `approved` decision is written. egress-proxy is not
/// changed: a host pipelock allows but egress does not is still refused
/// by egress (the agent asks `egress-block` for that).
pub async fn approve_pipelock(
    loc: &Located,
    pipelock: &impl PipelockMirror,
    note: &str,
) -> Result<Decision, ApprovalError> {
    let id = loc.proposal.id.to_string();
    let ProposalRequest::Pipelock { host } = &loc.proposal.request else {
        return Err(ApprovalError::Unsupported(format!(
            "proposal {id} is a {} proposal, not pipelock-block",
            loc.proposal.request.tool()
        )));
    };
    let invalid = |reason: String| ApprovalError::InvalidProposal {
        id: id.clone(),
        reason,
    };
    let proposed = ProposedRoute::from_request(&manifest::queue::EgressRequest {
        host: host.clone(),
        path_allowlist: Vec::new(),
        auth: None,
    })
    .map_err(|e| invalid(agent_text::one_line(&e.to_string())))?;
    if proposed.host.is_ip() {
        return Err(invalid(format!(
            "{} is an IP address; pipelock's allowlist holds host names",
            proposed.host
        )));
    }
    let name = proposed.host.apex().to_owned();
    if name.is_empty() || name == "*" {
        return Err(invalid(format!("{host:?} names no host")));
    }
    let _lock = lock(&loc.state)?;
    queue::ensure_undecided(&loc.queue(), &loc.proposal.id)?;
    pipelock
        .mirror(std::slice::from_ref(&name))
        .await
        .map_err(|reason| {
            ApprovalError::Unsupported(format!(
                "adding {name} to pipelock's allowlist in {} failed: {reason}. Nothing was decided; egress-proxy was not touched. Check `launcher logs {} --component pipelock`, then decide again",
                loc.identity, loc.identity
            ))
        })?;
    let decision = Decision {
        version: QUEUE_FORMAT_VERSION,
        id: loc.proposal.id.clone(),
        outcome: Outcome::Approved,
        note: note.trim().to_owned(),
        decided_at: now(),
        diff: Some(format!("pipelock api_allowlist:\n+  - {name}\n")),
    };
    queue::write_decision(&loc.queue(), &decision)?;
    Ok(decision)
}

/// The credential rule: every credential the approval attaches to a host
/// that does not carry it must be granted by name, and a grant must name
/// exactly what is attached.
fn check_grant(
    id: &str,
    preview: &preview::RoutePreview,
    grant: Option<&Grant>,
) -> Result<(), ApprovalError> {
    for a in &preview.attaches {
        match grant {
            None => {
                return Err(ApprovalError::NewCredential {
                    id: id.to_owned(),
                    host: a.host.clone(),
                    token_ref: a.name().to_owned(),
                    held: if a.new_slot {
                        "this bottle does not hold it; with the grant its value is read from your environment and goes only into the egress container".to_owned()
                    } else if a.carried_by.is_empty() {
                        format!(
                            "this bottle holds it in {} for no host; egress already has the value, nothing is read from your environment",
                            a.token_env
                        )
                    } else {
                        format!(
                            "this bottle sends it to {} only; egress already has the value, nothing is read from your environment",
                            a.carried_by.join(", ")
                        )
                    },
                });
            }
            Some(g) if g.token_ref() != a.name() => {
                return Err(ApprovalError::GrantMismatch {
                    id: id.to_owned(),
                    grant: g.token_ref().to_owned(),
                    wanted: format!("asks for ${} on {}", a.name(), a.host),
                });
            }
            Some(_) => {}
        }
    }
    match grant {
        Some(g) if preview.attaches.is_empty() => Err(ApprovalError::GrantMismatch {
            id: id.to_owned(),
            grant: g.token_ref().to_owned(),
            wanted: "sends no credential to a new host (nothing to grant)".to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Appends the `routes_edit` audit line of a confirmed change; `Err` is a
/// warning text (the change is live whatever happens here).
async fn record_routes_edit(
    loc: &Located,
    queue: &impl BottleQueue,
    proposal: Option<&ProposalId>,
    before: &str,
    after: &str,
    diff: &str,
) -> Result<(), String> {
    let record = RoutesEdit {
        version: QUEUE_FORMAT_VERSION,
        bottle: loc.identity.to_string(),
        at: now(),
        proposal: proposal.cloned(),
        before_version: before.to_owned(),
        after_version: after.to_owned(),
        diff: diff.to_owned(),
    };
    queue
        .append_operator(&manifest::queue::OperatorAuditRecord::RoutesEdit(record))
        .await
        .map_err(|e| {
        format!(
            "the new routes are live in {} (version {after}), but recording the change in the audit log failed: {e}",
            loc.identity
        )
    })
}

/// What a manual `routes edit` apply did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditApplied {
    /// The version live before.
    pub before_version: String,
    /// The status that confirmed the new table.
    pub status: apply::EgressStatus,
    /// The unified diff of the routes file.
    pub diff: String,
    /// Set when the `routes_edit` audit line could not be appended.
    pub audit_warning: Option<String>,
}

/// Applies an operator's edited table to bottle `identity` (whose state is
/// `state`): under the bottle's apply lock, the live table must still be
/// the one the operator edited (`edited_from`, the text the editor
/// started from) — another approval or edit in between is refused rather
/// than overwritten — then write, SIGHUP, confirm, and append a
/// `routes_edit` record (before/after versions and the diff).
pub async fn apply_edit(
    identity: &Identity,
    state: &BottleState,
    egress: &impl EgressControl,
    pipelock: Option<&impl PipelockMirror>,
    edited_from: &str,
    table: &RouteTable,
) -> Result<EditApplied, ApprovalError> {
    let bottle = identity.as_str();
    let _lock = lock(state)?;
    let (live, before) = apply::live_table(bottle, egress).await?;
    let from = RouteTable::parse(edited_from, apply::EGRESS_ROUTES_PATH).ok();
    if from.as_ref().map(RouteTable::version_hash) != Some(live.version_hash()) {
        return Err(ApprovalError::Unsupported(format!(
            "the live routes of {bottle} changed while you were editing (now version {}); nothing was applied. Run `launcher routes edit {bottle}` again",
            before.version
        )));
    }
    let old_text = egress.read_routes().await.map_err(|reason| {
        ApprovalError::Apply(ApplyError::Read {
            bottle: bottle.to_owned(),
            reason,
        })
    })?;
    let status = apply::apply_table(
        bottle,
        egress,
        pipelock,
        &old_text,
        &before,
        table,
        apply::CONFIRM_TIMEOUT,
    )
    .await?;
    let diff = manifest::merge::unified_diff(&old_text, &table.render());
    let loc_queue = state.queue_dir();
    let record = RoutesEdit {
        version: QUEUE_FORMAT_VERSION,
        bottle: bottle.to_owned(),
        at: now(),
        proposal: None,
        before_version: before.version.clone(),
        after_version: status.version.clone(),
        diff: diff.clone(),
    };
    let audit_warning = queue::append_routes_edit(&loc_queue, &record)
        .err()
        .map(|e| {
            format!(
                "the new routes are live in {bottle} (version {}), but recording the change in the audit log failed: {e}",
                status.version
            )
        });
    Ok(EditApplied {
        before_version: before.version,
        status,
        diff,
        audit_warning,
    })
}

/// What a `pipelock edit` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelockEdited {
    /// The unified diff of the config.
    pub diff: String,
    /// Hosts the edit added to pipelock's allowlist.
    pub added: Vec<String>,
    /// Hosts the edit removed from it.
    pub removed: Vec<String>,
    /// Set when the `pipelock_edit` audit line could not be appended.
    pub audit_warning: Option<String>,
}

/// Applies an operator's edited pipelock config to bottle `identity`:
/// under the bottle's apply lock the running config must still be the one
/// the editor started from (`edited_from`; an approval's mirror in
/// between is refused rather than overwritten), then pipelock is given
/// the new config and restarted, and must pass its health check — else
/// the previous config is loaded again ([`apply::replace_pipelock_config`]).
/// A confirmed edit appends a `pipelock_edit` audit line with the diff.
pub async fn apply_pipelock_edit(
    identity: &Identity,
    state: &BottleState,
    pipelock: &impl apply::PipelockConfig,
    edited_from: &str,
    new: &apply::PipelockConfigText,
) -> Result<PipelockEdited, ApprovalError> {
    let bottle = identity.as_str();
    let _lock = lock(state)?;
    let live = pipelock.read_config().await.map_err(|reason| {
        ApprovalError::Unsupported(format!(
            "reading pipelock's config in {bottle}: {reason}; nothing was changed"
        ))
    })?;
    if live != edited_from {
        return Err(ApprovalError::Unsupported(format!(
            "pipelock's config in {bottle} changed while you were editing (an approval added a host); nothing was applied. Run `launcher pipelock edit {bottle}` again"
        )));
    }
    apply::replace_pipelock_config(bottle, pipelock, &live, new).await?;
    let before: Vec<String> = apply::check_pipelock_config(&live)
        .map(|c| c.hosts().to_vec())
        .unwrap_or_default();
    let diff = manifest::merge::unified_diff(&live, new.text());
    let record = manifest::queue::PipelockEdit {
        version: QUEUE_FORMAT_VERSION,
        bottle: bottle.to_owned(),
        at: now(),
        diff: diff.clone(),
    };
    let audit_warning = queue::append_pipelock_edit(&state.queue_dir(), &record)
        .err()
        .map(|e| {
            format!(
                "pipelock in {bottle} runs the new config, but recording the change in the audit log failed: {e}"
            )
        });
    Ok(PipelockEdited {
        added: new
            .hosts()
            .iter()
            .filter(|h| !before.contains(h))
            .cloned()
            .collect(),
        removed: before
            .iter()
            .filter(|h| !new.hosts().contains(h))
            .cloned()
            .collect(),
        diff,
        audit_warning,
    })
}

/// Holds `<state>/apply.lock` exclusively until dropped.
pub fn lock(state: &BottleState) -> Result<std::fs::File, ApprovalError> {
    let path = state.dir().join(APPLY_LOCK);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ApprovalError::Io {
            action: "opening",
            path: path.clone(),
            source,
        })?;
    f.lock().map_err(|source| ApprovalError::Io {
        action: "locking",
        path,
        source,
    })?;
    Ok(f)
}

/// Agent-written text made safe for a terminal, newlines kept (see
/// [`agent_text::multi_line`]).
pub fn sanitize(s: &str) -> String {
    agent_text::multi_line(s)
}

/// A short human age: `42s`, `5m`, `3h`, `2d`.
pub fn age(since: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let secs = now.as_second().saturating_sub(since.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests;
