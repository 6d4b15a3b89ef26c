use super::*;

#[test]
fn proposal_json_shape() {
    let p = Proposal {
        version: QUEUE_FORMAT_VERSION,
        id: ProposalId::parse("p-1").unwrap(),
        bottle: "dev-abc12".into(),
        request: ProposalRequest::Egress(EgressRequest {
            host: "a.com".into(),
            path_allowlist: vec![],
            auth: None,
        }),
        justification: "docs".into(),
        created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
    };
    let j = serde_json::to_value(&p).unwrap();
    assert_eq!(j["tool"], "egress-block");
    assert_eq!(j["arguments"]["host"], "a.com");
    let back: Proposal = serde_json::from_value(j).unwrap();
    assert_eq!(back, p);
    let audit = serde_json::to_value(AuditRecord::Proposal(p)).unwrap();
    assert_eq!(audit["event"], "proposal");
}

#[test]
fn ids_are_safe_file_names() {
    for bad in ["", "../x", "A", "a/b", "-a", &"x".repeat(65)] {
        assert!(ProposalId::parse(bad).is_err(), "{bad}");
    }
    assert!(serde_json::from_str::<ProposalId>("\"../etc\"").is_err());
}

#[test]
fn routes_edit_json_shape_and_old_readers_skip_it() {
    let r = RoutesEdit {
        version: QUEUE_FORMAT_VERSION,
        bottle: "dev-abc12".into(),
        at: "2026-01-01T00:00:00Z".parse().unwrap(),
        proposal: None,
        before_version: "aaa".into(),
        after_version: "bbb".into(),
        diff: "--- before\n+++ after\n".into(),
    };
    let line = serde_json::to_string(&OperatorAuditRecord::RoutesEdit(r.clone())).unwrap();
    let j: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(j["event"], "routes_edit");
    assert_eq!(j["before_version"], "aaa");
    assert_eq!(j["after_version"], "bbb");
    assert!(
        j.get("proposal").is_none(),
        "a manual edit names no proposal"
    );
    let back: OperatorAuditRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(back, OperatorAuditRecord::RoutesEdit(r.clone()));
    // A reader that only knows AuditRecord skips the line (it does not parse).
    assert!(serde_json::from_str::<AuditRecord>(&line).is_err());
    // And an AuditRecord line is not an OperatorAuditRecord.
    let d = AuditRecord::Decision(Decision {
        version: 1,
        id: ProposalId::parse("p-1").unwrap(),
        outcome: Outcome::Approved,
        note: String::new(),
        decided_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        diff: None,
    });
    let dl = serde_json::to_string(&d).unwrap();
    assert!(serde_json::from_str::<OperatorAuditRecord>(&dl).is_err());
    // From an approval: the proposal id is carried.
    let with = RoutesEdit {
        proposal: Some(ProposalId::parse("p-1").unwrap()),
        ..r
    };
    let j = serde_json::to_value(OperatorAuditRecord::RoutesEdit(with)).unwrap();
    assert_eq!(j["proposal"], "p-1");
}

#[test]
fn pipelock_edit_json_shape() {
    let r = PipelockEdit {
        version: QUEUE_FORMAT_VERSION,
        bottle: "dev-abc12".into(),
        at: "2026-01-01T00:00:00Z".parse().unwrap(),
        diff: "--- before\n+++ after\n".into(),
    };
    let line = serde_json::to_string(&OperatorAuditRecord::PipelockEdit(r.clone())).unwrap();
    let j: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(j["event"], "pipelock_edit");
    assert_eq!(j["bottle"], "dev-abc12");
    let back: OperatorAuditRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(back, OperatorAuditRecord::PipelockEdit(r));
    assert!(serde_json::from_str::<AuditRecord>(&line).is_err());
}
