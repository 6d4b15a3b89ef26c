//! The dashboard's worker thread: every Docker call and file read, so the
//! UI thread never blocks. It answers [`super::Request`]s with
//! [`Message`]s and ends when the UI drops its sender.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};

use manifest::queue::{AuditRecord, OperatorAuditRecord, Outcome, ProposalRequest};

use super::{BottleRow, Event, PendingItem, Request, Snapshot, Verdict};
use crate::approvals::apply::{DockerEgress, DockerPipelock};
use crate::approvals::queue;
use crate::approvals::{self, preview};
use crate::engine::docker::Engine;
use crate::engine::{BottleEngine as _, Running};
use crate::lifecycle::state::{self, BottleState};
use crate::plan::identity::{Component, Identity};

/// What the worker reports.
#[derive(Debug)]
pub enum Message {
    /// A fresh snapshot.
    Snapshot(super::Snapshot),
    /// A decision finished: the status line text, or the error.
    Decided(Result<String, String>),
}

/// Egress log lines read per bottle per refresh.
const LOG_TAIL: usize = 40;
/// Timeline events kept.
const TIMELINE_MAX: usize = 200;

/// Starts the worker thread.
pub fn spawn(
    root: PathBuf,
    requests: Receiver<Request>,
    out: Sender<Message>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("dashboard-worker".into())
        .spawn(move || {
            let mut engine: Option<Engine> = None;
            while let Ok(mut req) = requests.recv() {
                // Coalesce queued refreshes; keep any decision.
                while req == Request::Refresh {
                    match requests.try_recv() {
                        Ok(next) => req = next,
                        Err(_) => break,
                    }
                }
                if engine.is_none() {
                    engine = rt.block_on(Engine::connect()).ok();
                }
                let msg =
                    match req {
                        Request::Refresh => {
                            Message::Snapshot(rt.block_on(snapshot(&root, engine.as_ref())))
                        }
                        Request::Decide { id, verdict, note } => Message::Decided(
                            rt.block_on(decide(&root, engine.as_ref(), &id, verdict, &note)),
                        ),
                        Request::None | Request::Quit => continue,
                    };
                if out.send(msg).is_err() {
                    break;
                }
            }
        })
}

async fn decide(
    root: &Path,
    engine: Option<&Engine>,
    id: &str,
    verdict: Verdict,
    note: &str,
) -> Result<String, String> {
    // A grant's value comes from the dashboard's environment, as for
    // `launcher approve --grant` (needed only for a credential the bottle
    // does not hold yet).
    let grant = match &verdict {
        Verdict::Approve {
            grant: Some(name), ..
        } => Some(
            approvals::Grant::from_env(name, |k| std::env::var(k).ok())
                .map_err(|e| e.to_string())?,
        ),
        _ => None,
    };
    let loc = approvals::locate(root, id).map_err(|e| e.to_string())?;
    let engine = engine.ok_or("the Docker engine does not answer; nothing was decided")?;
    match engine.state_of(&loc.identity, Component::Egress).await {
        Ok(Running::Yes) => {}
        _ => {
            return Err(format!(
                "bottle {} is not running; nothing was decided",
                loc.identity
            ));
        }
    }
    match verdict {
        Verdict::Reject => approvals::reject(&loc, note)
            .map(|_| format!("rejected {id}"))
            .map_err(|e| e.to_string()),
        Verdict::Approve { without_auth, .. } => {
            match &loc.proposal.request {
                ProposalRequest::Egress(_) => {}
                ProposalRequest::Capability { .. } => {
                    crate::approvals::capability::approve_capability(engine, &loc, note)
                        .await
                        .map_err(|e| e.to_string())?;
                    // Tear down once supervise answered the agent (bounded).
                    crate::approvals::capability::wait_until_answered(
                        engine,
                        &loc.identity,
                        id,
                        crate::approvals::capability::ANSWER_TIMEOUT,
                    )
                    .await;
                    crate::approvals::capability::stop_for_resume(engine, &loc.identity)
                        .await
                        .map_err(|e| {
                            format!("approved {id}, but tearing the bottle down failed: {e}")
                        })?;
                    return Ok(format!(
                        "approved {id}; bottle stopped, state kept: launcher resume {}",
                        loc.identity
                    ));
                }
                ProposalRequest::Pipelock { .. } => {
                    let Some(pipelock) = DockerPipelock::of_bottle(engine, &loc.identity).await
                    else {
                        return Err(format!(
                            "{id} is a pipelock-block, but bottle {} runs no pipelock; reject it",
                            loc.identity
                        ));
                    };
                    return approvals::approve_pipelock(&loc, &pipelock, note)
                        .await
                        .map(|_| format!("approved {id}: pipelock allows it"))
                        .map_err(|e| e.to_string());
                }
            }
            let egress = DockerEgress::new(engine.clone(), loc.identity.clone());
            let pipelock = DockerPipelock::of_bottle(engine, &loc.identity).await;
            approvals::approve_egress(
                &loc,
                &egress,
                pipelock.as_ref(),
                note,
                without_auth,
                grant.as_ref(),
                false,
            )
            .await
            .map(|a| {
                let granted: String = a
                    .granted
                    .iter()
                    .map(|g| format!("; granted ${} to {}", g.name(), g.host))
                    .collect();
                if a.changed {
                    format!(
                        "approved {id}: live in {} (version {}){granted}",
                        loc.identity, a.version
                    )
                } else {
                    format!("approved {id}: already allowed, nothing changed")
                }
            })
            .map_err(|e| e.to_string())
        }
    }
}

async fn snapshot(root: &Path, engine: Option<&Engine>) -> Snapshot {
    let mut s = Snapshot::default();
    let identities = match state::list(root) {
        Ok(ids) => ids,
        Err(e) => {
            s.problems.push(e.to_string());
            Vec::new()
        }
    };
    let found = match engine {
        Some(e) => e.bottles().await.unwrap_or_else(|err| {
            s.problems.push(format!("Docker: {err}"));
            Vec::new()
        }),
        None => {
            s.problems
                .push("Docker: the engine does not answer; showing state only".into());
            Vec::new()
        }
    };
    for id in &identities {
        let st = BottleState::new(root, id);
        let f = found.iter().find(|f| f.identity == id.as_str());
        let egress = id.container_name(Component::Egress);
        s.bottles.push(BottleRow {
            identity: id.to_string(),
            agent: f.map_or_else(|| id.agent().to_owned(), |f| f.agent.clone()),
            running: f.is_some_and(|f| f.containers.get(&egress).is_some_and(|c| c == "running")),
            preserved: st.is_preserved(),
        });
        timeline_of_queue(&mut s, id, &st.queue_dir());
        if let Some(engine) = engine
            && s.bottles.last().is_some_and(|b| b.running)
        {
            timeline_of_egress(&mut s, engine, id).await;
            let gate = id.container_name(Component::GitGate);
            if f.is_some_and(|f| f.containers.contains_key(&gate))
                && let Ok(text) = engine.logs_of(id, Component::GitGate, LOG_TAIL).await
            {
                s.timeline
                    .extend(text.lines().filter_map(|l| push_event(id.as_str(), l)));
            }
        }
    }
    match approvals::list_pending(root, None) {
        Ok((pending, problems)) => {
            s.problems.extend(problems);
            for p in pending {
                let running = s
                    .bottles
                    .iter()
                    .any(|b| b.identity == p.identity.as_str() && b.running);
                let st = BottleState::new(root, &p.identity);
                let preview = preview::changes(engine, &st, &p, running).await;
                s.pending.push(PendingItem {
                    identity: p.identity.to_string(),
                    proposal: p.proposal,
                    preview,
                });
            }
        }
        Err(e) => s.problems.push(e.to_string()),
    }
    s.timeline.sort_by(|a, b| a.at.cmp(&b.at));
    let excess = s.timeline.len().saturating_sub(TIMELINE_MAX);
    s.timeline.drain(..excess);
    s
}

fn timeline_of_queue(s: &mut Snapshot, id: &Identity, queue: &Path) {
    let records = match queue::read_audit(queue) {
        Ok(r) => r,
        Err(e) => {
            s.problems.push(e.to_string());
            return;
        }
    };
    for r in records {
        let ev = match r {
            AuditRecord::Proposal(p) => Event {
                at: p.created_at.to_string(),
                bottle: id.to_string(),
                kind: "proposal".into(),
                text: format!("{} {} {}", p.id, p.request.tool(), summary(&p.request)),
            },
            AuditRecord::Decision(d) => Event {
                at: d.decided_at.to_string(),
                bottle: id.to_string(),
                kind: match d.outcome {
                    Outcome::Approved => "approved".into(),
                    Outcome::Rejected => "rejected".into(),
                },
                text: format!("{} {}", d.id, d.note),
            },
        };
        s.timeline.push(ev);
    }
    // Changes of the live routes (approvals and manual `routes edit`) and
    // of pipelock's config (`pipelock edit`).
    for rec in queue::read_operator_records(queue).unwrap_or_default() {
        let ev = match rec {
            OperatorAuditRecord::RoutesEdit(r) => {
                let added = r
                    .diff
                    .lines()
                    .filter(|l| l.starts_with("+  - host:"))
                    .map(|l| l.trim_start_matches("+  - host:").trim())
                    .collect::<Vec<_>>()
                    .join(",");
                Event {
                    at: r.at.to_string(),
                    bottle: id.to_string(),
                    kind: "routes".into(),
                    text: format!(
                        "{} {}→{}{}",
                        r.proposal
                            .as_ref()
                            .map_or_else(|| "manual edit".to_owned(), |p| format!("apply {p}")),
                        short(&r.before_version),
                        short(&r.after_version),
                        if added.is_empty() {
                            String::new()
                        } else {
                            format!(" +{added}")
                        }
                    ),
                }
            }
            OperatorAuditRecord::PipelockEdit(r) => {
                let (added, removed) = preview::diff_counts(&r.diff);
                Event {
                    at: r.at.to_string(),
                    bottle: id.to_string(),
                    kind: "pipelock".into(),
                    text: format!("manual edit of its config (+{added} -{removed} lines)"),
                }
            }
            #[allow(unreachable_patterns)] // the enum is non_exhaustive
            _ => continue,
        };
        s.timeline.push(ev);
    }
}

fn short(v: &str) -> &str {
    v.get(..8).unwrap_or(v)
}

/// A one-line summary of a request.
pub fn summary(req: &ProposalRequest) -> String {
    match req {
        ProposalRequest::Egress(r) => {
            if r.path_allowlist.is_empty() {
                r.host.clone()
            } else {
                format!("{} {}", r.host, r.path_allowlist.join(","))
            }
        }
        ProposalRequest::Capability { dockerfile } => {
            format!("Dockerfile ({} lines)", dockerfile.lines().count())
        }
        ProposalRequest::Pipelock { host } => host.clone(),
    }
}

async fn timeline_of_egress(s: &mut Snapshot, engine: &Engine, id: &Identity) {
    let Ok(text) = engine.logs_of(id, Component::Egress, LOG_TAIL).await else {
        return;
    };
    for line in text.lines() {
        if let Some(ev) = egress_event(id.as_str(), line) {
            s.timeline.push(ev);
        }
    }
}

/// An egress decision log line (JSON, target `egress_proxy::decision`) as
/// a timeline event; anything else is `None`.
pub fn egress_event(bottle: &str, line: &str) -> Option<Event> {
    let start = line.find('{')?;
    let v: serde_json::Value = serde_json::from_str(&line[start..]).ok()?;
    if v.get("target").and_then(|t| t.as_str()) != Some("egress_proxy::decision") {
        return None;
    }
    let f = v.get("fields")?;
    let get = |k: &str| {
        f.get(k)
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .unwrap_or_default()
    };
    Some(Event {
        at: v
            .get("timestamp")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_owned(),
        bottle: bottle.to_owned(),
        kind: get("decision"),
        text: format!(
            "{} {}{} {}",
            get("method"),
            get("host"),
            get("path"),
            get("status")
        ),
    })
}

/// A git-gate `push decision` log line (text format: timestamp, level,
/// target, message, `key=value` fields) as a timeline event.
pub fn push_event(bottle: &str, line: &str) -> Option<Event> {
    let line = crate::engine::docker::strip_ansi(line);
    let (head, fields) = line.split_once("push decision")?;
    let at = head
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let decision = fields
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("decision="))
        .unwrap_or("?");
    Some(Event {
        at,
        bottle: bottle.to_owned(),
        kind: format!("push {decision}"),
        text: fields
            .split_whitespace()
            .filter(|kv| {
                ["remote=", "refs=", "findings=", "upstream="]
                    .iter()
                    .any(|k| kv.starts_with(k))
            })
            .collect::<Vec<_>>()
            .join(" "),
    })
}
