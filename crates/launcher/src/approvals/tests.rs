use std::path::Path;

use manifest::queue::{EgressAuthRequest, EgressRequest, Outcome, ProposalRequest};

use super::*;
use crate::approvals::apply::NoPipelock;
use crate::approvals::apply::tests::{BASE, FakeEgress};
use crate::approvals::queue::tests::{proposal, put_proposal};

const BOTTLE: &str = "dev-k3x9a";
const ID: &str = "20261123-140509-aaaaaaaa";

fn setup(root: &Path, p: &Proposal) -> Located {
    let identity = Identity::parse(BOTTLE).unwrap();
    let st = BottleState::new(root, &identity);
    std::fs::create_dir_all(st.queue_dir()).unwrap();
    put_proposal(&st.queue_dir(), p);
    locate(root, p.id.as_str()).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn approve(
    loc: &Located,
    eg: &FakeEgress,
    without_auth: bool,
) -> Result<EgressApproved, ApprovalError> {
    approve_granting(loc, eg, without_auth, None)
}

fn approve_granting(
    loc: &Located,
    eg: &FakeEgress,
    without_auth: bool,
    grant: Option<&Grant>,
) -> Result<EgressApproved, ApprovalError> {
    rt().block_on(approve_egress(
        loc,
        eg,
        None::<&NoPipelock>,
        "ok",
        without_auth,
        grant,
        false,
    ))
}

fn grant(name: &str, value: &str) -> Grant {
    Grant::from_env(name, |k| (k == name).then(|| value.to_owned())).unwrap()
}

#[test]
fn approving_applies_then_writes_the_decision_with_the_diff() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &proposal(ID, BOTTLE, "docs.example.com"));
    let eg = FakeEgress::with(BASE);
    let a = approve(&loc, &eg, false).unwrap();
    assert!(a.changed);
    assert!(eg.file.borrow().contains("docs.example.com"));
    assert_eq!(
        a.version,
        RouteTable::parse(&eg.live.borrow(), "t")
            .unwrap()
            .version_hash()
    );
    let d = queue::read_decision(&loc.queue(), &loc.proposal.id)
        .unwrap()
        .unwrap();
    assert_eq!(d.outcome, Outcome::Approved);
    assert!(
        d.diff
            .as_deref()
            .unwrap()
            .contains("+  - host: docs.example.com"),
        "{:?}",
        d.diff
    );
    // A second decision is refused and nothing is applied again.
    let err = approve(&loc, &eg, false).unwrap_err();
    assert!(err.to_string().contains("already decided"), "{err}");
    assert_eq!(eg.writes.borrow().len(), 1);
}

use manifest::routes::RouteTable;

/// `--allow-private` is the operator's: the approved route, and only it,
/// may reach non-global addresses once live.
#[test]
fn the_operator_may_open_the_approved_host_to_private_addresses() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &proposal(ID, BOTTLE, "inside.example.com"));
    let eg = FakeEgress::with(BASE);
    let a = rt()
        .block_on(approve_egress(
            &loc,
            &eg,
            None::<&NoPipelock>,
            "ok",
            false,
            None,
            true,
        ))
        .unwrap();
    assert!(a.changed);
    let live = RouteTable::parse(&eg.live.borrow(), "t").unwrap();
    for r in live.routes() {
        assert_eq!(
            r.allow_private,
            r.host.to_string() == "inside.example.com",
            "{}",
            r.host
        );
    }
}

#[test]
fn approving_a_known_host_merges_paths_without_duplicating() {
    let root = tempfile::tempdir().unwrap();
    let mut p = proposal(ID, BOTTLE, "api.example.com");
    p.request = ProposalRequest::Egress(EgressRequest {
        host: "api.example.com".into(),
        path_allowlist: vec!["/v2/".into()],
        auth: None,
    });
    let loc = setup(root.path(), &p);
    let eg = FakeEgress::with(
        "version: 1\nroutes:\n  - host: api.example.com\n    path_allowlist:\n      - /v1/\n",
    );
    approve(&loc, &eg, false).unwrap();
    let t = RouteTable::parse(&eg.file.borrow(), "t").unwrap();
    assert_eq!(t.routes().len(), 1);
    let paths: Vec<&str> = t.routes()[0]
        .path_allowlist
        .iter()
        .map(|p| p.as_str())
        .collect();
    assert_eq!(paths, ["/v1/", "/v2/"]);
}

#[test]
fn an_already_covered_request_is_approved_without_touching_the_proxy() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &proposal(ID, BOTTLE, "api.github.com"));
    let eg = FakeEgress::with(BASE);
    let a = approve(&loc, &eg, false).unwrap();
    assert!(!a.changed);
    assert!(eg.writes.borrow().is_empty());
    assert_eq!(a.decision.diff, None);
}

fn with_auth(host: &str) -> Proposal {
    let mut p = proposal(ID, BOTTLE, host);
    p.request = ProposalRequest::Egress(EgressRequest {
        host: host.into(),
        path_allowlist: Vec::new(),
        auth: Some(EgressAuthRequest {
            scheme: "Bearer".into(),
            token_ref: "EXAMPLE_TOKEN".into(),
        }),
    });
    p
}

#[test]
fn a_new_credential_is_refused_with_both_ways_out_and_nothing_changes() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &with_auth("new.example.com"));
    let eg = FakeEgress::with(BASE);
    let err = approve(&loc, &eg, false).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("--without-auth"), "{msg}");
    assert!(msg.contains("--grant EXAMPLE_TOKEN"), "{msg}");
    assert!(msg.contains("$EXAMPLE_TOKEN"), "{msg}");
    assert!(eg.writes.borrow().is_empty());
    assert!(
        queue::read_decision(&loc.queue(), &loc.proposal.id)
            .unwrap()
            .is_none()
    );
    // Without the credential it goes through, with no auth in the table.
    approve(&loc, &eg, true).unwrap();
    let t = RouteTable::parse(&eg.file.borrow(), "t").unwrap();
    assert!(t.routes().iter().all(|r| r.auth.is_none()));
}

#[test]
fn auth_on_a_known_host_is_ignored_not_refused() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &with_auth("api.github.com"));
    let eg = FakeEgress::with(BASE);
    let a = approve(&loc, &eg, false).unwrap();
    assert!(!a.changed);
}

#[test]
fn a_failed_apply_writes_no_decision() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &proposal(ID, BOTTLE, "docs.example.com"));
    let eg = FakeEgress {
        fail_write: true,
        ..FakeEgress::with(BASE)
    };
    let err = approve(&loc, &eg, false).unwrap_err();
    assert!(err.to_string().contains("live table is unchanged"), "{err}");
    assert!(
        queue::read_decision(&loc.queue(), &loc.proposal.id)
            .unwrap()
            .is_none()
    );
}

#[test]
fn an_invalid_proposal_is_not_applied() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &proposal(ID, BOTTLE, "bad host!"));
    let eg = FakeEgress::with(BASE);
    let err = approve(&loc, &eg, false).unwrap_err();
    assert!(
        err.to_string().contains("is invalid and cannot be applied"),
        "{err}"
    );
    assert!(eg.writes.borrow().is_empty());
}

#[test]
fn rejecting_needs_a_note_and_is_final() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &proposal(ID, BOTTLE, "docs.example.com"));
    assert!(matches!(reject(&loc, "  "), Err(ApprovalError::EmptyNote)));
    let d = reject(&loc, "not for this task").unwrap();
    assert_eq!(d.outcome, Outcome::Rejected);
    assert!(
        reject(&loc, "again")
            .unwrap_err()
            .to_string()
            .contains("already decided")
    );
}

#[test]
fn unknown_bad_and_misfiled_ids_are_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    setup(root.path(), &proposal(ID, BOTTLE, "docs.example.com"));
    let e = locate(root.path(), "20261123-000000-zzzzzzzz").unwrap_err();
    assert!(
        e.to_string()
            .contains("no proposal 20261123-000000-zzzzzzzz"),
        "{e}"
    );
    let e = locate(root.path(), "../etc/passwd").unwrap_err();
    assert!(e.to_string().contains("invalid proposal id"), "{e}");
    // A proposal that claims another bottle.
    let st = BottleState::new(root.path(), &Identity::parse("ops-aaaaa").unwrap());
    put_proposal(
        &st.queue_dir(),
        &proposal("20261123-140509-bbbbbbbb", BOTTLE, "x.example"),
    );
    let e = locate(root.path(), "20261123-140509-bbbbbbbb").unwrap_err();
    assert!(e.to_string().contains("claims to come from bottle"), "{e}");
}

#[test]
fn list_pending_spans_bottles_and_filters() {
    let root = tempfile::tempdir().unwrap();
    setup(root.path(), &proposal(ID, BOTTLE, "docs.example.com"));
    let other = Identity::parse("ops-aaaaa").unwrap();
    let st = BottleState::new(root.path(), &other);
    let mut p = proposal("20261123-140510-bbbbbbbb", "ops-aaaaa", "x.example");
    p.created_at = "2026-11-23T14:00:00Z".parse().unwrap();
    put_proposal(&st.queue_dir(), &p);
    let (all, problems) = list_pending(root.path(), None).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let ids: Vec<&str> = all.iter().map(|p| p.proposal.id.as_str()).collect();
    assert_eq!(ids, ["20261123-140510-bbbbbbbb", ID]);
    let (one, _) = list_pending(root.path(), Some(&other)).unwrap();
    assert_eq!(one.len(), 1);
}

#[test]
fn sanitize_neutralises_terminal_controls() {
    assert_eq!(
        sanitize("a\u{1b}[2Jb\n\tc\u{202e}"),
        "a\\u{001b}[2Jb\n\\u{0009}c\\u{202e}"
    );
}

fn version_of(text: &str) -> String {
    RouteTable::parse(text, "t").unwrap().version_hash()
}

#[test]
fn an_applied_approval_records_before_and_after_ahead_of_its_decision() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &proposal(ID, BOTTLE, "docs.example.com"));
    let eg = FakeEgress::with(BASE);
    let a = approve(&loc, &eg, false).unwrap();
    assert_eq!(a.audit_warning, None);
    let edits = queue::read_routes_edits(&loc.queue()).unwrap();
    assert_eq!(edits.len(), 1);
    let r = &edits[0];
    assert_eq!(r.bottle, BOTTLE);
    assert_eq!(r.proposal.as_ref(), Some(&loc.proposal.id));
    assert_eq!(r.before_version, version_of(BASE));
    assert_eq!(r.after_version, a.version);
    assert_ne!(r.before_version, r.after_version);
    assert_eq!(Some(&r.diff), a.decision.diff.as_ref());
    // The routes_edit line comes before the decision line.
    let text = std::fs::read_to_string(loc.queue().join(queue::AUDIT)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("\"routes_edit\""), "{text}");
    assert!(lines[1].contains("\"decision\""), "{text}");
}

#[test]
fn approvals_that_change_nothing_or_fail_record_no_routes_edit() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &proposal(ID, BOTTLE, "api.github.com"));
    approve(&loc, &FakeEgress::with(BASE), false).unwrap();
    assert!(queue::read_routes_edits(&loc.queue()).unwrap().is_empty());

    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &proposal(ID, BOTTLE, "docs.example.com"));
    let eg = FakeEgress {
        fail_reload: true,
        ..FakeEgress::with(BASE)
    };
    let err = rt()
        .block_on(async {
            let t = RouteTable::parse(
                "version: 1\nroutes:\n  - host: api.github.com\n  - host: x.test\n",
                "t",
            )
            .unwrap();
            tokio::time::timeout(
                std::time::Duration::from_secs(60),
                apply_edit(
                    &loc.identity,
                    &loc.state,
                    &eg,
                    None::<&NoPipelock>,
                    BASE,
                    &t,
                ),
            )
            .await
        })
        .expect("bounded")
        .unwrap_err();
    assert!(err.to_string().contains("did not load"), "{err}");
    assert!(queue::read_routes_edits(&loc.queue()).unwrap().is_empty());
}

#[test]
fn a_manual_edit_is_applied_and_audited_with_both_versions() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &proposal(ID, BOTTLE, "docs.example.com"));
    let eg = FakeEgress::with(BASE);
    let new_text = "version: 1\nroutes:\n  - host: api.github.com\n  - host: added.test\n";
    let t = RouteTable::parse(new_text, "t").unwrap();
    let done = rt()
        .block_on(apply_edit(
            &loc.identity,
            &loc.state,
            &eg,
            None::<&NoPipelock>,
            BASE,
            &t,
        ))
        .unwrap();
    assert_eq!(done.before_version, version_of(BASE));
    assert_eq!(done.status.version, t.version_hash());
    assert!(done.diff.contains("+  - host: added.test"), "{}", done.diff);
    assert_eq!(done.audit_warning, None);
    let edits = queue::read_routes_edits(&loc.queue()).unwrap();
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0].proposal, None);
    assert_eq!(edits[0].before_version, version_of(BASE));
    assert_eq!(edits[0].after_version, t.version_hash());
    assert_eq!(edits[0].diff, done.diff);
    // Nothing was decided by an edit.
    assert!(
        queue::read_decision(&loc.queue(), &loc.proposal.id)
            .unwrap()
            .is_none()
    );
}

#[test]
fn an_edit_of_a_table_that_changed_meanwhile_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &proposal(ID, BOTTLE, "docs.example.com"));
    // The operator opened the editor on BASE; an approval then went live.
    let moved = "version: 1\nroutes:\n  - host: api.github.com\n  - host: other.test\n";
    let eg = FakeEgress::with(moved);
    let t = RouteTable::parse(
        "version: 1\nroutes:\n  - host: api.github.com\n  - host: mine.test\n",
        "t",
    )
    .unwrap();
    let err = rt()
        .block_on(apply_edit(
            &loc.identity,
            &loc.state,
            &eg,
            None::<&NoPipelock>,
            BASE,
            &t,
        ))
        .unwrap_err();
    assert!(
        err.to_string().contains("changed while you were editing"),
        "{err}"
    );
    assert!(eg.writes.borrow().is_empty(), "nothing written");
    assert!(queue::read_routes_edits(&loc.queue()).unwrap().is_empty());
}

fn pipelock_proposal(host: &str) -> Proposal {
    let mut p = proposal(ID, BOTTLE, "x.test");
    p.request = ProposalRequest::Pipelock { host: host.into() };
    p
}

#[derive(Default)]
struct FakePipelock {
    fail: bool,
    asked: std::cell::RefCell<Vec<Vec<String>>>,
}

impl PipelockMirror for FakePipelock {
    async fn mirror(&self, hosts: &[String]) -> Result<(), String> {
        self.asked.borrow_mut().push(hosts.to_vec());
        if self.fail {
            Err("restart timed out".into())
        } else {
            Ok(())
        }
    }
}

#[test]
fn a_pipelock_approval_mirrors_the_host_then_decides() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &pipelock_proposal("*.PyPI.org"));
    let pl = FakePipelock::default();
    let d = rt().block_on(approve_pipelock(&loc, &pl, "ok")).unwrap();
    assert_eq!(*pl.asked.borrow(), [vec!["pypi.org".to_owned()]]);
    assert_eq!(d.outcome, Outcome::Approved);
    assert!(d.diff.as_deref().unwrap().contains("pypi.org"));
    let err = rt()
        .block_on(approve_pipelock(&loc, &pl, "ok"))
        .unwrap_err();
    assert!(err.to_string().contains("already decided"), "{err}");
    assert_eq!(pl.asked.borrow().len(), 1, "not applied twice");
}

#[test]
fn a_failed_or_invalid_pipelock_approval_decides_nothing() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &pipelock_proposal("pypi.org"));
    let pl = FakePipelock {
        fail: true,
        ..FakePipelock::default()
    };
    let err = rt()
        .block_on(approve_pipelock(&loc, &pl, "ok"))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("restart timed out") && msg.contains("egress-proxy was not touched"),
        "{msg}"
    );
    assert!(
        queue::read_decision(&loc.queue(), &loc.proposal.id)
            .unwrap()
            .is_none()
    );

    for bad in ["10.0.0.1", "a b", ""] {
        let root = tempfile::tempdir().unwrap();
        let loc = setup(root.path(), &pipelock_proposal(bad));
        let pl = FakePipelock::default();
        let err = rt()
            .block_on(approve_pipelock(&loc, &pl, "ok"))
            .unwrap_err();
        assert!(err.to_string().contains("invalid"), "{bad}: {err}");
        assert!(pl.asked.borrow().is_empty(), "{bad}");
    }
}

#[test]
fn an_egress_approval_mirrors_to_pipelock_first() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &proposal(ID, BOTTLE, "docs.example.com"));
    let eg = FakeEgress::with(BASE);
    let pl = FakePipelock::default();
    rt().block_on(approve_egress(
        &loc,
        &eg,
        Some(&pl),
        "ok",
        false,
        None,
        false,
    ))
    .unwrap();
    let asked = pl.asked.borrow();
    assert_eq!(asked.len(), 1);
    assert!(
        asked[0].contains(&"docs.example.com".to_owned()),
        "{asked:?}"
    );
}

#[test]
fn a_granted_credential_goes_into_a_new_slot_file_then_the_route() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &with_auth("new.example.com"));
    loc.state
        .write_token_slots(&[manifest::TokenSlot {
            token_ref: "GITHUB_TOKEN".into(),
            token_env: "EGRESS_TOKEN_1".into(),
        }])
        .unwrap();
    let eg = FakeEgress::with(
        "version: 1\nroutes:\n  - host: api.github.com\n    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }\n",
    );
    let a = approve_granting(&loc, &eg, false, Some(&grant("EXAMPLE_TOKEN", "s3cret"))).unwrap();
    assert!(a.changed);
    assert_eq!(
        eg.tokens.borrow().get("EGRESS_TOKEN_2").map(String::as_str),
        Some("s3cret")
    );
    let t = RouteTable::parse(&eg.file.borrow(), "t").unwrap();
    let r = t
        .routes()
        .iter()
        .find(|r| r.host.to_string() == "new.example.com")
        .unwrap();
    assert_eq!(r.auth.as_ref().unwrap().token_env, "EGRESS_TOKEN_2");
    // The slot is remembered (names only) and the value is nowhere in state.
    let slots = loc.state.token_slots().unwrap();
    assert_eq!(slots.len(), 2);
    assert_eq!(slots[1].token_ref, "EXAMPLE_TOKEN");
    for entry in walk(root.path()) {
        let text = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains("s3cret"),
            "{} holds the token",
            entry.display()
        );
    }

    // A later proposal for the same credential on another host needs its
    // own grant (the slot exists, but that host does not carry it) …
    let mut p = with_auth("other.example.com");
    p.id = manifest::queue::ProposalId::parse("20261123-140510-bbbbbbbb").unwrap();
    put_proposal(&loc.queue(), &p);
    let loc2 = locate(root.path(), p.id.as_str()).unwrap();
    let writes = eg.writes.borrow().len();
    let err = approve(&loc2, &eg, false).unwrap_err();
    assert!(matches!(err, ApprovalError::NewCredential { .. }), "{err}");
    assert!(
        err.to_string().contains("sends it to new.example.com only"),
        "{err}"
    );
    assert_eq!(eg.writes.borrow().len(), writes, "nothing applied");
    // … and once granted it reuses the slot: no second token file, and
    // the value need not be in the environment.
    let consent = Grant::from_env("EXAMPLE_TOKEN", |_| None).unwrap();
    let a = approve_granting(&loc2, &eg, false, Some(&consent)).unwrap();
    assert_eq!(eg.tokens.borrow().len(), 1);
    assert!(eg.file.borrow().contains("other.example.com"));
    assert_eq!(a.granted.len(), 1);
    assert!(!a.granted[0].new_slot);
    assert_eq!(
        loc.state.token_slots().unwrap().len(),
        2,
        "no new slot recorded"
    );
}

/// The slot of a credential the manifest gave the bottle (here the
/// operator's GitHub token; the Claude Code OAuth token is the same case).
fn holding_github_token(root: &Path, host: &str, token_ref: &str) -> (Located, FakeEgress) {
    let mut p = with_auth(host);
    if let ProposalRequest::Egress(r) = &mut p.request {
        r.auth.as_mut().unwrap().token_ref = token_ref.into();
    }
    let loc = setup(root, &p);
    loc.state
        .write_token_slots(&[manifest::TokenSlot {
            token_ref: "GITHUB_TOKEN".into(),
            token_env: "EGRESS_TOKEN_1".into(),
        }])
        .unwrap();
    let eg = FakeEgress::with(
        "version: 1\nroutes:\n  - host: api.github.com\n    path_allowlist: [/repos/]\n    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }\n",
    );
    (loc, eg)
}

#[test]
fn a_credential_the_bottle_holds_goes_to_a_new_host_only_by_grant() {
    let root = tempfile::tempdir().unwrap();
    let (loc, eg) = holding_github_token(root.path(), "exfil.example", "GITHUB_TOKEN");
    // A plain approve refuses, naming the credential, the host and where
    // it goes now; nothing is written.
    let err = approve(&loc, &eg, false).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("$GITHUB_TOKEN") && msg.contains("exfil.example"),
        "{msg}"
    );
    assert!(msg.contains("sends it to api.github.com only"), "{msg}");
    assert!(msg.contains("--grant GITHUB_TOKEN"), "{msg}");
    assert!(eg.writes.borrow().is_empty() && eg.tokens.borrow().is_empty());
    assert!(
        queue::read_decision(&loc.queue(), &loc.proposal.id)
            .unwrap()
            .is_none()
    );
    // A grant of another variable is refused too.
    let err = approve_granting(&loc, &eg, false, Some(&grant("AWS_SECRET", "x"))).unwrap_err();
    assert!(matches!(err, ApprovalError::GrantMismatch { .. }), "{err}");
    assert!(eg.writes.borrow().is_empty());
    // The explicit grant reuses the slot; the environment is not read.
    let consent = Grant::from_env("GITHUB_TOKEN", |_| None).unwrap();
    let a = approve_granting(&loc, &eg, false, Some(&consent)).unwrap();
    assert!(a.changed);
    assert!(
        eg.tokens.borrow().is_empty(),
        "no token file: egress holds it"
    );
    let t = RouteTable::parse(&eg.file.borrow(), "t").unwrap();
    let r = t
        .routes()
        .iter()
        .find(|r| r.host.as_str() == "exfil.example")
        .unwrap();
    assert_eq!(r.auth.as_ref().unwrap().token_env, "EGRESS_TOKEN_1");
    assert_eq!(a.granted[0].carried_by, ["api.github.com"]);
}

#[test]
fn without_auth_the_host_goes_live_with_no_credential() {
    let root = tempfile::tempdir().unwrap();
    let (loc, eg) = holding_github_token(root.path(), "exfil.example", "GITHUB_TOKEN");
    let a = approve(&loc, &eg, true).unwrap();
    assert!(a.changed && a.granted.is_empty());
    let t = RouteTable::parse(&eg.file.borrow(), "t").unwrap();
    let r = t
        .routes()
        .iter()
        .find(|r| r.host.as_str() == "exfil.example")
        .unwrap();
    assert!(r.auth.is_none());
}

#[test]
fn more_paths_on_a_host_that_carries_the_credential_need_no_grant() {
    let root = tempfile::tempdir().unwrap();
    let (loc, eg) = holding_github_token(root.path(), "api.github.com", "GITHUB_TOKEN");
    let mut p = loc.proposal.clone();
    p.id = manifest::queue::ProposalId::parse("20261123-140512-eeeeeeee").unwrap();
    p.request = ProposalRequest::Egress(EgressRequest {
        host: "api.github.com".into(),
        path_allowlist: vec!["/orgs/".into()],
        auth: Some(EgressAuthRequest {
            scheme: "Bearer".into(),
            token_ref: "GITHUB_TOKEN".into(),
        }),
    });
    put_proposal(&loc.queue(), &p);
    let loc = locate(root.path(), p.id.as_str()).unwrap();
    let a = approve(&loc, &eg, false).unwrap();
    assert!(a.changed && a.granted.is_empty());
    assert!(eg.file.borrow().contains("/orgs/"), "{}", eg.file.borrow());
}

#[test]
fn a_grant_of_a_credential_the_bottle_lacks_needs_its_value() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &with_auth("new.example.com"));
    let eg = FakeEgress::with(BASE);
    let consent = Grant::from_env("EXAMPLE_TOKEN", |_| None).unwrap();
    let err = approve_granting(&loc, &eg, false, Some(&consent)).unwrap_err();
    assert!(
        err.to_string().contains("$EXAMPLE_TOKEN is not set"),
        "{err}"
    );
    assert!(eg.writes.borrow().is_empty() && eg.tokens.borrow().is_empty());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_grant_must_name_what_the_proposal_asks_for() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &with_auth("new.example.com"));
    let eg = FakeEgress::with(BASE);
    let err = approve_granting(&loc, &eg, false, Some(&grant("AWS_SECRET", "x"))).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("--grant AWS_SECRET"), "{msg}");
    assert!(msg.contains("asks for $EXAMPLE_TOKEN"), "{msg}");
    assert!(eg.tokens.borrow().is_empty() && eg.writes.borrow().is_empty());

    // A grant on a proposal that needs none is refused too.
    let plain = setup(
        root.path(),
        &proposal("20261123-140511-cccccccc", BOTTLE, "x.example.com"),
    );
    let err = approve_granting(&plain, &eg, false, Some(&grant("EXAMPLE_TOKEN", "x"))).unwrap_err();
    assert!(err.to_string().contains("nothing to grant"), "{err}");
    assert!(eg.writes.borrow().is_empty());
}

#[test]
fn grants_read_the_environment_and_never_show_the_value() {
    // Unset and blank values are no value (refused only where one is needed).
    for v in [None, Some("  ")] {
        let g = Grant::from_env("EXAMPLE_TOKEN", |_| v.map(str::to_owned)).unwrap();
        let err = g.value().unwrap_err();
        assert!(
            err.to_string().contains("$EXAMPLE_TOKEN is not set"),
            "{err}"
        );
    }
    let err = Grant::from_env("not a name", |_| Some("v".into())).unwrap_err();
    assert!(err.to_string().contains("GITHUB_TOKEN"), "{err}");
    let g = grant("EXAMPLE_TOKEN", "hunter2");
    assert!(!format!("{g:?}").contains("hunter2"));
}

#[test]
fn a_failed_token_write_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &with_auth("new.example.com"));
    let eg = FakeEgress {
        fail_token: true,
        ..FakeEgress::with(BASE)
    };
    let err = approve_granting(&loc, &eg, false, Some(&grant("EXAMPLE_TOKEN", "v"))).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("EGRESS_TOKEN_1") && msg.contains("unchanged"),
        "{msg}"
    );
    assert!(eg.writes.borrow().is_empty());
    assert!(
        queue::read_decision(&loc.queue(), &loc.proposal.id)
            .unwrap()
            .is_none()
    );
    assert!(loc.state.token_slots().unwrap().is_empty());
}

fn pipelock_with(text: &str) -> crate::approvals::apply::tests::FakePipelock {
    crate::approvals::apply::tests::FakePipelock {
        config: std::cell::RefCell::new(text.to_owned()),
        ..Default::default()
    }
}

#[test]
fn a_pipelock_edit_goes_live_and_is_audited_with_its_diff() {
    use crate::approvals::apply::tests::PIPELOCK_CONFIG_TEXT as LIVE;
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &proposal(ID, BOTTLE, "docs.example.com"));
    let pl = pipelock_with(LIVE);
    let edited = LIVE.replace("  - \"example.com\"\n", "  - \"pypi.org\"\n");
    let new = apply::check_pipelock_config(&edited).unwrap();
    let done = rt()
        .block_on(apply_pipelock_edit(
            &loc.identity,
            &loc.state,
            &pl,
            LIVE,
            &new,
        ))
        .unwrap();
    assert_eq!(*pl.config.borrow(), edited);
    assert_eq!(done.added, ["pypi.org"]);
    assert_eq!(done.removed, ["example.com"]);
    assert!(done.diff.contains("+  - \"pypi.org\""), "{}", done.diff);
    let records = queue::read_operator_records(&loc.queue()).unwrap();
    let [manifest::queue::OperatorAuditRecord::PipelockEdit(r)] = &records[..] else {
        panic!("{records:?}")
    };
    assert_eq!(
        (r.bottle.as_str(), r.diff.as_str()),
        (BOTTLE, done.diff.as_str())
    );
}

#[test]
fn a_pipelock_edit_of_a_config_that_changed_meanwhile_or_fails_changes_nothing() {
    use crate::approvals::apply::tests::PIPELOCK_CONFIG_TEXT as LIVE;
    let root = tempfile::tempdir().unwrap();
    let loc = setup(root.path(), &proposal(ID, BOTTLE, "docs.example.com"));
    // An approval mirrored a host while the operator edited.
    let moved = apply::add_pipelock_hosts(LIVE, &["added.test".into()])
        .unwrap()
        .unwrap();
    let pl = pipelock_with(&moved);
    let new = apply::check_pipelock_config(&LIVE.replace("strict", "audit")).unwrap();
    let err = rt()
        .block_on(apply_pipelock_edit(
            &loc.identity,
            &loc.state,
            &pl,
            LIVE,
            &new,
        ))
        .unwrap_err();
    assert!(
        err.to_string().contains("changed while you were editing"),
        "{err}"
    );
    assert!(pl.loads.borrow().is_empty());
    // pipelock unhealthy with the edit: the old config is back, nothing audited.
    let pl = crate::approvals::apply::tests::FakePipelock {
        unhealthy_with: Some("audit"),
        ..pipelock_with(LIVE)
    };
    let err = rt()
        .block_on(apply_pipelock_edit(
            &loc.identity,
            &loc.state,
            &pl,
            LIVE,
            &new,
        ))
        .unwrap_err();
    assert!(err.to_string().contains("loaded again"), "{err}");
    assert_eq!(*pl.config.borrow(), LIVE);
    assert!(
        queue::read_operator_records(&loc.queue())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn an_invalid_hostile_host_is_refused_with_an_escaped_reason() {
    let root = tempfile::tempdir().unwrap();
    let loc = setup(
        root.path(),
        &proposal(ID, BOTTLE, "x\u{1b}]0;pwned\u{7}\u{202e}.example"),
    );
    let eg = FakeEgress::with(BASE);
    let msg = approve(&loc, &eg, false).unwrap_err().to_string();
    assert!(msg.contains("is invalid and cannot be applied"), "{msg}");
    assert!(
        !msg.chars().any(|c| c.is_control() || c == '\u{202e}'),
        "{msg:?}"
    );
    assert!(msg.contains("]0;pwned"), "{msg}");
    assert!(eg.writes.borrow().is_empty());
}
