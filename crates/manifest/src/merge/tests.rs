use super::*;
use crate::queue::{EgressAuthRequest, EgressRequest};

fn table(text: &str) -> RouteTable {
    RouteTable::parse(text, "r").unwrap()
}

fn proposal(host: &str, paths: &[&str], auth: Option<(&str, &str)>) -> ProposedRoute {
    ProposedRoute::from_request(&EgressRequest {
        host: host.into(),
        path_allowlist: paths.iter().map(|s| s.to_string()).collect(),
        auth: auth.map(|(s, t)| EgressAuthRequest {
            scheme: s.into(),
            token_ref: t.into(),
        }),
    })
    .unwrap()
}

const BASE: &str = "version: 1\nroutes:\n  - host: api.github.com\n    path_allowlist: [/repos/a]\n    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }\n";

#[test]
fn unknown_host_is_appended_with_a_new_slot() {
    let slots = vec![TokenSlot {
        token_ref: "GH".into(),
        token_env: "EGRESS_TOKEN_1".into(),
    }];
    let m = merge_route(
        &table(BASE),
        &slots,
        &proposal("NPM.example.com", &[], Some(("bearer", "NPM_TOKEN"))),
    );
    assert!(m.changed);
    assert_eq!(m.table.routes().len(), 2);
    assert_eq!(
        m.new_slot,
        Some(TokenSlot {
            token_ref: "NPM_TOKEN".into(),
            token_env: "EGRESS_TOKEN_2".into()
        })
    );
    assert!(m.diff.contains("+  - host: npm.example.com"), "{}", m.diff);
}

#[test]
fn known_token_ref_reuses_its_slot() {
    let slots = vec![TokenSlot {
        token_ref: "GH".into(),
        token_env: "EGRESS_TOKEN_1".into(),
    }];
    let m = merge_route(
        &table(BASE),
        &slots,
        &proposal("uploads.github.com", &[], Some(("Bearer", "GH"))),
    );
    assert_eq!(m.new_slot, None);
    assert_eq!(
        m.table.routes()[1].auth.as_ref().unwrap().token_env,
        "EGRESS_TOKEN_1"
    );
}

#[test]
fn known_host_unions_paths_and_keeps_auth() {
    let m = merge_route(
        &table(BASE),
        &[],
        &proposal(
            "API.GITHUB.COM",
            &["/repos/b", "/repos/a"],
            Some(("Basic", "EVIL")),
        ),
    );
    let r = &m.table.routes()[0];
    let paths: Vec<_> = r.path_allowlist.iter().map(|p| p.as_str()).collect();
    assert_eq!(paths, ["/repos/a", "/repos/b"]);
    assert_eq!(r.auth.as_ref().unwrap().scheme, Some(AuthScheme::Bearer));
    assert_eq!(m.new_slot, None);
    // approving the same thing twice changes nothing and never duplicates
    let again = merge_route(
        &m.table,
        &[],
        &proposal("api.github.com", &["/repos/b"], None),
    );
    assert!(!again.changed);
    assert!(again.diff.is_empty());
    assert_eq!(again.table, m.table);
}

#[test]
fn bad_proposals_are_precise() {
    let req = |host: &str, paths: Vec<&str>, scheme: &str, tr: &str| EgressRequest {
        host: host.into(),
        path_allowlist: paths.into_iter().map(String::from).collect(),
        auth: Some(EgressAuthRequest {
            scheme: scheme.into(),
            token_ref: tr.into(),
        }),
    };
    let e = |r| ProposedRoute::from_request(&r).unwrap_err().to_string();
    assert!(e(req("1.2.3.4", vec![], "Bearer", "T")).starts_with("host: "));
    assert!(e(req("a.com", vec!["rel"], "Bearer", "T")).starts_with("path_allowlist[0]: "));
    assert!(e(req("a.com", vec![], "Digest", "T")).contains("expected Bearer, token or Basic"));
    assert!(e(req("a.com", vec![], "Bearer", "A-B")).starts_with("auth.token_ref"));
}
