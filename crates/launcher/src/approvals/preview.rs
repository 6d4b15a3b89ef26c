//! What approving a proposal changes, worked out before anyone decides:
//! the one computation behind `launcher proposals`, `proposals show`,
//! `approve` and the dashboard, and the same one `approve` enforces the
//! credential rule with, so what the operator is shown is what happens.
//!
//! Is: [`route_preview`] (the merged table, its diff, and every credential
//! the merge would attach to a host that does not carry it now —
//! [`Attachment`]), [`dockerfile_preview`] (the diff against the bottle's
//! current Dockerfile), [`changes`] (both, gathered from a running
//! bottle), and [`render`], the text layout: what is asked (host, paths,
//! credential) and the diff first, the agent's justification last, quoted
//! and cut, every agent-written character escaped ([`super::agent_text`]).
//!
//! Is not: applying anything. A preview reads the live table; the apply
//! reads it again under the bottle's lock.

use manifest::merge::{Merge, ProposedRoute, TokenSlot, merge_route, unified_diff};
use manifest::queue::{EgressRequest, ProposalRequest};
use manifest::routes::RouteTable;

use super::Pending;
use super::agent_text::{self, Excerpt};
use crate::approvals::apply::{self, EgressControl};

/// A credential an approval would send to a host that does not carry it
/// now (found by comparing the tables, so any route change that attaches
/// one is caught, not only the merge's append).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The host (pattern) that would get it.
    pub host: String,
    /// The slot variable in the egress container.
    pub token_env: String,
    /// The operator's variable behind the slot, when known.
    pub token_ref: Option<String>,
    /// Whether the slot is new (its value comes from the operator's
    /// environment with the grant) or egress holds it already.
    pub new_slot: bool,
    /// The hosts that carry this credential now.
    pub carried_by: Vec<String>,
}

impl Attachment {
    /// The name the operator grants: the variable, else the slot.
    pub fn name(&self) -> &str {
        self.token_ref.as_deref().unwrap_or(&self.token_env)
    }
}

/// Every (host, slot) pair of `after` that `before` does not have: a
/// credential sent to a host that did not get it. `slots` and `new_slot`
/// name the operator variables behind the slots.
pub fn attachments(
    before: &RouteTable,
    after: &RouteTable,
    slots: &[TokenSlot],
    new_slot: Option<&TokenSlot>,
) -> Vec<Attachment> {
    let carries = |t: &RouteTable, host: &str, env: &str| {
        t.routes()
            .iter()
            .any(|r| r.host.as_str() == host && r.auth.as_ref().is_some_and(|a| a.token_env == env))
    };
    after
        .routes()
        .iter()
        .filter_map(|r| {
            let env = &r.auth.as_ref()?.token_env;
            let host = r.host.as_str();
            if carries(before, host, env) {
                return None;
            }
            let fresh = new_slot.filter(|s| &s.token_env == env);
            Some(Attachment {
                host: host.to_owned(),
                token_env: env.clone(),
                token_ref: fresh
                    .or_else(|| slots.iter().find(|s| &s.token_env == env))
                    .map(|s| s.token_ref.clone()),
                new_slot: fresh.is_some(),
                carried_by: before
                    .routes()
                    .iter()
                    .filter(|b| b.auth.as_ref().is_some_and(|a| &a.token_env == env))
                    .map(|b| b.host.to_string())
                    .collect(),
            })
        })
        .collect()
}

/// What approving an `egress-block` does to a live table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePreview {
    /// The validated proposal (normalised host and paths).
    pub proposed: ProposedRoute,
    /// The merge: new table, diff, slot, whether anything changes.
    pub merge: Merge,
    /// Credentials the approval would send to a host that does not carry
    /// them: each needs the operator's explicit grant.
    pub attaches: Vec<Attachment>,
    /// Set when the proposal asks for a credential on a host that already
    /// has a route: the merge keeps that route's auth and ignores it.
    pub ignored_credential: bool,
}

/// Merges `proposed` into `table` (reusing `slots`) and says which
/// credentials that would attach where.
pub fn route_preview(
    table: &RouteTable,
    slots: &[TokenSlot],
    proposed: &ProposedRoute,
) -> RoutePreview {
    let merge = merge_route(table, slots, proposed);
    let attaches = attachments(table, &merge.table, slots, merge.new_slot.as_ref());
    RoutePreview {
        ignored_credential: proposed.auth.is_some() && table.get(&proposed.host).is_some(),
        proposed: proposed.clone(),
        attaches,
        merge,
    }
}

/// Where the Dockerfile a proposal is compared with came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// The one the running bottle was built from (supervise's copy).
    Running,
    /// The one an earlier capability approval saved for this bottle.
    Saved,
    /// None could be read: the diff is the whole file.
    Unknown,
}

/// What approving a `capability-block` changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerfilePreview {
    /// Unified diff, current → proposed.
    pub diff: String,
    /// What the diff is against.
    pub baseline: Baseline,
    /// Lines added and removed.
    pub added: usize,
    /// Lines removed.
    pub removed: usize,
    /// Lines of the proposed Dockerfile.
    pub lines: usize,
}

/// The lines of a unified diff after its `--- `/`+++ ` header (only the
/// leading two lines are a header: an added line `++ x` reads `+++ x` in
/// the body and must still count, and show, as an added line).
fn diff_body(diff: &str) -> impl Iterator<Item = &str> {
    let mut lines = diff.lines().peekable();
    if lines.peek().is_some_and(|l| l.starts_with("--- ")) {
        lines.next();
        if lines.peek().is_some_and(|l| l.starts_with("+++ ")) {
            lines.next();
        }
    }
    lines
}

/// Added and removed lines of a unified diff.
pub fn diff_counts(diff: &str) -> (usize, usize) {
    let mut added = 0;
    let mut removed = 0;
    for l in diff_body(diff) {
        if l.starts_with('+') {
            added += 1;
        } else if l.starts_with('-') {
            removed += 1;
        }
    }
    (added, removed)
}

/// A unified diff for a small screen: no `---`/`+++` header, context cut
/// to `context` lines around each change, `⋯` where lines were left out.
pub fn compact_diff(diff: &str, context: usize) -> Vec<String> {
    let lines: Vec<&str> = diff_body(diff).collect();
    let changed = |l: &str| l.starts_with('+') || l.starts_with('-');
    let near = |i: usize| {
        let lo = i.saturating_sub(context);
        let hi = (i + context).min(lines.len().saturating_sub(1));
        (lo..=hi).any(|j| changed(lines[j]))
    };
    let mut out: Vec<String> = Vec::new();
    let mut gap = false;
    for (i, l) in lines.iter().enumerate() {
        if changed(l) || (!l.starts_with("@@") && near(i)) {
            if gap && !out.is_empty() {
                out.push("⋯".to_owned());
            }
            gap = false;
            out.push((*l).to_owned());
        } else {
            gap = true;
        }
    }
    out
}

/// The diff of `proposed` against `current` (the empty text when the
/// baseline is [`Baseline::Unknown`]).
pub fn dockerfile_preview(current: &str, baseline: Baseline, proposed: &str) -> DockerfilePreview {
    let diff = unified_diff(current, proposed);
    let (added, removed) = diff_counts(&diff);
    DockerfilePreview {
        diff,
        baseline,
        added,
        removed,
        lines: proposed.lines().count(),
    }
}

/// What approving a proposal changes, as far as it can be known now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changes {
    /// An `egress-block` against the live table.
    Routes(Box<RoutePreview>),
    /// A `capability-block` against the current Dockerfile.
    Dockerfile(DockerfilePreview),
    /// A `pipelock-block`: this name joins pipelock's allowlist.
    Pipelock(String),
    /// Why nothing can be said (the bottle stopped, the proposal is
    /// invalid, egress did not answer).
    Unavailable(String),
}

/// The route changes of `req` against the live table of `bottle`'s egress.
pub async fn route_changes(
    bottle: &str,
    egress: &impl EgressControl,
    slots: &[TokenSlot],
    req: &EgressRequest,
) -> Changes {
    let proposed = match ProposedRoute::from_request(req) {
        Ok(p) => p,
        Err(e) => return Changes::Unavailable(format!("invalid proposal: {e}")),
    };
    match apply::live_table(bottle, egress).await {
        Ok((table, _)) => Changes::Routes(Box::new(route_preview(&table, slots, &proposed))),
        Err(e) => Changes::Unavailable(e.to_string()),
    }
}

/// What approving `p` changes, read from Docker (`engine`) when its bottle
/// is `running`.
pub async fn changes(
    engine: Option<&crate::engine::docker::Engine>,
    state: &crate::lifecycle::state::BottleState,
    p: &Pending,
    running: bool,
) -> Changes {
    let identity = &p.identity;
    let engine = engine.filter(|_| running);
    match &p.proposal.request {
        ProposalRequest::Capability { dockerfile } => {
            let (current, baseline) =
                crate::approvals::capability::baseline_dockerfile(engine, identity, state.dir())
                    .await;
            Changes::Dockerfile(dockerfile_preview(&current, baseline, dockerfile))
        }
        ProposalRequest::Pipelock { host } => {
            match ProposedRoute::from_request(&EgressRequest {
                host: host.clone(),
                path_allowlist: Vec::new(),
                auth: None,
            }) {
                Ok(p) if !p.host.is_ip() => Changes::Pipelock(p.host.apex().to_owned()),
                Ok(_) => Changes::Unavailable(
                    "an IP address; pipelock's allowlist holds host names".into(),
                ),
                Err(e) => Changes::Unavailable(format!("invalid proposal: {e}")),
            }
        }
        ProposalRequest::Egress(r) => {
            let Some(engine) = engine else {
                return Changes::Unavailable(format!(
                    "bottle {identity} is not running (or Docker does not answer), so its live routes cannot be read"
                ));
            };
            let slots = match state.token_slots() {
                Ok(s) => s,
                Err(e) => return Changes::Unavailable(e.to_string()),
            };
            let egress = apply::DockerEgress::new(engine.clone(), identity.clone());
            route_changes(identity.as_str(), &egress, &slots, r).await
        }
    }
}

/// How much of a proposal [`render`] shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Columns available (lines are cut or wrapped to fit).
    pub width: usize,
    /// Everything (`proposals show`): the whole diff and justification,
    /// long lines wrapped instead of cut.
    pub full: bool,
}

/// Diff lines shown in a listing before "… N more".
pub const DIFF_LINES: usize = 40;
/// Justification lines shown in a listing.
pub const JUSTIFICATION_LINES: usize = 3;
/// Prefix of every line of agent-written text in the text layout: none of
/// the launcher's own lines starts with it, so agent text cannot pass for
/// them.
pub const QUOTE: &str = "    > ";
/// Prefix of diff lines.
pub const DIFF: &str = "    ";

/// The launcher's own text, wrapped to `width` with `indent` on every
/// piece (it may carry a validated host name of any length).
fn own(out: &mut String, indent: &str, text: &str, width: usize) {
    for piece in agent_text::wrap_words(text, width.saturating_sub(indent.len()).max(20)) {
        out.push_str(indent);
        out.push_str(&piece);
        out.push('\n');
    }
}

fn quoted(out: &mut String, prefix: &str, text: &str, layout: Layout) {
    let room = layout.width.saturating_sub(prefix.len()).max(20);
    for l in agent_text::lines(text) {
        let pieces = if layout.full {
            agent_text::wrap_words(&l, room)
        } else {
            vec![agent_text::cut(&l, room)]
        };
        for piece in pieces {
            out.push_str(prefix);
            out.push_str(&piece);
            out.push('\n');
        }
    }
}

/// The lines saying what is asked: host, paths and credential of an
/// egress request (normalised when it validates, else escaped as
/// written), the size of a Dockerfile, the pipelock host. One-line
/// fields, every agent-written character escaped.
pub fn asked(req: &ProposalRequest) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match req {
        ProposalRequest::Egress(e) => match ProposedRoute::from_request(e) {
            Ok(r) => {
                out.push(("host", r.host.to_string()));
                out.push((
                    "paths",
                    if r.path_allowlist.is_empty() {
                        "every path".into()
                    } else {
                        agent_text::one_line(
                            &r.path_allowlist
                                .iter()
                                .map(|p| p.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                        )
                    },
                ));
                out.push((
                    "credential",
                    r.auth.as_ref().map_or_else(
                        || "none".into(),
                        |a| format!("${} ({})", a.token_ref, a.scheme.as_str()),
                    ),
                ));
            }
            Err(err) => {
                out.push(("host", agent_text::one_line(&e.host)));
                out.push(("paths", agent_text::one_line(&e.path_allowlist.join(", "))));
                out.push((
                    "credential",
                    e.auth.as_ref().map_or_else(
                        || "none".into(),
                        |a| agent_text::one_line(&format!("${} ({})", a.token_ref, a.scheme)),
                    ),
                ));
                out.push((
                    "INVALID",
                    agent_text::one_line(&format!("{err}; approving is refused")),
                ));
            }
        },
        ProposalRequest::Capability { dockerfile } => {
            out.push((
                "Dockerfile",
                format!(
                    "{} lines, {} bytes",
                    dockerfile.lines().count(),
                    dockerfile.len()
                ),
            ));
        }
        ProposalRequest::Pipelock { host } => {
            out.push(("host", agent_text::one_line(host)));
        }
    }
    out
}

/// One `  key         value` line of [`asked`], cut to `width` columns.
pub fn field(key: &str, value: &str, width: usize) -> String {
    format!(
        "  {key:<11} {}",
        agent_text::cut(value, width.saturating_sub(14).max(20))
    )
}

/// What the credential part of an egress approval does, in one or two
/// lines (empty when no credential is asked for).
pub fn credential_notes(r: &RoutePreview) -> Vec<String> {
    let mut out = Vec::new();
    for a in &r.attaches {
        out.push(format!(
            "GRANT NEEDED: approving sends your ${} to {}, which does not carry it now; approve with `--grant {}`",
            a.name(),
            a.host,
            a.name()
        ));
        out.push(if a.new_slot {
            "the bottle does not hold it yet: the value is read from your environment".into()
        } else if a.carried_by.is_empty() {
            format!("egress holds it already (slot {})", a.token_env)
        } else {
            format!(
                "egress holds it already and sends it to {} only",
                a.carried_by.join(", ")
            )
        });
    }
    if r.ignored_credential {
        out.push(format!(
            "the credential asked for is ignored: {} already has a route, whose own credential (if any) stays",
            r.proposed.host
        ));
    }
    out
}

/// What approval changes: a headline and the diff.
pub fn change_lines(changes: &Changes) -> (String, String) {
    match changes {
        Changes::Routes(r) if !r.merge.changed => (
            "approval changes nothing: the live routes already allow it".into(),
            String::new(),
        ),
        Changes::Routes(r) => {
            let (a, d) = diff_counts(&r.merge.diff);
            (
                format!("approval changes the live routes (+{a} -{d}):"),
                r.merge.diff.clone(),
            )
        }
        Changes::Dockerfile(d) => {
            let against = match d.baseline {
                Baseline::Running => "the bottle's current Dockerfile",
                Baseline::Saved => "the Dockerfile saved for this bottle",
                Baseline::Unknown => "nothing (the current Dockerfile could not be read)",
            };
            (
                format!(
                    "approval rebuilds the agent image (+{} -{} lines against {against}):",
                    d.added, d.removed
                ),
                d.diff.clone(),
            )
        }
        Changes::Pipelock(host) => (
            format!("approval adds {host} to pipelock's allowlist (egress-proxy unchanged)"),
            String::new(),
        ),
        Changes::Unavailable(why) => (
            format!(
                "what approval changes is not known: {}",
                agent_text::one_line(why)
            ),
            String::new(),
        ),
    }
}

/// One proposal as text: the headline, what is asked, the credential
/// rule, the diff (cut at [`DIFF_LINES`] unless `layout.full`), and then
/// the agent's justification, quoted and cut at [`JUSTIFICATION_LINES`]
/// (whole with `layout.full`), with the command that shows it whole.
pub fn render(p: &Pending, changes: &Changes, now: jiff::Timestamp, layout: Layout) -> String {
    let id = &p.proposal.id;
    let mut out = format!(
        "{id}  {}  {}  ({} ago)\n",
        p.identity,
        p.proposal.request.tool(),
        super::age(p.proposal.created_at, now)
    );
    for (k, v) in asked(&p.proposal.request) {
        out.push_str(&field(k, &v, layout.width));
        out.push('\n');
    }
    if let Changes::Routes(r) = changes {
        for n in credential_notes(r) {
            own(&mut out, "              ", &n, layout.width);
        }
    }
    let (headline, diff) = change_lines(changes);
    own(&mut out, "  ", &headline, layout.width);
    let diff_lines: Vec<&str> = diff.lines().collect();
    let shown = if layout.full {
        diff_lines.len()
    } else {
        DIFF_LINES.min(diff_lines.len())
    };
    if shown > 0 {
        quoted(&mut out, DIFF, &diff_lines[..shown].join("\n"), layout);
    }
    if shown < diff_lines.len() {
        own(
            &mut out,
            "  ",
            &format!(
                "… {} more diff lines: `launcher proposals show {id}`",
                diff_lines.len() - shown
            ),
            layout.width,
        );
    }
    let text = &p.proposal.justification;
    let total = text.trim_end().lines().count().max(1);
    if layout.full {
        out.push_str("  justification (the agent's words, whole):\n");
        quoted(&mut out, QUOTE, text.trim_end(), layout);
    } else {
        let room = layout.width.saturating_sub(QUOTE.len()).max(20);
        let e = Excerpt::of(text, JUSTIFICATION_LINES, room);
        if !e.is_whole() {
            own(
                &mut out,
                "  ",
                &format!(
                    "the justification is cut ({total} lines); `launcher proposals show {id}` shows it whole"
                ),
                layout.width,
            );
        }
        out.push_str("  justification (the agent's words):\n");
        for l in &e.lines {
            out.push_str(QUOTE);
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// [`Changes`] as JSON, for `--format json` (no secret: credentials
/// appear as variable and slot names only).
pub fn changes_json(changes: &Changes) -> serde_json::Value {
    use serde_json::json;
    match changes {
        Changes::Routes(r) => json!({
            "kind": "routes",
            "changed": r.merge.changed,
            "diff": r.merge.diff,
            "grant_needed": r.attaches.iter().map(|a| json!({
                "host": a.host,
                "token_ref": a.token_ref,
                "token_env": a.token_env,
                "new_slot": a.new_slot,
                "carried_by": a.carried_by,
            })).collect::<Vec<_>>(),
            "credential_ignored": r.ignored_credential,
        }),
        Changes::Dockerfile(d) => json!({
            "kind": "dockerfile",
            "against": match d.baseline {
                Baseline::Running => "running",
                Baseline::Saved => "saved",
                Baseline::Unknown => "none",
            },
            "added": d.added,
            "removed": d.removed,
            "diff": d.diff,
        }),
        Changes::Pipelock(host) => json!({"kind": "pipelock", "host": host}),
        Changes::Unavailable(why) => json!({"kind": "unavailable", "reason": why}),
    }
}

#[cfg(test)]
mod tests;
