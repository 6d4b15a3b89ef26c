//! `supervise queue …`: the operator's side of one queue as a command, for
//! when the operator can only `exec` into the container that holds it
//! (the bottle on Kubernetes: supervise's image is FROM scratch, with no
//! shell and no `cat`). The launcher runs it through the API server's
//! `pods/exec` and applies the same rules as on a local queue directory,
//! because they are the same code ([`crate::decide`]).
//!
//! Commands (`--queue DIR` anywhere; default `$SUPERVISE_QUEUE`, else
//! [`CONTAINER_QUEUE`]):
//! - `list [--all]`: one JSON object `{"entries":[{"proposal":…,"decision":…}],"problems":["path: reason"]}`,
//!   the pending proposals (all with `--all`); an invalid file is a
//!   problem line, not a failure.
//! - `show ID`: `{"proposal":…,"decision":…|null}`.
//! - `decide ID`: one Decision JSON on stdin (format version, `id` = ID),
//!   written once; prints it back.
//! - `audit`: the audit log's records, one JSON line each (unparseable
//!   lines skipped); `audit --append`: one operator record
//!   (`routes_edit`, `pipelock_edit`) on stdin, appended.
//!
//! Exit codes: [`EXIT_OK`], [`EXIT_FAILED`] (the queue's files or
//! directory), [`EXIT_USAGE`] (arguments or stdin), [`EXIT_NO_PROPOSAL`],
//! [`EXIT_DECIDED`]. Errors go to stderr as one line; stdout carries only
//! JSON.
//!
//! Is not: the server, and nothing async; every input is untrusted (the
//! ids are validated before they name a file; stdin is at most
//! [`MAX_FILE_BYTES`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use manifest::queue::{Decision, OperatorAuditRecord, ProposalId, QUEUE_FORMAT_VERSION};

use crate::decide::{self, DecideError, Entry};
use crate::{MAX_FILE_BYTES, QueueDir};

/// The queue directory inside supervise's container (the launcher's plan
/// mounts the queue there; a test keeps the two equal).
pub const CONTAINER_QUEUE: &str = "/run/supervise/queue";
/// Done.
pub const EXIT_OK: u8 = 0;
/// The queue's files or directory failed (I/O, an invalid file named).
pub const EXIT_FAILED: u8 = 1;
/// Bad arguments, a bad id or bad JSON on stdin; nothing was touched.
pub const EXIT_USAGE: u8 = 2;
/// No proposal with this id.
pub const EXIT_NO_PROPOSAL: u8 = 3;
/// The proposal already has a decision (or an invalid one is in the way).
pub const EXIT_DECIDED: u8 = 4;

const USAGE: &str = "usage: supervise queue [--queue DIR] list [--all] | show ID | decide ID < decision.json | audit [--append < record.json]";

/// What a command printed and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The exit code.
    pub code: u8,
    /// JSON (empty on failure).
    pub stdout: String,
    /// The error line, if any.
    pub stderr: String,
}

impl Output {
    fn ok(stdout: String) -> Self {
        Self {
            code: EXIT_OK,
            stdout,
            stderr: String::new(),
        }
    }

    fn fail(code: u8, message: impl std::fmt::Display) -> Self {
        Self {
            code,
            stdout: String::new(),
            stderr: format!("supervise queue: {message}\n"),
        }
    }
}

/// Runs `supervise queue <args>` (the words after `queue`) on the queue
/// of `--queue`, else `default_queue`, reading stdin only for `decide` and
/// `audit --append`.
pub fn run(args: &[String], stdin: &mut dyn Read, default_queue: &Path) -> Output {
    let mut queue: Option<PathBuf> = None;
    let mut words: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--queue" => match it.next() {
                Some(d) => queue = Some(PathBuf::from(d)),
                None => return Output::fail(EXIT_USAGE, format!("--queue needs a DIR; {USAGE}")),
            },
            "-h" | "--help" => return Output::ok(format!("{USAGE}\n")),
            s => match s.strip_prefix("--queue=") {
                Some(d) => queue = Some(PathBuf::from(d)),
                None => words.push(s),
            },
        }
    }
    let queue = queue.unwrap_or_else(|| default_queue.to_owned());
    match words.as_slice() {
        ["list"] => list(&queue, false),
        ["list", "--all"] | ["--all", "list"] => list(&queue, true),
        ["show", id] => with_id(id, |id| show(&queue, id)),
        ["decide", id] => with_id(id, |id| decide_from(&queue, id, stdin)),
        ["audit"] => audit(&queue),
        ["audit", "--append"] | ["--append", "audit"] => append(&queue, stdin),
        [] => Output::fail(EXIT_USAGE, format!("no command; {USAGE}")),
        other => Output::fail(
            EXIT_USAGE,
            format!("unknown arguments {:?}; {USAGE}", other.join(" ")),
        ),
    }
}

fn with_id(id: &str, f: impl FnOnce(&ProposalId) -> Output) -> Output {
    match ProposalId::parse(id) {
        Ok(id) => f(&id),
        Err(e) => Output::fail(EXIT_USAGE, e),
    }
}

fn to_json(v: &impl serde::Serialize) -> Output {
    match serde_json::to_string(v) {
        Ok(s) => Output::ok(s + "\n"),
        Err(e) => Output::fail(EXIT_FAILED, format!("serialising the answer: {e}")),
    }
}

fn failed(e: DecideError) -> Output {
    let code = match &e {
        DecideError::File(_) => EXIT_FAILED,
        DecideError::NoProposal { .. } => EXIT_NO_PROPOSAL,
        DecideError::AlreadyDecided { .. } | DecideError::InvalidDecisionInTheWay { .. } => {
            EXIT_DECIDED
        }
    };
    Output::fail(code, e)
}

fn list(queue: &Path, all: bool) -> Output {
    match decide::scan(queue) {
        Ok(mut scan) => {
            if !all {
                scan.entries.retain(|e| e.decision.is_none());
            }
            to_json(&scan)
        }
        Err(e) => failed(e),
    }
}

fn show(queue: &Path, id: &ProposalId) -> Output {
    let q = QueueDir::new(queue);
    let proposal = match q.proposal(id) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return failed(DecideError::NoProposal {
                id: id.to_string(),
                queue: queue.to_owned(),
            });
        }
        Err(e) => return failed(e.into()),
    };
    match q.decision(id) {
        Ok(decision) => to_json(&Entry { proposal, decision }),
        Err(e) => failed(e.into()),
    }
}

/// Reads stdin whole, at most [`MAX_FILE_BYTES`], as JSON.
fn read_json(stdin: &mut dyn Read, what: &str) -> Result<serde_json::Value, Output> {
    let mut bytes = Vec::new();
    if let Err(e) = stdin.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
        return Err(Output::fail(
            EXIT_USAGE,
            format!("reading {what} from stdin: {e}"),
        ));
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Output::fail(
            EXIT_USAGE,
            format!("{what} on stdin is larger than 1 MiB"),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        Output::fail(
            EXIT_USAGE,
            format!("{what} on stdin is not JSON: {e}; nothing was written"),
        )
    })
}

fn check_version(v: &serde_json::Value, what: &str) -> Result<(), Output> {
    let version = v.get("version").and_then(serde_json::Value::as_u64);
    if version == Some(u64::from(QUEUE_FORMAT_VERSION)) {
        Ok(())
    } else {
        Err(Output::fail(
            EXIT_USAGE,
            format!(
                "{what} on stdin carries queue format version {}; this supervise reads version {QUEUE_FORMAT_VERSION}; nothing was written",
                version.map_or_else(|| "(missing)".to_owned(), |v| v.to_string())
            ),
        ))
    }
}

fn decide_from(queue: &Path, id: &ProposalId, stdin: &mut dyn Read) -> Output {
    let value = match read_json(stdin, "the decision") {
        Ok(v) => v,
        Err(o) => return o,
    };
    if let Err(o) = check_version(&value, "the decision") {
        return o;
    }
    let decision: Decision = match serde_json::from_value(value) {
        Ok(d) => d,
        Err(e) => {
            return Output::fail(
                EXIT_USAGE,
                format!("the decision on stdin is not a valid decision: {e}; nothing was written"),
            );
        }
    };
    if &decision.id != id {
        return Output::fail(
            EXIT_USAGE,
            format!(
                "the decision on stdin is for proposal {}, not {id}; nothing was written",
                decision.id
            ),
        );
    }
    match decide::write_decision(queue, &decision) {
        Ok(()) => to_json(&decision),
        Err(e) => failed(e),
    }
}

fn audit(queue: &Path) -> Output {
    match QueueDir::new(queue).audit_lines::<serde_json::Value>() {
        Ok(lines) => {
            let mut out = String::new();
            for r in &lines.records {
                out.push_str(&r.to_string());
                out.push('\n');
            }
            Output::ok(out)
        }
        Err(e) => failed(e.into()),
    }
}

fn append(queue: &Path, stdin: &mut dyn Read) -> Output {
    let value = match read_json(stdin, "the audit record") {
        Ok(v) => v,
        Err(o) => return o,
    };
    if let Err(o) = check_version(&value, "the audit record") {
        return o;
    }
    let record: OperatorAuditRecord = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => {
            return Output::fail(
                EXIT_USAGE,
                format!(
                    "the audit record on stdin is not a routes_edit or pipelock_edit record ({e}); decisions are recorded by `decide`; nothing was written"
                ),
            );
        }
    };
    match QueueDir::new(queue).append_audit(&record) {
        Ok(()) => Output::ok(String::new()),
        Err(e) => failed(e.into()),
    }
}
