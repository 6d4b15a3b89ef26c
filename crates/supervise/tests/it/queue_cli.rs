//! `supervise queue …` through the real binary on a temp queue: what the
//! launcher runs by `exec` in the bottle's supervise container.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use manifest::queue::{
    Decision, EgressRequest, Outcome, Proposal, ProposalId, ProposalRequest, QUEUE_FORMAT_VERSION,
};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn supervise(queue: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervise"))
        .arg("queue")
        .args(args)
        .env("SUPERVISE_QUEUE", queue)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn put_proposal(queue: &Path, id: &str) {
    let p = Proposal {
        version: QUEUE_FORMAT_VERSION,
        id: ProposalId::parse(id).unwrap(),
        bottle: "dev-k3x9a".into(),
        request: ProposalRequest::Egress(EgressRequest {
            host: "docs.example".into(),
            path_allowlist: vec![],
            auth: None,
        }),
        justification: "read the docs".into(),
        created_at: "2026-11-23T14:05:09Z".parse().unwrap(),
    };
    std::fs::create_dir_all(queue.join("pending")).unwrap();
    std::fs::write(
        queue.join("pending").join(format!("{id}.json")),
        serde_json::to_vec(&p).unwrap(),
    )
    .unwrap();
}

fn decision(id: &str, outcome: Outcome, note: &str) -> String {
    serde_json::to_string(&Decision {
        version: QUEUE_FORMAT_VERSION,
        id: ProposalId::parse(id).unwrap(),
        outcome,
        note: note.into(),
        decided_at: "2026-11-23T14:06:30Z".parse().unwrap(),
        diff: None,
    })
    .unwrap()
}

#[test]
fn queue_list_shows_pending_and_names_an_invalid_file_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    put_proposal(dir.path(), "p-1");
    std::fs::write(dir.path().join("pending/p-2.json"), "{not json").unwrap();
    let r = supervise(dir.path(), &["list"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["entries"][0]["proposal"]["id"], "p-1");
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    let problems = v["problems"].to_string();
    assert!(
        problems.contains("p-2.json") && problems.contains("not JSON"),
        "{problems}"
    );
}

#[test]
fn queue_decide_writes_once_and_a_second_decision_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    put_proposal(dir.path(), "p-1");
    let r = supervise(
        dir.path(),
        &["decide", "p-1"],
        &decision("p-1", Outcome::Rejected, "not this host"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let written = std::fs::read_to_string(dir.path().join("decisions/p-1.json")).unwrap();
    assert!(written.contains("not this host"));
    let r = supervise(
        dir.path(),
        &["decide", "p-1"],
        &decision("p-1", Outcome::Approved, "changed my mind"),
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("already decided"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("decisions/p-1.json")).unwrap(),
        written,
        "the first decision stands"
    );
    // show and list agree.
    let r = supervise(dir.path(), &["show", "p-1"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["decision"]["outcome"], "rejected");
    let r = supervise(dir.path(), &["list"], "");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["entries"].as_array().unwrap().is_empty(), "{v}");
    // The decision's audit line.
    let r = supervise(dir.path(), &["audit"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("\"event\":\"decision\""), "{}", r.stdout);
}

#[test]
fn queue_refuses_a_bad_or_traversing_id_and_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    put_proposal(dir.path(), "p-1");
    for bad in ["../pending/p-1", "P-1", "", "a/b"] {
        let r = supervise(
            dir.path(),
            &["decide", bad],
            &decision("p-1", Outcome::Rejected, "x"),
        );
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        assert!(r.stderr.contains("invalid proposal id"), "{}", r.stderr);
        assert!(r.stdout.is_empty());
    }
    let r = supervise(dir.path(), &["show", "p-9"], "");
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("no proposal p-9"), "{}", r.stderr);
    let r = supervise(
        dir.path(),
        &["decide", "p-9"],
        &decision("p-9", Outcome::Rejected, "x"),
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(!dir.path().join("decisions/p-9.json").exists());
    assert!(!dir.path().join("decisions/p-1.json").exists());
}

#[test]
fn queue_decide_refuses_bad_json_another_id_and_another_version() {
    let dir = tempfile::tempdir().unwrap();
    put_proposal(dir.path(), "p-1");
    let other_version =
        decision("p-1", Outcome::Rejected, "x").replace("\"version\":1", "\"version\":9");
    for (stdin, says) in [
        ("{\"outcome\":", "not JSON"),
        ("{\"version\":1,\"id\":\"p-1\"}", "not a valid decision"),
        (other_version.as_str(), "version 9"),
        (
            &decision("p-2", Outcome::Rejected, "x"),
            "for proposal p-2, not p-1",
        ),
    ] {
        let r = supervise(dir.path(), &["decide", "p-1"], stdin);
        assert_eq!(r.code, 2, "{stdin}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{says}: {}", r.stderr);
    }
    assert!(!dir.path().join("decisions/p-1.json").exists());
    let r = supervise(dir.path(), &["frobnicate"], "");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("usage: supervise queue"), "{}", r.stderr);
}

#[test]
fn queue_audit_append_takes_only_operator_records() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    let edit = serde_json::json!({
        "event": "routes_edit", "version": 1, "bottle": "dev-k3x9a",
        "at": "2026-11-23T14:06:30Z", "proposal": "p-1",
        "before_version": "a", "after_version": "b", "diff": "+x\n"
    });
    let r = supervise(dir.path(), &["audit", "--append"], &edit.to_string());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = supervise(
        dir.path(),
        &["audit", "--append"],
        &format!(
            "{{\"event\":\"decision\",{}",
            &decision("p-1", Outcome::Approved, "")[1..]
        ),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = supervise(
        dir.path(),
        &["--queue", dir.path().to_str().unwrap(), "audit"],
        "",
    );
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert!(r.stdout.contains("routes_edit"));
}

#[test]
fn a_decision_through_supervise_queue_is_what_the_waiting_call_sees() {
    // supervise's own queue, as the MCP server uses it: submit, then the
    // operator decides through the binary (the exec path), then status.
    let dir = tempfile::tempdir().unwrap();
    let q = supervise::queue::Queue::open(dir.path()).unwrap();
    let submitted = q
        .submit(
            "dev-k3x9a",
            ProposalRequest::Egress(EgressRequest {
                host: "docs.example".into(),
                path_allowlist: vec![],
                auth: None,
            }),
            "read the docs",
            jiff::Timestamp::now(),
        )
        .unwrap();
    let id = submitted.proposal.id.to_string();
    assert!(matches!(
        q.status(&submitted.proposal.id).unwrap(),
        supervise::queue::Status::Pending(_)
    ));
    let r = supervise(
        dir.path(),
        &["decide", &id],
        &decision(&id, Outcome::Approved, "live now"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    match q.status(&submitted.proposal.id).unwrap() {
        supervise::queue::Status::Decided { decision, .. } => {
            assert_eq!(decision.outcome, Outcome::Approved);
            assert_eq!(decision.note, "live now");
        }
        other => panic!("not decided: {other:?}"),
    }
}
