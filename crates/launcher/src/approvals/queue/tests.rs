use std::path::Path;

use manifest::queue::{
    AuditRecord, Decision, EgressRequest, Outcome, Proposal, ProposalId, ProposalRequest,
    QUEUE_FORMAT_VERSION,
};

use super::*;

pub(crate) fn proposal(id: &str, bottle: &str, host: &str) -> Proposal {
    Proposal {
        version: QUEUE_FORMAT_VERSION,
        id: ProposalId::parse(id).unwrap(),
        bottle: bottle.into(),
        request: ProposalRequest::Egress(EgressRequest {
            host: host.into(),
            path_allowlist: vec!["/v1/".into()],
            auth: None,
        }),
        justification: "read the docs".into(),
        created_at: "2026-11-23T14:05:09Z".parse().unwrap(),
    }
}

pub(crate) fn put_proposal(queue: &Path, p: &Proposal) {
    std::fs::create_dir_all(queue.join(PENDING)).unwrap();
    std::fs::write(
        queue.join(PENDING).join(format!("{}.json", p.id)),
        serde_json::to_string(p).unwrap(),
    )
    .unwrap();
}

fn decision(id: &str, outcome: Outcome, note: &str) -> Decision {
    Decision {
        version: QUEUE_FORMAT_VERSION,
        id: ProposalId::parse(id).unwrap(),
        outcome,
        note: note.into(),
        decided_at: "2026-11-23T14:06:30Z".parse().unwrap(),
        diff: None,
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn scan_lists_proposals_with_their_decisions_and_skips_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path();
    put_proposal(
        q,
        &proposal("20261123-140509-aaaaaaaa", "dev-k3x9a", "a.example"),
    );
    put_proposal(
        q,
        &proposal("20261123-140510-bbbbbbbb", "dev-k3x9a", "b.example"),
    );
    write_decision(
        q,
        &decision("20261123-140509-aaaaaaaa", Outcome::Rejected, "no"),
    )
    .unwrap();
    // Stray, temp, corrupt, wrong id, unknown version.
    std::fs::write(q.join("pending/.x.json.1.tmp"), "{").unwrap();
    std::fs::write(q.join("pending/README"), "hi").unwrap();
    std::fs::write(q.join("pending/20261123-000000-cccccccc.json"), "{not json").unwrap();
    let mut other = proposal("20261123-000000-dddddddd", "dev-k3x9a", "d.example");
    std::fs::write(
        q.join("pending/20261123-000000-eeeeeeee.json"),
        serde_json::to_string(&other).unwrap(),
    )
    .unwrap();
    other.version = 2;
    put_proposal(q, &other);

    let s = scan(q).unwrap();
    let ids: Vec<&str> = s.entries.iter().map(|e| e.proposal.id.as_str()).collect();
    assert_eq!(
        ids,
        ["20261123-140509-aaaaaaaa", "20261123-140510-bbbbbbbb"]
    );
    assert_eq!(
        s.entries[0].decision.as_ref().unwrap().outcome,
        Outcome::Rejected
    );
    let pending: Vec<&str> = s.pending().map(|p| p.id.as_str()).collect();
    assert_eq!(pending, ["20261123-140510-bbbbbbbb"]);
    assert_eq!(s.problems.len(), 3, "{:?}", s.problems);
    let all = s.problems.join("\n");
    assert!(all.contains("not JSON"), "{all}");
    assert!(all.contains("differs from its file name"), "{all}");
    assert!(all.contains("version 2 is not understood"), "{all}");
}

#[test]
fn scan_of_a_missing_queue_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(scan(&dir.path().join("nope")).unwrap(), Scan::default());
}

#[test]
fn the_first_decision_wins_and_is_audited_once() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path();
    let id = "20261123-140509-aaaaaaaa";
    put_proposal(q, &proposal(id, "dev-k3x9a", "a.example"));
    write_decision(q, &decision(id, Outcome::Approved, "ok")).unwrap();
    let err = write_decision(q, &decision(id, Outcome::Rejected, "no")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("already decided: approved"), "{msg}");
    assert!(msg.contains("\"ok\""), "{msg}");
    let pid = ProposalId::parse(id).unwrap();
    assert_eq!(
        read_decision(q, &pid).unwrap().unwrap().outcome,
        Outcome::Approved
    );
    assert_eq!(mode(&q.join(format!("decisions/{id}.json"))), 0o644);
    assert_eq!(mode(&q.join(AUDIT)), 0o666);
    let audit = read_audit(q).unwrap();
    assert_eq!(audit.len(), 1);
    assert!(matches!(&audit[0], AuditRecord::Decision(d) if d.note == "ok"));
    // No temp file left behind.
    let names: Vec<String> = std::fs::read_dir(q.join(DECISIONS))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [format!("{id}.json")]);
}

#[test]
fn a_decision_for_an_unknown_proposal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = write_decision(
        dir.path(),
        &decision("20261123-140509-aaaaaaaa", Outcome::Rejected, "x"),
    )
    .unwrap_err();
    assert!(matches!(err, QueueError::NoProposal { .. }), "{err}");
    assert!(!dir.path().join(DECISIONS).exists());
}

#[test]
fn a_corrupt_decision_file_blocks_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path();
    let id = "20261123-140509-aaaaaaaa";
    put_proposal(q, &proposal(id, "dev-k3x9a", "a.example"));
    std::fs::create_dir_all(q.join(DECISIONS)).unwrap();
    std::fs::write(q.join(format!("decisions/{id}.json")), "garbage").unwrap();
    let err = write_decision(q, &decision(id, Outcome::Rejected, "x")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("not a valid decision"), "{msg}");
    assert!(msg.contains("Move the file aside"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(q.join(format!("decisions/{id}.json"))).unwrap(),
        "garbage"
    );
    // Still pending for a scan (an invalid decision is not a decision).
    assert_eq!(scan(q).unwrap().pending().count(), 1);
}

#[test]
fn a_corrupt_proposal_cannot_be_decided() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path();
    let id = "20261123-140509-aaaaaaaa";
    std::fs::create_dir_all(q.join(PENDING)).unwrap();
    std::fs::write(q.join(format!("pending/{id}.json")), "{\"version\":1}").unwrap();
    let err = write_decision(q, &decision(id, Outcome::Rejected, "x")).unwrap_err();
    assert!(
        matches!(&err, QueueError::File(e) if e.invalid_file().is_some()),
        "{err}"
    );
}

#[test]
fn oversized_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path();
    let id = ProposalId::parse("20261123-140509-aaaaaaaa").unwrap();
    std::fs::create_dir_all(q.join(PENDING)).unwrap();
    std::fs::write(
        q.join(format!("pending/{id}.json")),
        vec![b' '; (MAX_FILE_BYTES + 10) as usize],
    )
    .unwrap();
    let err = read_proposal(q, &id).unwrap_err();
    assert!(err.to_string().contains("at most 1 MiB"), "{err}");
}

#[test]
fn audit_appends_repair_a_torn_last_line_and_readers_skip_it() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path();
    std::fs::write(q.join(AUDIT), "{\"event\":\"decis").unwrap();
    let d = decision("20261123-140509-aaaaaaaa", Outcome::Rejected, "x");
    append_audit(q, &AuditRecord::Decision(d.clone())).unwrap();
    let text = std::fs::read_to_string(q.join(AUDIT)).unwrap();
    assert!(text.starts_with("{\"event\":\"decis\n{"), "{text}");
    assert!(text.ends_with("}\n"));
    assert_eq!(read_audit(q).unwrap(), [AuditRecord::Decision(d)]);
}

#[test]
fn backfill_adds_missing_decision_records_once() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path();
    let id = "20261123-140509-aaaaaaaa";
    std::fs::create_dir_all(q.join(DECISIONS)).unwrap();
    std::fs::write(
        q.join(format!("decisions/{id}.json")),
        serde_json::to_string(&decision(id, Outcome::Rejected, "x")).unwrap(),
    )
    .unwrap();
    assert_eq!(backfill_decision_audit(q).unwrap(), 1);
    assert_eq!(backfill_decision_audit(q).unwrap(), 0);
    assert_eq!(read_audit(q).unwrap().len(), 1);
}

#[test]
fn concurrent_deciders_produce_exactly_one_decision() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().to_owned();
    let id = "20261123-140509-aaaaaaaa";
    put_proposal(&q, &proposal(id, "dev-k3x9a", "a.example"));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let q = q.clone();
            std::thread::spawn(move || {
                write_decision(&q, &decision(id, Outcome::Rejected, &format!("n{i}"))).is_ok()
            })
        })
        .collect();
    let wins = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|w| *w)
        .count();
    assert_eq!(wins, 1);
    assert_eq!(read_audit(&q).unwrap().len(), 1);
}

#[test]
fn file_names_map_to_ids() {
    assert!(id_of_file_name("20261123-140509-aaaaaaaa.json").is_some());
    assert!(id_of_file_name(".20261123-140509-aaaaaaaa.json").is_none());
    assert!(id_of_file_name("Upper.json").is_none());
    assert!(id_of_file_name("x.txt").is_none());
    assert!(id_of_file_name("-x.json").is_none());
}

#[test]
fn routes_edit_lines_share_the_log_and_each_reader_sees_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path();
    let d = decision("20261123-140509-aaaaaaaa", Outcome::Approved, "ok");
    let r = manifest::queue::RoutesEdit {
        version: QUEUE_FORMAT_VERSION,
        bottle: "dev-k3x9a".into(),
        at: "2026-11-23T14:06:29Z".parse().unwrap(),
        proposal: Some(d.id.clone()),
        before_version: "v1".into(),
        after_version: "v2".into(),
        diff: "+  - host: a.test\n".into(),
    };
    append_routes_edit(q, &r).unwrap();
    append_audit(q, &AuditRecord::Decision(d.clone())).unwrap();
    assert_eq!(mode(&q.join(AUDIT)), 0o666);
    assert_eq!(read_audit(q).unwrap(), [AuditRecord::Decision(d)]);
    assert_eq!(read_routes_edits(q).unwrap(), [r]);
    let text = std::fs::read_to_string(q.join(AUDIT)).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(text.starts_with("{\"event\":\"routes_edit\""), "{text}");
}
