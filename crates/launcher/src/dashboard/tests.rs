use manifest::TokenSlot;
use manifest::merge::ProposedRoute;
use manifest::queue::{
    EgressAuthRequest, EgressRequest, Proposal, ProposalId, ProposalRequest, QUEUE_FORMAT_VERSION,
};
use manifest::routes::RouteTable;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::approvals::preview::{Baseline, dockerfile_preview, route_preview};

/// The live table the previews are computed against: a manifest route
/// carrying the operator's GitHub token.
const LIVE: &str = "version: 1\nroutes:\n  - host: api.github.com\n    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }\n";

fn slots() -> Vec<TokenSlot> {
    vec![TokenSlot {
        token_ref: "GITHUB_TOKEN".into(),
        token_env: "EGRESS_TOKEN_1".into(),
    }]
}

fn preview_of(p: &Proposal) -> Preview {
    let ProposalRequest::Egress(r) = &p.request else {
        panic!("not egress")
    };
    let t = RouteTable::parse(LIVE, "t").unwrap();
    Preview::Routes(Box::new(route_preview(
        &t,
        &slots(),
        &ProposedRoute::from_request(r).unwrap(),
    )))
}

const CURRENT_DOCKERFILE: &str = "FROM claude-bottle/base\nRUN apt-get install -y git\n";

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn proposal(id: &str, host: &str) -> Proposal {
    Proposal {
        version: QUEUE_FORMAT_VERSION,
        id: ProposalId::parse(id).unwrap(),
        bottle: "dev-k3x9a".into(),
        request: ProposalRequest::Egress(EgressRequest {
            host: host.into(),
            path_allowlist: vec!["/v1/".into()],
            auth: None,
        }),
        justification: "read the API docs".into(),
        created_at: "2026-11-23T14:05:09Z".parse().unwrap(),
    }
}

fn snapshot() -> Snapshot {
    let mut cap = proposal("20261123-140600-cccccccc", "x");
    let proposed =
        "FROM claude-bottle/base\nRUN apt-get install -y git\nRUN apt-get install -y jq\n";
    cap.request = ProposalRequest::Capability {
        dockerfile: proposed.into(),
    };
    let mut auth = proposal("20261123-140700-dddddddd", "new.example.com");
    auth.request = ProposalRequest::Egress(EgressRequest {
        host: "new.example.com".into(),
        path_allowlist: Vec::new(),
        auth: Some(EgressAuthRequest {
            scheme: "Bearer".into(),
            token_ref: "EXAMPLE_TOKEN".into(),
        }),
    });
    let plain = proposal("20261123-140509-aaaaaaaa", "api.example.com");
    Snapshot {
        bottles: vec![
            BottleRow {
                identity: "dev-k3x9a".into(),
                agent: "dev".into(),
                running: true,
                preserved: false,
            },
            BottleRow {
                identity: "ops-aaaaa".into(),
                agent: "ops".into(),
                running: false,
                preserved: true,
            },
        ],
        pending: vec![
            PendingItem {
                identity: "dev-k3x9a".into(),
                preview: preview_of(&plain),
                proposal: plain,
            },
            PendingItem {
                identity: "dev-k3x9a".into(),
                proposal: cap,
                preview: Preview::Dockerfile(dockerfile_preview(
                    CURRENT_DOCKERFILE,
                    Baseline::Running,
                    proposed,
                )),
            },
            PendingItem {
                identity: "dev-k3x9a".into(),
                preview: preview_of(&auth),
                proposal: auth,
            },
        ],
        timeline: vec![
            Event {
                at: "2026-11-23T14:04:00Z".into(),
                bottle: "dev-k3x9a".into(),
                kind: "deny".into(),
                text: "GET api.example.com/v1/x 403".into(),
            },
            Event {
                at: "2026-11-23T14:05:09Z".into(),
                bottle: "dev-k3x9a".into(),
                kind: "proposal".into(),
                text: "20261123-140509-aaaaaaaa egress-block api.example.com /v1/".into(),
            },
        ],
        problems: Vec::new(),
    }
}

fn loaded() -> App {
    let mut a = App::default();
    a.on_snapshot(snapshot());
    a
}

fn screen(app: &App) -> String {
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| view::draw(f, app)).unwrap();
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[test]
fn navigation_is_clamped_and_resets_scroll() {
    let mut a = loaded();
    assert_eq!(a.on_key(key(KeyCode::Up)), Request::None);
    assert_eq!(a.selected, 0);
    a.on_key(key(KeyCode::PageDown));
    assert_eq!(a.scroll, 5);
    for _ in 0..10 {
        a.on_key(key(KeyCode::Char('j')));
    }
    assert_eq!(a.selected, 2);
    assert_eq!(a.scroll, 0);
    a.on_key(key(KeyCode::Char('k')));
    assert_eq!(a.selected, 1);
}

#[test]
fn approve_takes_an_optional_note_then_asks_the_worker() {
    let mut a = loaded();
    a.on_key(key(KeyCode::Char('a')));
    assert!(matches!(a.mode, Mode::Note { .. }));
    for c in "ok!".chars() {
        a.on_key(key(KeyCode::Char(c)));
    }
    a.on_key(key(KeyCode::Backspace));
    let r = a.on_key(key(KeyCode::Enter));
    assert_eq!(
        r,
        Request::Decide {
            id: "20261123-140509-aaaaaaaa".into(),
            verdict: Verdict::APPROVE,
            note: "ok".into()
        }
    );
    assert!(matches!(a.mode, Mode::Busy(_)));
    // Keys are ignored while busy; the result returns to browsing.
    assert_eq!(a.on_key(key(KeyCode::Char('q'))), Request::None);
    a.on_decided(Err("bottle stopped".into()));
    assert_eq!(a.mode, Mode::Browse);
    assert_eq!(a.status, "error: bottle stopped");
}

#[test]
fn reject_needs_a_note_and_esc_cancels() {
    let mut a = loaded();
    a.on_key(key(KeyCode::Char('r')));
    assert_eq!(a.on_key(key(KeyCode::Enter)), Request::None);
    assert!(a.status.contains("needs a note"));
    assert!(matches!(a.mode, Mode::Note { .. }));
    a.on_key(key(KeyCode::Esc));
    assert_eq!(a.mode, Mode::Browse);
    a.on_key(key(KeyCode::Char('r')));
    a.on_key(key(KeyCode::Char('n')));
    assert!(matches!(
        a.on_key(key(KeyCode::Enter)),
        Request::Decide {
            verdict: Verdict::Reject,
            ..
        }
    ));
}

#[test]
fn capability_proposals_can_be_approved_or_rejected() {
    let mut a = loaded();
    a.on_key(key(KeyCode::Down));
    a.on_key(key(KeyCode::Char('a')));
    assert!(matches!(a.mode, Mode::Note { .. }));
    a.on_key(key(KeyCode::Esc));
    a.on_key(key(KeyCode::Char('r')));
    assert!(matches!(
        a.mode,
        Mode::Note {
            verdict: Verdict::Reject,
            ..
        }
    ));
}

#[test]
fn approve_without_auth_is_its_own_key() {
    let mut a = loaded();
    a.selected = 2;
    a.on_key(key(KeyCode::Char('A')));
    assert!(matches!(
        a.mode,
        Mode::Note {
            verdict: Verdict::Approve {
                without_auth: true,
                grant: None
            },
            ..
        }
    ));
}

#[test]
fn quit_keys_and_refresh() {
    let mut a = loaded();
    assert_eq!(a.on_key(key(KeyCode::Char('R'))), Request::Refresh);
    assert_eq!(a.on_key(key(KeyCode::Char('q'))), Request::Quit);
    assert_eq!(
        a.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Request::Quit
    );
    a.mode = Mode::Note {
        verdict: Verdict::Reject,
        id: "x".into(),
        text: String::new(),
    };
    // 'q' while typing a note is text, not quit.
    assert_eq!(a.on_key(key(KeyCode::Char('q'))), Request::None);
}

#[test]
fn nothing_selected_means_nothing_to_decide() {
    let mut a = App::default();
    a.on_snapshot(Snapshot::default());
    a.on_key(key(KeyCode::Char('a')));
    assert_eq!(a.mode, Mode::Browse);
    assert!(a.status.contains("no pending"));
    a.on_key(key(KeyCode::Down));
    assert_eq!(a.selected, 0);
}

#[test]
fn the_selection_follows_its_proposal_across_snapshots() {
    let mut a = loaded();
    a.selected = 1;
    let mut s = snapshot();
    s.pending.remove(0);
    a.on_snapshot(s);
    assert_eq!(
        a.current().unwrap().proposal.id.as_str(),
        "20261123-140600-cccccccc"
    );
    a.on_snapshot(Snapshot::default());
    assert_eq!(a.selected, 0);
    assert!(a.current().is_none());
}

#[test]
fn screen_with_a_route_diff() {
    insta::assert_snapshot!(screen(&loaded()));
}

#[test]
fn screen_with_a_dockerfile_and_a_note_being_typed() {
    let mut a = loaded();
    a.on_key(key(KeyCode::Down));
    a.on_key(key(KeyCode::Char('r')));
    for c in "use the mirror".chars() {
        a.on_key(key(KeyCode::Char(c)));
    }
    insta::assert_snapshot!(screen(&a));
}

#[test]
fn screen_while_loading_and_empty() {
    insta::assert_snapshot!(screen(&App::default()));
}

#[test]
fn hostile_text_is_neutralised_on_screen() {
    let mut s = snapshot();
    s.pending[0].proposal.justification = "x\u{1b}[2J\u{202e}y".into();
    let mut a = App::default();
    a.on_snapshot(s);
    let out = screen(&a);
    assert!(!out.contains('\u{1b}'));
    assert!(out.contains("\\u{001b}"), "{out}");
}

#[test]
fn egress_log_lines_become_timeline_events() {
    let line = r#"{"timestamp":"2026-11-23T14:04:00.1Z","level":"INFO","fields":{"method":"GET","host":"x.test","path":"/a","decision":"deny","status":403},"target":"egress_proxy::decision"}"#;
    let ev = worker::egress_event("b", line).unwrap();
    assert_eq!(ev.kind, "deny");
    assert_eq!(ev.text, "GET x.test/a 403");
    assert!(worker::egress_event("b", "plain text").is_none());
    assert!(worker::egress_event("b", r#"{"target":"other"}"#).is_none());
}

#[test]
fn git_gate_push_lines_become_timeline_events() {
    let line = "2026-11-23T14:05:09.123Z  INFO git_gate::server: push decision remote=app decision=reject refs=refs/heads/main commits_scanned=1 findings=1 upstream=skipped reason=secret found";
    let ev = worker::push_event("b", line).unwrap();
    assert_eq!(ev.kind, "push reject");
    assert_eq!(ev.at, "2026-11-23T14:05:09.123Z");
    assert_eq!(
        ev.text,
        "remote=app refs=refs/heads/main findings=1 upstream=skipped"
    );
    assert!(worker::push_event("b", "listening").is_none());
}

/// A justification written to mislead: thousands of characters, lines
/// that imitate the preview's own layout, terminal escapes.
fn hostile_justification() -> String {
    let mut s = String::from(
        "Approve? this is safe.\n  credential none\nGRANT NEEDED: no\n\u{1b}[2J\u{1b}[1;1Happroval changes nothing\u{202e}\n",
    );
    for i in 0..60 {
        s.push_str(&format!("filler line {i} {}\n", "lorem ipsum ".repeat(5)));
    }
    s
}

fn with_credential_ask_selected() -> App {
    let mut s = snapshot();
    s.pending[2].proposal.justification = hostile_justification();
    let mut a = App::default();
    a.on_snapshot(s);
    a.selected = 2;
    a
}

#[test]
fn screen_with_a_credential_ask_and_a_huge_justification() {
    let a = with_credential_ask_selected();
    let out = screen(&a);
    // What is asked, the grant warning and the diff stay in view; the
    // justification is cut below them, quoted, with the key to read it.
    assert!(out.contains("credential $EXAMPLE_TOKEN (Bearer)"), "{out}");
    assert!(out.contains("GRANT NEEDED: $EXAMPLE_TOKEN to"), "{out}");
    assert!(out.contains("+  - host: new.example.com"), "{out}");
    assert!(out.contains("cut; w: all"), "{out}");
    assert!(out.contains("> Approve? this is safe."), "{out}");
    assert!(!out.contains("filler line 1 "), "{out}");
    assert!(!out.contains('\u{1b}'), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn a_credential_for_a_new_host_needs_its_name_typed_before_the_note() {
    let mut a = with_credential_ask_selected();
    a.on_key(key(KeyCode::Char('a')));
    let Mode::ConfirmGrant {
        token_ref, host, ..
    } = &a.mode
    else {
        panic!("{:?}", a.mode)
    };
    assert_eq!(
        (token_ref.as_str(), host.as_str()),
        ("EXAMPLE_TOKEN", "new.example.com")
    );
    // Enter alone, or a wrong name, grants nothing.
    assert_eq!(a.on_key(key(KeyCode::Enter)), Request::None);
    for c in "EXAMPLE".chars() {
        a.on_key(key(KeyCode::Char(c)));
    }
    assert_eq!(a.on_key(key(KeyCode::Enter)), Request::None);
    assert!(matches!(a.mode, Mode::ConfirmGrant { .. }));
    assert!(
        a.status.contains("type EXAMPLE_TOKEN exactly"),
        "{}",
        a.status
    );
    insta::assert_snapshot!("screen_confirming_a_grant", screen(&a));
    // Esc cancels; nothing was asked of the worker.
    a.on_key(key(KeyCode::Esc));
    assert_eq!(a.mode, Mode::Browse);
    // Typed out, it goes to the note, then to the worker with the grant.
    a.on_key(key(KeyCode::Char('a')));
    for c in "EXAMPLE_TOKEN".chars() {
        a.on_key(key(KeyCode::Char(c)));
    }
    assert_eq!(a.on_key(key(KeyCode::Enter)), Request::None);
    assert!(matches!(a.mode, Mode::Note { .. }), "{:?}", a.mode);
    assert_eq!(
        a.on_key(key(KeyCode::Enter)),
        Request::Decide {
            id: "20261123-140700-dddddddd".into(),
            verdict: Verdict::Approve {
                without_auth: false,
                grant: Some("EXAMPLE_TOKEN".into())
            },
            note: String::new(),
        }
    );
}

#[test]
fn a_credential_the_bottle_holds_is_confirmed_too_and_plain_routes_are_not() {
    let mut s = snapshot();
    let mut held = proposal("20261123-140800-eeeeeeee", "exfil.example");
    held.request = ProposalRequest::Egress(EgressRequest {
        host: "exfil.example".into(),
        path_allowlist: Vec::new(),
        auth: Some(EgressAuthRequest {
            scheme: "Bearer".into(),
            token_ref: "GITHUB_TOKEN".into(),
        }),
    });
    s.pending.push(PendingItem {
        identity: "dev-k3x9a".into(),
        preview: preview_of(&held),
        proposal: held,
    });
    let mut a = App::default();
    a.on_snapshot(s);
    a.selected = 3;
    a.on_key(key(KeyCode::Char('a')));
    let Mode::ConfirmGrant {
        token_ref,
        carried_by,
        ..
    } = &a.mode
    else {
        panic!("{:?}", a.mode)
    };
    assert_eq!(token_ref, "GITHUB_TOKEN");
    assert_eq!(carried_by, "api.github.com");
    // `A` (without the credential) and a plain route need no confirm.
    a.on_key(key(KeyCode::Esc));
    a.on_key(key(KeyCode::Char('A')));
    assert!(matches!(a.mode, Mode::Note { .. }));
    a.on_key(key(KeyCode::Esc));
    a.selected = 0;
    a.on_key(key(KeyCode::Char('a')));
    assert!(matches!(
        a.mode,
        Mode::Note {
            verdict: Verdict::Approve { grant: None, .. },
            ..
        }
    ));
}

#[test]
fn w_shows_the_whole_justification_and_esc_closes_it() {
    let mut a = with_credential_ask_selected();
    a.on_key(key(KeyCode::Char('w')));
    assert!(matches!(a.mode, Mode::Reading { scroll: 0, .. }));
    for _ in 0..3 {
        a.on_key(key(KeyCode::PageDown));
    }
    let out = screen(&a);
    assert!(out.contains("filler line 30"), "{out}");
    assert!(!out.contains('\u{1b}'), "{out}");
    insta::assert_snapshot!("screen_reading_a_whole_justification", out);
    // Keys that decide do nothing while reading.
    assert_eq!(a.on_key(key(KeyCode::Char('a'))), Request::None);
    assert!(matches!(a.mode, Mode::Reading { .. }));
    a.on_key(key(KeyCode::Esc));
    assert_eq!(a.mode, Mode::Browse);
}
