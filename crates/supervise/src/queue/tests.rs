#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;

use manifest::queue::{EgressRequest, Outcome};

use super::*;

fn egress(host: &str) -> ProposalRequest {
    ProposalRequest::Egress(EgressRequest {
        host: host.into(),
        path_allowlist: vec![],
        auth: None,
    })
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn decision(id: &ProposalId, outcome: Outcome) -> Decision {
    Decision {
        version: QUEUE_FORMAT_VERSION,
        id: id.clone(),
        outcome,
        note: "ok".into(),
        decided_at: now(),
        diff: None,
    }
}

fn write_decision(q: &Queue, d: &Decision) {
    let bytes = serde_json::to_vec(d).unwrap();
    write_atomic(
        q.decision_path(&d.id).parent().unwrap(),
        &format!("{}.json", d.id),
        &bytes,
    )
    .unwrap();
}

fn audit_lines(q: &Queue) -> Vec<AuditRecord> {
    fs::read_to_string(q.audit_path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn submit_writes_proposal_and_audit_and_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let s = q
        .submit("dev-abc12", egress("api.example.com"), "docs", now())
        .unwrap();
    assert!(!s.reused);
    let id = s.proposal.id.clone();
    assert_eq!(
        files_in(&dir.path().join("pending")),
        vec![format!("{id}.json")]
    );
    let on_disk: Proposal =
        serde_json::from_slice(&fs::read(q.proposal_path(&id)).unwrap()).unwrap();
    assert_eq!(on_disk, s.proposal);
    assert_eq!(
        audit_lines(&q),
        vec![AuditRecord::Proposal(s.proposal.clone())]
    );
    assert_eq!(q.status(&id).unwrap(), Status::Pending(s.proposal));
}

#[test]
fn ids_are_valid_file_names_with_a_time_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let t: jiff::Timestamp = "2026-11-23T14:05:09Z".parse().unwrap();
    let s = q.submit("b", egress("a.com"), "j", t).unwrap();
    let id = s.proposal.id.as_str();
    assert!(id.starts_with("20261123-140509-"), "{id}");
    assert_eq!(id.len(), "20261123-140509-".len() + 8);
}

#[test]
fn identical_undecided_request_is_reused_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let a = q.submit("b", egress("a.com"), "first", now()).unwrap();
    let b = q.submit("b", egress("a.com"), "second", now()).unwrap();
    assert!(b.reused);
    assert_eq!(a.proposal.id, b.proposal.id);
    assert_eq!(audit_lines(&q).len(), 1);
    // Once decided, the same ask is a new proposal.
    write_decision(&q, &decision(&a.proposal.id, Outcome::Rejected));
    let c = q.submit("b", egress("a.com"), "third", now()).unwrap();
    assert!(!c.reused);
    assert_ne!(c.proposal.id, a.proposal.id);
}

#[test]
fn decision_is_observed_and_status_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let s = q.submit("b", egress("a.com"), "j", now()).unwrap();
    let id = s.proposal.id.clone();
    assert_eq!(q.decision(&id).unwrap(), None);
    let d = decision(&id, Outcome::Approved);
    write_decision(&q, &d);
    assert_eq!(q.decision(&id).unwrap(), Some(d.clone()));
    assert_eq!(
        q.status(&id).unwrap(),
        Status::Decided {
            proposal: Some(s.proposal),
            decision: d.clone()
        }
    );
    // The operator side may archive the proposal file; the decision stands.
    fs::remove_file(q.proposal_path(&id)).unwrap();
    assert_eq!(
        q.status(&id).unwrap(),
        Status::Decided {
            proposal: None,
            decision: d
        }
    );
}

#[test]
fn unknown_id_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let id = ProposalId::parse("nope").unwrap();
    assert_eq!(q.status(&id).unwrap(), Status::Unknown);
}

#[test]
fn corrupt_decision_files_are_errors_not_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let s = q.submit("b", egress("a.com"), "j", now()).unwrap();
    let id = s.proposal.id.clone();
    let path = q.decision_path(&id);

    fs::write(&path, b"{not json").unwrap();
    let e = q.decision(&id).unwrap_err();
    assert!(
        matches!(
            e,
            QueueError::File(bottle_queue::QueueError::Corrupt {
                what: "decision",
                ..
            })
        ),
        "{e}"
    );
    assert!(e.to_string().contains(&format!("{id}.json")), "{e}");
    // Still counts as undecided, and status reports the error.
    assert_eq!(q.undecided().unwrap().len(), 1);
    assert!(q.status(&id).is_err());

    let mut other = decision(&ProposalId::parse("other").unwrap(), Outcome::Approved);
    fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
    let e = q.decision(&id).unwrap_err();
    assert!(
        matches!(
            e,
            QueueError::File(bottle_queue::QueueError::IdMismatch { .. })
        ),
        "{e}"
    );

    other.id = id.clone();
    other.version = 99;
    fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
    let e = q.decision(&id).unwrap_err();
    assert!(e.to_string().contains("version 99"), "{e}");

    fs::write(
        &path,
        vec![b' '; (bottle_queue::MAX_FILE_BYTES + 10) as usize],
    )
    .unwrap();
    assert!(matches!(
        q.decision(&id).unwrap_err(),
        QueueError::File(bottle_queue::QueueError::TooLarge { .. })
    ));

    fs::write(
        &path,
        br#"{"version":1,"id":"x","outcome":"maybe","decided_at":"2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let e = q.decision(&id).unwrap_err();
    assert!(e.to_string().contains("maybe"), "{e}");
}

#[test]
fn corrupt_and_foreign_pending_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let s = q.submit("b", egress("a.com"), "j", now()).unwrap();
    let pending = dir.path().join("pending");
    fs::write(pending.join("broken.json"), b"][").unwrap();
    fs::write(pending.join("UPPER.json"), b"{}").unwrap();
    fs::write(pending.join(".x.json.abc.tmp"), b"partial").unwrap();
    fs::write(pending.join("notes.txt"), b"hi").unwrap();
    let undecided = q.undecided().unwrap();
    assert_eq!(undecided, vec![s.proposal]);
    // And submitting still works.
    q.submit("b", egress("b.com"), "j", now()).unwrap();
}

#[test]
fn concurrent_submits_get_distinct_ids_and_one_audit_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(Queue::open(dir.path()).unwrap());
    let n = 16;
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let q = q.clone();
            std::thread::spawn(move || {
                q.submit("b", egress(&format!("h{i}.example.com")), "j", now())
                    .unwrap()
            })
        })
        .collect();
    let mut ids: Vec<ProposalId> = handles
        .into_iter()
        .map(|h| h.join().unwrap().proposal.id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
    assert_eq!(files_in(&dir.path().join("pending")).len(), n);
    let audit = audit_lines(&q);
    assert_eq!(audit.len(), n);
    let mut audited: Vec<ProposalId> = audit
        .into_iter()
        .map(|r| match r {
            AuditRecord::Proposal(p) => p.id,
            AuditRecord::Decision(d) => d.id,
        })
        .collect();
    audited.sort();
    assert_eq!(audited, ids);
}

#[test]
fn concurrent_identical_submits_queue_once() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(Queue::open(dir.path()).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                q.submit("b", egress("same.example.com"), "j", now())
                    .unwrap()
            })
        })
        .collect();
    let mut ids: Vec<ProposalId> = handles
        .into_iter()
        .map(|h| h.join().unwrap().proposal.id)
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(audit_lines(&q).len(), 1);
}

#[test]
fn too_many_undecided_is_refused_with_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    for i in 0..MAX_UNDECIDED {
        q.submit("b", egress(&format!("h{i}.com")), "j", now())
            .unwrap();
    }
    let e = q
        .submit("b", egress("one-more.com"), "j", now())
        .unwrap_err();
    assert!(matches!(e, QueueError::TooManyPending { .. }));
    assert!(e.to_string().contains(&MAX_UNDECIDED.to_string()), "{e}");
}

#[test]
fn write_atomic_replaces_whole_files_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    write_atomic(dir.path(), "a.json", b"one").unwrap();
    write_atomic(dir.path(), "a.json", b"two").unwrap();
    assert_eq!(fs::read(dir.path().join("a.json")).unwrap(), b"two");
    assert_eq!(files_in(dir.path()), vec!["a.json".to_string()]);
    // A missing directory is an error naming the target, and leaves nothing.
    let e = write_atomic(&dir.path().join("missing"), "b.json", b"x").unwrap_err();
    assert!(e.to_string().contains("b.json"), "{e}");
}

#[test]
fn audit_append_repairs_a_torn_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    fs::write(q.audit_path(), b"{\"event\":\"propo").unwrap();
    let s = q.submit("b", egress("a.com"), "j", now()).unwrap();
    let text = fs::read_to_string(q.audit_path()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    let rec: AuditRecord = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(rec, AuditRecord::Proposal(s.proposal));
}

#[test]
fn reconcile_appends_missing_proposal_records_once() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let s = q.submit("b", egress("a.com"), "j", now()).unwrap();
    let t = q.submit("b", egress("b.com"), "j", now()).unwrap();
    // Simulate a crash after the rename of `t` but before its audit line.
    let keep = serde_json::to_string(&AuditRecord::Proposal(s.proposal.clone())).unwrap();
    fs::write(q.audit_path(), format!("{keep}\ngarbage line\n")).unwrap();
    assert_eq!(q.reconcile_audit().unwrap(), 1);
    assert_eq!(q.reconcile_audit().unwrap(), 0);
    let text = fs::read_to_string(q.audit_path()).unwrap();
    let last: AuditRecord = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last, AuditRecord::Proposal(t.proposal));
}

#[test]
fn reopening_keeps_pending_proposals() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let q = Queue::open(dir.path()).unwrap();
        q.submit("b", egress("a.com"), "j", now())
            .unwrap()
            .proposal
            .id
    };
    let q = Queue::open(dir.path()).unwrap();
    assert!(matches!(q.status(&id).unwrap(), Status::Pending(_)));
    assert_eq!(q.reconcile_audit().unwrap(), 0);
}

#[test]
fn open_removes_stale_temp_files_from_pending_only() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let s = q.submit("b", egress("a.com"), "j", now()).unwrap();
    fs::write(dir.path().join("pending/.x.json.abc.tmp"), b"partial").unwrap();
    fs::write(dir.path().join("decisions/.y.json.abc.tmp"), b"operator's").unwrap();
    let q = Queue::open(dir.path()).unwrap();
    assert_eq!(
        files_in(&dir.path().join("pending")),
        vec![format!("{}.json", s.proposal.id)]
    );
    assert_eq!(
        files_in(&dir.path().join("decisions")),
        vec![".y.json.abc.tmp".to_string()]
    );
    assert!(matches!(
        q.status(&s.proposal.id).unwrap(),
        Status::Pending(_)
    ));
}

#[test]
fn layout_is_shared_with_the_operator_uid() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("pending")), 0o777);
    assert_eq!(mode(&dir.path().join("decisions")), 0o777);
    assert_eq!(mode(q.audit_path()), 0o666);
    let s = q.submit("b", egress("a.com"), "j", now()).unwrap();
    assert_eq!(mode(&q.proposal_path(&s.proposal.id)), 0o644);
}
