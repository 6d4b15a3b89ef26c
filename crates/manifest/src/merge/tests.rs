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

/// `allow_private` and `ports` are the operator's: no proposal sets them.
#[test]
fn proposals_never_open_private_addresses_or_other_ports() {
    let base = "version: 1\nroutes:\n  - host: internal.example.com\n    path_allowlist: [/a/]\n    ports: [8443]\n    allow_private: true\n";
    // A new host gets the defaults.
    let m = merge_route(&table(base), &[], &proposal("new.example.com", &[], None));
    let added = m
        .table
        .get(&proposal("new.example.com", &[], None).host)
        .unwrap();
    assert!(!added.allow_private);
    assert_eq!(added.ports, vec![443]);
    let added_lines = m.diff.lines().filter(|l| l.starts_with('+'));
    assert!(
        !added_lines
            .clone()
            .any(|l| l.contains("allow_private") || l.contains("ports")),
        "{}",
        m.diff
    );
    // A known host keeps what the operator set; the proposal only widens paths.
    let m = merge_route(
        &table(base),
        &[],
        &proposal("internal.example.com", &["/b/"], None),
    );
    let kept = &m.table.routes()[0];
    assert!(kept.allow_private);
    assert_eq!(kept.ports, vec![8443]);
    // The request type has no such field: an agent that sends one is refused.
    for extra in [r#""allow_private": true"#, r#""ports": [22]"#] {
        let json = format!(r#"{{"host": "x.example.com", {extra}}}"#);
        let err = serde_json::from_str::<EgressRequest>(&json).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}

#[test]
fn proposals_refuse_public_suffix_wildcards_and_path_parameters() {
    let req = |host: &str, paths: &[&str]| {
        ProposedRoute::from_request(&EgressRequest {
            host: host.into(),
            path_allowlist: paths.iter().map(|s| s.to_string()).collect(),
            auth: None,
        })
    };
    let e = req("*.github.io", &[]).unwrap_err().to_string();
    assert!(e.contains("public suffix"), "{e}");
    let e = req("intranet", &[]).unwrap_err().to_string();
    assert!(e.contains("single-label"), "{e}");
    let e = req("api.example.com", &["/a/..;/b"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("path parameter"), "{e}");
}

/// The operator's `--allow-private` opens exactly the approved host, and
/// the diff shows it against the table the merge started from.
#[test]
fn the_operator_opens_the_approved_host_to_private_addresses() {
    let before = table(BASE);
    let p = proposal("inside.example.com", &["/x"], None);
    let m = merge_route(&before, &[], &p).allow_private(&before, &p.host);
    assert!(m.changed);
    assert!(m.table.get(&p.host).unwrap().allow_private);
    assert!(!m.table.routes()[0].allow_private, "other routes untouched");
    assert!(m.diff.contains("+    allow_private: true"), "{}", m.diff);
    // A host that was already covered still gets the opt-in as a change.
    let known = proposal("api.github.com", &[], None);
    let m = merge_route(&before, &[], &known).allow_private(&before, &known.host);
    assert!(m.changed && m.table.routes()[0].allow_private);
}
