//! The types the agent side (supervise) and the operator side (launcher)
//! exchange through the queue directory: proposals, decisions and audit
//! records. One definition, so both ends compile against the same shape.
//! The file layout and write discipline are in `docs/queue-protocol.md`;
//! this module does no I/O.

use serde::{Deserialize, Serialize};

/// The queue-file format version.
pub const QUEUE_FORMAT_VERSION: u32 = 1;

/// A proposal id: lowercase letters, digits and `-`, 1–64 bytes, so it is
/// always a safe file name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProposalId(String);

impl ProposalId {
    /// Validates an id.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "invalid proposal id {s:?}; expected 1-64 lowercase letters, digits and hyphens"
            ))
        }
    }

    /// The id text (also its file stem).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProposalId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<ProposalId> for String {
    fn from(id: ProposalId) -> String {
        id.0
    }
}

impl std::fmt::Display for ProposalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Auth as the agent proposes it (unvalidated strings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressAuthRequest {
    /// `Bearer`, `token` or `Basic`.
    pub scheme: String,
    /// The operator's environment variable the agent suggests.
    pub token_ref: String,
}

/// The arguments of an `egress-block` call (validated with
/// [`crate::ProposedRoute::from_request`] before queueing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRequest {
    /// Host asked for.
    pub host: String,
    /// Path prefixes asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_allowlist: Vec<String>,
    /// Auth asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<EgressAuthRequest>,
}

/// What a proposal asks for; the tag is the MCP tool name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tool", content = "arguments")]
pub enum ProposalRequest {
    /// A new host or path on the egress proxy.
    #[serde(rename = "egress-block")]
    Egress(EgressRequest),
    /// A new Dockerfile for the agent image (rebuild and resume).
    #[serde(rename = "capability-block")]
    Capability {
        /// The full proposed Dockerfile.
        dockerfile: String,
    },
    /// A host on pipelock's allowlist (only when pipelock is on).
    #[serde(rename = "pipelock-block")]
    Pipelock {
        /// The host asked for.
        host: String,
    },
}

impl ProposalRequest {
    /// The MCP tool name that produced this request.
    pub fn tool(&self) -> &'static str {
        match self {
            Self::Egress(_) => "egress-block",
            Self::Capability { .. } => "capability-block",
            Self::Pipelock { .. } => "pipelock-block",
        }
    }
}

/// A proposal file (`pending/<id>.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Format version ([`QUEUE_FORMAT_VERSION`]).
    pub version: u32,
    /// Unique id; also the file stem.
    pub id: ProposalId,
    /// The bottle identity that asked.
    pub bottle: String,
    /// Tool and arguments.
    #[serde(flatten)]
    pub request: ProposalRequest,
    /// Why the agent needs it, in its own words.
    pub justification: String,
    /// When it was queued.
    pub created_at: jiff::Timestamp,
}

/// The operator's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Applied (for egress: live in the proxy).
    Approved,
    /// Refused; the note says why.
    Rejected,
}

/// A decision file (`decisions/<id>.json`), written once by the operator side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Format version ([`QUEUE_FORMAT_VERSION`]).
    pub version: u32,
    /// The proposal this decides.
    pub id: ProposalId,
    /// Approved or rejected.
    pub outcome: Outcome,
    /// The operator's note to the agent (may be empty on approval).
    #[serde(default)]
    pub note: String,
    /// When it was decided.
    pub decided_at: jiff::Timestamp,
    /// For egress approvals: the unified diff of the routes file that was
    /// applied. For capability approvals: the Dockerfile diff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// One line of `audit.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum AuditRecord {
    /// A proposal was queued.
    Proposal(Proposal),
    /// A decision was written.
    Decision(Decision),
}

/// A change of a bottle's live routes table, recorded in `audit.jsonl` by
/// the operator side: an operator's `launcher routes edit`, or the apply
/// of an approved `egress-block` (then [`RoutesEdit::proposal`] names it).
///
/// It is its own record type rather than a variant of [`AuditRecord`]:
/// a reader that only knows [`AuditRecord`] skips its line like any line
/// that does not parse, as the protocol allows, and code matching on
/// [`AuditRecord`] keeps compiling. Parse a line with [`OperatorAuditRecord`]
/// to read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesEdit {
    /// Format version ([`QUEUE_FORMAT_VERSION`]).
    pub version: u32,
    /// The bottle whose egress proxy changed.
    pub bottle: String,
    /// When the new table was confirmed live.
    pub at: jiff::Timestamp,
    /// The approved proposal this change applied; absent for a manual edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<ProposalId>,
    /// Version hash of the table live before (`RouteTable::version_hash`).
    pub before_version: String,
    /// Version hash of the table live after.
    pub after_version: String,
    /// Unified diff of the routes file, before → after (never secret:
    /// routes files name token variables, not values).
    pub diff: String,
}

/// An operator's edit of a bottle's pipelock config (`launcher pipelock
/// edit`), recorded in `audit.jsonl` once pipelock runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelockEdit {
    /// Format version ([`QUEUE_FORMAT_VERSION`]).
    pub version: u32,
    /// The bottle whose pipelock changed.
    pub bottle: String,
    /// When pipelock came back healthy with the new config.
    pub at: jiff::Timestamp,
    /// Unified diff of the config, before → after (pipelock's config
    /// holds no secret).
    pub diff: String,
}

/// Audit lines written by the operator side in addition to the
/// [`AuditRecord`] events (tagged by `event` like them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event")]
#[non_exhaustive]
pub enum OperatorAuditRecord {
    /// `{"event":"routes_edit", ...}`: the live routes changed.
    #[serde(rename = "routes_edit")]
    RoutesEdit(RoutesEdit),
    /// `{"event":"pipelock_edit", ...}`: an operator edited pipelock's config.
    #[serde(rename = "pipelock_edit")]
    PipelockEdit(PipelockEdit),
}

#[cfg(test)]
mod tests;
