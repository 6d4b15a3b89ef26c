//! pre-receive hook mode (`git-gate pre-receive`), run by `git receive-pack`
//! inside the mirror for every push. It decides the whole push:
//!
//! 1. branch rules (allowed patterns, no deletes, no non-fast-forward on
//!    protected refs);
//! 2. secret scan of exactly what the push adds: every object reachable from
//!    the new tips and not from any existing ref (`git rev-list --objects
//!    <new>… --not --all`, which sees the push's quarantined objects), i.e.
//!    blobs of every new commit (also ones a later commit deletes again),
//!    commit and tag messages, the entry names of every new tree (a file or
//!    directory name, also where a rename made only the tree new), and the
//!    pushed ref names;
//! 3. if clean, the same ref updates pushed upstream (`--atomic`) *before*
//!    git accepts them locally. Each ref is leased at the value the mirror
//!    holds, i.e. the upstream value the gate has seen, and no refspec
//!    carries `+` (which would override the lease): if upstream moved out
//!    of band since the last refresh, its push fails as "stale" and the
//!    agent is told to fetch and rebase. Only refs whose branch rules allow
//!    force may move non-fast-forward, and only over what the gate has seen.
//!
//! Exit 0 accepts; anything else makes receive-pack discard the quarantine,
//! so a refused push lands neither upstream nor in the mirror. Messages go
//! to stderr, which the agent's git prints as `remote: …` lines. A JSON
//! [`HookReport`] goes to the file the daemon named, for its log line.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use manifest::remotes::{Remote, RemotesFile};
use secret_scan::{Finding, RuleSet};
use serde::{Deserialize, Serialize};

use crate::upstream::Upstream;

/// Variables the daemon hands the hook (through http-backend and
/// receive-pack, which pass their environment on).
pub mod env {
    /// Path of the remotes file.
    pub const REMOTES: &str = "GIT_GATE_REMOTES";
    /// Name of the remote this mirror serves.
    pub const REMOTE: &str = "GIT_GATE_HOOK_REMOTE";
    /// Optional gitleaks rule file.
    pub const RULES: &str = "GIT_GATE_RULES";
    /// Optional upstream CA bundle.
    pub const UPSTREAM_CA: &str = "GIT_GATE_UPSTREAM_CA";
    /// Where to write the JSON report.
    pub const REPORT: &str = "GIT_GATE_HOOK_REPORT";
}

/// Upper bound on the upstream push.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(600);
/// Findings listed in full before "and N more".
const MAX_LISTED: usize = 20;

/// The hook's decision, for the daemon's log line. Holds no secret.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct HookReport {
    /// `accept` or `reject`.
    pub decision: String,
    /// `<ref> <old>..<new>` per update.
    pub refs: Vec<String>,
    /// Commits in the push.
    pub commits_scanned: u64,
    /// Blobs in the push.
    pub blobs_scanned: u64,
    /// Bytes scanned.
    pub bytes_scanned: u64,
    /// Findings count.
    pub findings: usize,
    /// `ok`, `refused`, `stale` (upstream moved since the last refresh),
    /// `unreachable` or `not-attempted`.
    pub upstream: String,
    /// Short reason for a rejection.
    pub reason: String,
    /// The hook process's peak resident memory in KiB (Linux `VmHWM`; 0
    /// where unknown): evidence that big pushes stream.
    #[serde(default)]
    pub peak_rss_kib: u64,
}

/// Peak resident set size of this process, from `/proc/self/status`.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

/// One line of pre-receive input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Old value (all zeros: the ref is created).
    pub old: String,
    /// New value (all zeros: the ref is deleted).
    pub new: String,
    /// Full ref name.
    pub refname: String,
}

fn is_zero(oid: &str) -> bool {
    oid.bytes().all(|b| b == b'0')
}

/// Parses pre-receive stdin. receive-pack passes the client's ref names
/// before checking their format, so a name must at least start with
/// `refs/` (never `-`: the names become git arguments) and hold no control
/// character.
pub fn parse_updates(input: impl BufRead) -> Result<Vec<Update>, String> {
    let mut out = Vec::new();
    for line in input.lines() {
        let line = line.map_err(|e| format!("reading ref updates: {e}"))?;
        let mut it = line.split(' ');
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(o), Some(n), Some(r), None)
                if valid_oid(o)
                    && valid_oid(n)
                    && r.len() > 5
                    && r.starts_with("refs/")
                    && !r.contains(|c: char| c.is_control()) =>
            {
                out.push(Update {
                    old: o.to_owned(),
                    new: n.to_owned(),
                    refname: r.to_owned(),
                });
            }
            _ => return Err(format!("malformed ref update line {line:?}")),
        }
    }
    Ok(out)
}

fn valid_oid(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why a push was refused: what the agent reads.
struct Refusal {
    reason: &'static str,
    lines: Vec<String>,
}

/// Runs the hook: reads updates from `stdin`, writes messages to `out`,
/// returns the process exit code.
pub fn run(
    stdin: impl BufRead,
    out: &mut impl Write,
    lookup: impl Fn(&str) -> Option<String>,
) -> i32 {
    let started = Instant::now();
    let mut report = HookReport {
        upstream: "not-attempted".into(),
        ..HookReport::default()
    };
    let result = decide(stdin, &lookup, &mut report);
    let code = match result {
        Ok(()) => {
            report.decision = "accept".into();
            let _ = writeln!(
                out,
                "git-gate: push accepted: scanned {} commit(s), {} blob(s); no secrets found; upstream updated ({} ms)",
                report.commits_scanned,
                report.blobs_scanned,
                started.elapsed().as_millis()
            );
            0
        }
        Err(r) => {
            report.decision = "reject".into();
            report.reason = r.reason.into();
            for l in &r.lines {
                let _ = writeln!(out, "git-gate: {l}");
            }
            1
        }
    };
    report.peak_rss_kib = peak_rss_kib();
    if let Some(path) = lookup(env::REPORT)
        && let Ok(json) = serde_json::to_vec(&report)
    {
        let _ = std::fs::write(path, json);
    }
    code
}

fn decide(
    stdin: impl BufRead,
    lookup: &impl Fn(&str) -> Option<String>,
    report: &mut HookReport,
) -> Result<(), Refusal> {
    let internal = |msg: String| Refusal {
        reason: "gate error",
        lines: vec![
            format!("push rejected: internal gate error: {msg}"),
            "Nothing was pushed upstream. Ask the operator to check git-gate's log.".into(),
        ],
    };
    let remotes_path = lookup(env::REMOTES).ok_or_else(|| {
        internal(format!(
            "{} is not set (the hook only runs under git-gate)",
            env::REMOTES
        ))
    })?;
    let name =
        lookup(env::REMOTE).ok_or_else(|| internal(format!("{} is not set", env::REMOTE)))?;
    let text = std::fs::read_to_string(&remotes_path)
        .map_err(|e| internal(format!("reading {remotes_path}: {e}")))?;
    let remotes = RemotesFile::parse(&text, &remotes_path).map_err(|e| internal(e.to_string()))?;
    let remote = remotes
        .get(&name)
        .ok_or_else(|| internal(format!("remote {name:?} is not in {remotes_path}")))?
        .clone();
    let updates = parse_updates(stdin).map_err(internal)?;
    let rules = match lookup(env::RULES).filter(|s| !s.is_empty()) {
        Some(p) => RuleSet::load(&PathBuf::from(p)).map_err(|e| internal(e.to_string()))?,
        None => RuleSet::default_rules(),
    };
    // For the daemon's log: a ref name can be the secret.
    report.refs = updates
        .iter()
        .map(|u| {
            format!(
                "{} {}..{}",
                shown(&rules, &u.refname),
                short(&u.old),
                short(&u.new)
            )
        })
        .collect();
    if updates.is_empty() {
        return Ok(());
    }

    check_seen(&updates, &mirror_values(&updates).map_err(internal)?)?;
    check_branch_rules(&remote, &updates)?;

    let mut hits = scan_ref_names(&rules, &updates, report);
    hits.extend(scan_push(&rules, &updates, report).map_err(internal)?);
    // `report.findings` counts them all; only the first few are kept.
    if !hits.is_empty() {
        let mut lines = vec![format!(
            "push rejected: {} secret(s) found in the pushed commits:",
            report.findings
        )];
        let tips: Vec<&str> = updates
            .iter()
            .filter(|u| !is_zero(&u.new))
            .map(|u| u.new.as_str())
            .collect();
        let mut introduced: std::collections::HashMap<String, String> =
            std::collections::HashMap::new();
        for h in hits.iter().take(MAX_LISTED) {
            let commit = match h.place {
                Place::Ref(_) => String::new(),
                _ => introduced
                    .entry(h.object.clone())
                    .or_insert_with(|| introducing_commit(&h.object, &tips))
                    .clone(),
            };
            let commit = if commit.is_empty() {
                String::new()
            } else {
                format!(" (commit {commit})")
            };
            let f = &h.finding;
            let place = match &h.place {
                Place::Content => format!(
                    "{}:{}:{}",
                    shown(&rules, f.path.as_deref().unwrap_or("?")),
                    f.line,
                    f.column
                ),
                Place::Name(path) => format!("name of {}", shown(&rules, path)),
                Place::Ref(name) => format!("ref name {}", shown(&rules, name)),
            };
            lines.push(format!(
                "  {place}{commit}  rule {} ({})",
                f.rule_id, f.description
            ));
            lines.push(format!("      {}", f.excerpt));
        }
        if report.findings > MAX_LISTED {
            lines.push(format!("  … and {} more", report.findings - MAX_LISTED));
        }
        lines.push("Nothing was pushed upstream and nothing was stored on the gate.".into());
        lines.push("To fix: remove the secret from every commit of the push (git rebase -i, or git commit --amend for the last one),".into());
        lines.push("load it at run time instead (environment variable, secret store), then push again. A later commit that deletes".into());
        lines.push("the secret is not enough: history keeps it. A secret in a file or branch name counts too: rename it.".into());
        lines.push("If it was a real credential, tell the operator so it can be rotated.".into());
        return Err(Refusal {
            reason: "secrets found",
            lines,
        });
    }

    let ca = lookup(env::UPSTREAM_CA)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let upstream = Upstream::for_remote(&remote, ca, lookup).map_err(internal)?;
    push_upstream(&upstream, &updates, report)
}

fn short(oid: &str) -> &str {
    &oid[..oid.len().min(12)]
}

/// The mirror's current value of each updated ref (all zeros when absent):
/// the upstream value the gate has seen, the only one it may lease.
fn mirror_values(updates: &[Update]) -> Result<Vec<String>, String> {
    let out = Command::new("git")
        .args(["for-each-ref", "--format=%(objectname) %(refname)", "--"])
        .args(updates.iter().map(|u| u.refname.as_str()))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git for-each-ref: {e}"))?;
    if !out.status.success() {
        return Err(format!("git for-each-ref failed ({})", out.status));
    }
    // Patterns match by prefix, so keep exact names only.
    let text = String::from_utf8_lossy(&out.stdout);
    let found: std::collections::HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(oid, name)| (name, oid)))
        .collect();
    Ok(updates
        .iter()
        .map(|u| match found.get(u.refname.as_str()) {
            Some(oid) => (*oid).to_owned(),
            None => "0".repeat(u.old.len()),
        })
        .collect())
}

/// receive-pack hands the hook the old values the *client* sent; git checks
/// them only after the hook, so the hook checks them against the mirror
/// before trusting them for a lease or a fast-forward test.
fn check_seen(updates: &[Update], seen: &[String]) -> Result<(), Refusal> {
    let lines: Vec<String> = updates
        .iter()
        .zip(seen)
        .filter(|(u, s)| u.old != **s)
        .map(|(u, s)| {
            format!(
                "your push expects {} at {}, but the gate has it at {}",
                u.refname,
                if is_zero(&u.old) {
                    "nothing"
                } else {
                    short(&u.old)
                },
                if is_zero(s) { "nothing" } else { short(s) },
            )
        })
        .collect();
    if lines.is_empty() {
        return Ok(());
    }
    let mut all = vec!["push rejected: it was based on an out-of-date view of the remote:".into()];
    all.extend(lines.into_iter().map(|l| format!("  {l}")));
    all.push("Nothing was pushed upstream. Fetch, rebase onto the remote branch (git pull --rebase), and push again.".into());
    Err(Refusal {
        reason: "stale view",
        lines: all,
    })
}

fn check_branch_rules(remote: &Remote, updates: &[Update]) -> Result<(), Refusal> {
    let mut lines = Vec::new();
    let allowed = remote
        .branches
        .allow
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    for u in updates {
        if is_zero(&u.new) {
            lines.push(format!("refusing to delete {}: deleting refs is not allowed through the gate; ask the operator", u.refname));
        } else if !remote.branches.allows(&u.refname) {
            lines.push(format!("refusing to update {}: remote {:?} only accepts pushes to: {allowed}; push to a branch matching one of those", u.refname, remote.name.as_str()));
        } else if !is_zero(&u.old) && remote.branches.is_protected(&u.refname) {
            match is_ancestor(&u.old, &u.new) {
                Ok(true) => {}
                Ok(false) => lines.push(format!(
                    "refusing non-fast-forward update of protected {} ({}..{}): force-pushes are not allowed there; fetch, rebase or merge onto it, and push again",
                    u.refname,
                    short(&u.old),
                    short(&u.new)
                )),
                Err(e) => lines.push(format!("cannot check {} for fast-forward: {e}", u.refname)),
            }
        }
    }
    if lines.is_empty() {
        Ok(())
    } else {
        lines.insert(0, "push rejected by the gate's branch rules:".into());
        lines.push("Nothing was pushed upstream and nothing was stored on the gate.".into());
        Err(Refusal {
            reason: "branch rules",
            lines,
        })
    }
}

fn is_ancestor(old: &str, new: &str) -> Result<bool, String> {
    let st = Command::new("git")
        .args(["merge-base", "--is-ancestor", old, new])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run git: {e}"))?;
    match st.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(format!("git merge-base --is-ancestor failed ({st})")),
    }
}

/// The first pushed commit that adds `object` (blob), abbreviated, or ""
/// when it cannot be told (commit and tag messages: the oid is the commit).
fn introducing_commit(object: &str, tips: &[&str]) -> String {
    let mut args = vec![
        "log".to_owned(),
        "--reverse".into(),
        "--format=%h".into(),
        format!("--find-object={object}"),
    ];
    args.extend(tips.iter().map(|t| (*t).to_owned()));
    args.extend(["--not".into(), "--all".into()]);
    Command::new("git")
        .args(&args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// Where a secret was found, for the message to the agent.
enum Place {
    /// Inside an object (blob contents, a commit or tag message); the
    /// finding's `path` says which.
    Content,
    /// In the name of a tree entry; the entry's full path.
    Name(String),
    /// In a pushed ref name.
    Ref(String),
}

/// One finding with the object it was found in.
struct Hit {
    finding: Finding,
    object: String,
    place: Place,
}

/// `text` as it may be shown to the agent: every secret the rules find in
/// it masked (a path can itself be the secret) and control characters
/// replaced, so a name cannot carry terminal escapes.
fn shown(rules: &RuleSet, text: &str) -> String {
    match rules.scan(text.as_bytes(), None).into_iter().next() {
        Some(f) => f.excerpt,
        None => text
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
    }
}

/// Pushed ref names go upstream too: `refs/heads/<secret>` is a leak.
fn scan_ref_names(rules: &RuleSet, updates: &[Update], report: &mut HookReport) -> Vec<Hit> {
    let mut hits = Vec::new();
    for u in updates {
        for f in rules.scan(u.refname.as_bytes(), None) {
            report.findings += 1;
            if hits.len() < MAX_LISTED {
                hits.push(Hit {
                    finding: f,
                    object: u.new.clone(),
                    place: Place::Ref(u.refname.clone()),
                });
            }
        }
    }
    hits
}

/// Scans the entry names of one new tree (at `dir`, "" for a root): each
/// distinct name once as text (a secret used as a name), and each distinct
/// full path once against path rules.
struct NameScan<'a> {
    rules: &'a RuleSet,
    names: std::collections::HashSet<Vec<u8>>,
    paths: std::collections::HashSet<String>,
}

impl NameScan<'_> {
    fn tree(
        &mut self,
        body: impl BufRead,
        oid: &str,
        dir: &str,
        hits: &mut Vec<Hit>,
        report: &mut HookReport,
    ) -> std::io::Result<()> {
        let mut push = |f: Finding, full: &str, hits: &mut Vec<Hit>| {
            report.findings += 1;
            if hits.len() < MAX_LISTED {
                hits.push(Hit {
                    finding: f,
                    object: oid.to_owned(),
                    place: Place::Name(full.to_owned()),
                });
            }
        };
        crate::tree::for_each_entry(body, oid.len() / 2, |_mode, name| {
            let text = String::from_utf8_lossy(name);
            let full = if dir.is_empty() {
                text.clone().into_owned()
            } else {
                format!("{dir}/{text}")
            };
            if self.names.insert(name.to_vec()) {
                for f in self.rules.scan(name, None) {
                    push(f, &full, hits);
                }
            }
            if self.paths.insert(full.clone()) {
                for f in self.rules.scan(b"", Some(&full)) {
                    push(f, &full, hits);
                }
            }
        })
    }
}

/// Scans every object the push adds; streams objects one at a time.
fn scan_push(
    rules: &RuleSet,
    updates: &[Update],
    report: &mut HookReport,
) -> Result<Vec<Hit>, String> {
    let tips: Vec<&str> = updates
        .iter()
        .filter(|u| !is_zero(&u.new))
        .map(|u| u.new.as_str())
        .collect();
    if tips.is_empty() {
        return Ok(Vec::new());
    }
    let mut revlist = Command::new("git")
        .args(["rev-list", "--objects", "--stdin", "--not", "--all"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git rev-list: {e}"))?;
    let mut catfile = Command::new("git")
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git cat-file: {e}"))?;
    let mut rl_in = revlist.stdin.take().ok_or("rev-list has no stdin")?;
    let tips_text: String = tips.iter().map(|t| format!("{t}\n")).collect();
    let feeder = std::thread::spawn(move || {
        let _ = rl_in.write_all(tips_text.as_bytes());
    });
    let rl_out = revlist.stdout.take().ok_or("rev-list has no stdout")?;
    let mut cf_in = catfile.stdin.take().ok_or("cat-file has no stdin")?;
    let (tx, rx) = mpsc::channel::<Option<String>>();
    // rev-list → cat-file, paths → this thread, in the same order.
    let pump = std::thread::spawn(move || -> Result<(), String> {
        for line in BufReader::new(rl_out).lines() {
            let line = line.map_err(|e| format!("reading rev-list: {e}"))?;
            let (oid, path) = match line.split_once(' ') {
                Some((o, p)) => (o.to_owned(), Some(p.to_owned())),
                None => (line.clone(), None),
            };
            if tx.send(path).is_err() {
                break;
            }
            cf_in
                .write_all(format!("{oid}\n").as_bytes())
                .map_err(|e| format!("writing to cat-file: {e}"))?;
        }
        Ok(())
    });
    let mut out = BufReader::with_capacity(
        1 << 16,
        catfile.stdout.take().ok_or("cat-file has no stdout")?,
    );
    let mut findings = Vec::new();
    let mut names = NameScan {
        rules,
        names: Default::default(),
        paths: Default::default(),
    };
    let mut pending: VecDeque<Option<String>> = VecDeque::new();
    loop {
        let mut header = String::new();
        if out
            .read_line(&mut header)
            .map_err(|e| format!("reading cat-file: {e}"))?
            == 0
        {
            break;
        }
        let path = match pending.pop_front() {
            Some(p) => p,
            None => rx
                .recv()
                .map_err(|_| "object list and contents out of step".to_owned())?,
        };
        let mut parts = header.trim_end().split(' ');
        let (oid, kind, size) = match (parts.next(), parts.next(), parts.next()) {
            (Some(o), Some(k), Some(s)) => (
                o.to_owned(),
                k.to_owned(),
                s.parse::<u64>()
                    .map_err(|_| format!("bad cat-file header {header:?}"))?,
            ),
            _ => {
                return Err(format!(
                    "object missing or unreadable: {}",
                    header.trim_end()
                ));
            }
        };
        let mut body = (&mut out).take(size);
        if kind == "tree" {
            names
                .tree(
                    &mut body,
                    &oid,
                    path.as_deref().unwrap_or(""),
                    &mut findings,
                    report,
                )
                .map_err(|e| format!("reading tree {oid}: {e}"))?;
        }
        let label = match (kind.as_str(), path) {
            ("blob", Some(p)) => Some(p),
            ("blob", None) => Some(format!("(blob {})", short(&oid))),
            ("commit", _) => Some(format!("(message of commit {})", short(&oid))),
            ("tag", _) => Some(format!("(message of tag {})", short(&oid))),
            _ => None,
        };
        match kind.as_str() {
            "commit" => report.commits_scanned += 1,
            "blob" => report.blobs_scanned += 1,
            _ => {}
        }
        if let Some(label) = label {
            report.bytes_scanned += size;
            let room = MAX_LISTED.saturating_sub(findings.len());
            let (fs, total) = rules
                .scan_reader_capped(&mut body, Some(&label), room)
                .map_err(|e| format!("reading object {oid}: {e}"))?;
            report.findings += total;
            findings.extend(fs.into_iter().map(|f| Hit {
                finding: f,
                object: oid.clone(),
                place: Place::Content,
            }));
        }
        std::io::copy(&mut body, &mut std::io::sink())
            .map_err(|e| format!("reading object {oid}: {e}"))?;
        let mut lf = [0u8; 1];
        out.read_exact(&mut lf)
            .map_err(|e| format!("reading cat-file: {e}"))?;
        // Keep the channel drained so the pump never waits on us.
        while let Ok(p) = rx.try_recv() {
            pending.push_back(p);
        }
    }
    let _ = feeder.join();
    let pumped = pump
        .join()
        .map_err(|_| "rev-list pump panicked".to_owned())?;
    let rl_status = revlist.wait().map_err(|e| e.to_string())?;
    let _ = catfile.wait();
    if !rl_status.success() {
        let mut err = String::new();
        if let Some(mut e) = revlist.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!("git rev-list failed: {}", err.trim()));
    }
    pumped?;
    Ok(findings)
}

/// Pushes the updates upstream, atomically, each ref leased at its old
/// value, which [`check_seen`] made the mirror's. No refspec has `+`: git
/// lets a `+` override a failed lease, which would overwrite upstream
/// commits the gate has never seen.
fn push_upstream(
    upstream: &Upstream,
    updates: &[Update],
    report: &mut HookReport,
) -> Result<(), Refusal> {
    let mut args: Vec<String> = vec![
        "push".into(),
        "--atomic".into(),
        "--porcelain".into(),
        "--no-verify".into(),
        "--quiet".into(),
    ];
    for u in updates {
        let expect = if is_zero(&u.old) {
            String::new()
        } else {
            u.old.clone()
        };
        args.push(format!("--force-with-lease={}:{expect}", u.refname));
    }
    args.push(upstream.url.clone());
    for u in updates {
        args.push(format!("{}:{}", u.new, u.refname));
    }
    let child = Command::new("git")
        .args(&args)
        .envs(upstream.git_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            report.upstream = "unreachable".into();
            return Err(Refusal {
                reason: "upstream push failed",
                lines: vec![format!("push rejected: cannot run git push: {e}")],
            });
        }
    };
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let so = read(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let se = read(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = so.join().unwrap_or_default();
    let stderr = se.join().unwrap_or_default();
    if status.is_some_and(|s| s.success()) {
        report.upstream = "ok".into();
        return Ok(());
    }
    let stale: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with('!') && l.contains("(stale info)"))
        .filter_map(|l| l.split('\t').nth(1)?.rsplit_once(':').map(|(_, dst)| dst))
        .collect();
    if !stale.is_empty() {
        report.upstream = "stale".into();
        return Err(Refusal {
            reason: "upstream moved",
            lines: vec![
                format!(
                    "push rejected: the upstream's {} moved since the gate last fetched it (someone else pushed).",
                    stale.join(", ")
                ),
                "Nothing was pushed upstream or stored on the gate, and nothing upstream was overwritten.".into(),
                "To fix: fetch, rebase onto the new upstream commits (git pull --rebase), and push again.".into(),
            ],
        });
    }
    let mut lines = vec![format!(
        "push rejected: the upstream ({}) refused or could not take the push:",
        upstream.url
    )];
    let mut refused = false;
    for l in upstream
        .scrub(&stderr)
        .lines()
        .chain(upstream.scrub(&stdout).lines())
    {
        let l = l.trim_end();
        if l.is_empty() || l == "Done" || l.starts_with("To ") {
            continue;
        }
        refused |= l.starts_with('!') || l.starts_with("remote:") || l.contains("rejected");
        lines.push(format!("  upstream: {l}"));
    }
    if status.is_none() {
        lines.push(format!(
            "  (no answer within {}s)",
            UPSTREAM_TIMEOUT.as_secs()
        ));
    }
    report.upstream = if refused { "refused" } else { "unreachable" }.into();
    lines.push("Nothing was stored on the gate. If the upstream moved (stale info), fetch, rebase and push again;".into());
    lines.push("if it refused on policy, fix what it names above.".into());
    Err(Refusal {
        reason: if refused {
            "upstream refused"
        } else {
            "upstream unreachable"
        },
        lines,
    })
}

#[cfg(test)]
mod tests;
