use manifest::queue::{
    EgressAuthRequest, EgressRequest, Proposal, ProposalId, ProposalRequest, QUEUE_FORMAT_VERSION,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;

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
    cap.request = ProposalRequest::Capability {
        dockerfile: "FROM claude-bottle/base\nRUN apt-get install -y jq\n".into(),
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
                proposal: proposal("20261123-140509-aaaaaaaa", "api.example.com"),
                preview: Preview::RouteDiff(
                    "--- before\n+++ after\n@@ -2,2 +2,5 @@\n routes:\n   - host: api.github.com\n+  - host: api.example.com\n+    path_allowlist:\n+      - /v1/\n".into(),
                ),
            },
            PendingItem {
                identity: "dev-k3x9a".into(),
                proposal: cap,
                preview: Preview::Dockerfile(
                    "FROM claude-bottle/base\nRUN apt-get install -y jq\n".into(),
                ),
            },
            PendingItem {
                identity: "dev-k3x9a".into(),
                proposal: auth,
                preview: Preview::Unavailable(
                    "asks for a new credential; approve without it (A) or reject".into(),
                ),
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
            verdict: Verdict::Approve {
                without_auth: false
            },
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
            verdict: Verdict::Approve { without_auth: true },
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
