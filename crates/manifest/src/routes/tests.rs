use super::*;

const SAMPLE: &str = r#"
version: 1
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/]
    auth: { scheme: bearer, token_env: EGRESS_TOKEN_1 }
  - host: "*.github.com"
  - host: api.anthropic.com
    auth: { header: X-Api-Key, token_env: EGRESS_TOKEN_2 }
    roles: claude_code_oauth
"#;

#[test]
fn parse_render_roundtrip() {
    let t = RouteTable::parse(SAMPLE, "routes.yaml").unwrap();
    assert_eq!(t.routes().len(), 3);
    let a = t.routes()[0].auth.as_ref().unwrap();
    assert_eq!(a.scheme, Some(AuthScheme::Bearer));
    assert_eq!(a.header_value("T"), "Bearer T");
    let h = t.routes()[2].auth.as_ref().unwrap();
    assert_eq!(h.header_name(), "x-api-key");
    assert_eq!(h.header_value("T"), "T");
    let again = RouteTable::parse(&t.render(), "rendered").unwrap();
    assert_eq!(again, t);
    assert_eq!(again.version_hash(), t.version_hash());
}

#[test]
fn lookup_prefers_exact_then_longest_wildcard() {
    let t = RouteTable::parse(SAMPLE, "r").unwrap();
    let host = |s| RequestHost::parse(s).unwrap();
    assert_eq!(
        t.lookup(&host("api.github.com")).unwrap().host.as_str(),
        "api.github.com"
    );
    assert_eq!(
        t.lookup(&host("github.com")).unwrap().host.as_str(),
        "*.github.com"
    );
    assert!(t.lookup(&host("evilgithub.com")).is_none());
}

#[test]
fn paths_and_encoded_separators() {
    let t = RouteTable::parse(SAMPLE, "r").unwrap();
    let r = &t.routes()[0];
    assert!(r.allows_path("/repos/acme/x"));
    assert!(!r.allows_path("/repos/acme/x%2F..%2F..%2Fother"));
    assert!(!r.allows_path("/repos/other"));
}

#[test]
fn all_errors_are_collected() {
    let bad = r#"
version: 1
routes:
  - host: "https://x.com"
    auth: { scheme: Digest, token_env: HOME }
  - host: ok.com
    path_allowlist: [relative]
    rolez: x
"#;
    let err = RouteTable::parse(bad, "r.yaml").unwrap_err();
    let text = err.to_string();
    assert_eq!(err.diagnostics().len(), 5, "{text}");
    assert!(
        text.contains("r.yaml:4:11: routes[0].host: host \"https://x.com\" has a scheme"),
        "{text}"
    );
    assert!(
        text.contains(
            "routes[0].auth.scheme: unknown auth scheme \"Digest\"; expected Bearer, token or Basic"
        ),
        "{text}"
    );
    assert!(text.contains("routes[0].auth.token_env"), "{text}");
    assert!(text.contains("routes[1].path_allowlist[0]"), "{text}");
    assert!(text.contains("did you mean \"roles\""), "{text}");
}

#[test]
fn duplicate_hosts_and_versions() {
    let dup = "version: 1\nroutes:\n  - host: A.com\n  - host: a.com\n";
    assert!(
        RouteTable::parse(dup, "r")
            .unwrap_err()
            .to_string()
            .contains("more than one route")
    );
    let v2 = "version: 2\nroutes: []\n";
    assert!(
        RouteTable::parse(v2, "r")
            .unwrap_err()
            .to_string()
            .contains("unsupported routes-file version 2")
    );
    assert!(
        RouteTable::parse("routes: []\n", "r")
            .unwrap_err()
            .to_string()
            .contains("missing required key \"version\"")
    );
}

#[test]
fn introspection_has_no_values() {
    let t = RouteTable::parse(SAMPLE, "r").unwrap();
    let j = t.introspection().to_string();
    assert!(
        j.contains("EGRESS_TOKEN_1") && j.contains("\"version\""),
        "{j}"
    );
}

#[test]
fn ports_and_allow_private_parse_render_and_show() {
    let text = "version: 1\nroutes:\n  - host: a.example.com\n  - host: b.example.com\n    ports: [8443, 443]\n    allow_private: true\n";
    let t = RouteTable::parse(text, "r").unwrap();
    assert_eq!(t.routes()[0].ports, vec![443]);
    assert!(!t.routes()[0].allow_private);
    assert_eq!(t.routes()[1].ports, vec![443, 8443]);
    assert!(t.routes()[1].allow_private);
    let rendered = t.render();
    assert!(!rendered.contains("ports: [443]\n"), "{rendered}");
    assert!(rendered.contains("ports: [443, 8443]"), "{rendered}");
    assert_eq!(RouteTable::parse(&rendered, "again").unwrap(), t);
    let intro = t.introspection();
    assert_eq!(intro["routes"][0]["allow_private"], false);
    assert_eq!(intro["routes"][0]["ports"], serde_json::json!([443]));
    assert_eq!(intro["routes"][1]["allow_private"], true);
    assert_eq!(intro["routes"][1]["ports"], serde_json::json!([443, 8443]));
    // The opt-in changes the version hash, so a reload that adds it shows.
    let without = RouteTable::parse(&text.replace("    allow_private: true\n", ""), "r").unwrap();
    assert_ne!(without.version_hash(), t.version_hash());
}

#[test]
fn plain_http_and_ports() {
    let t = RouteTable::parse(
        "version: 1\nroutes:\n  - host: a.example.com\n  - host: b.example.com\n    ports: [8443]\n  - host: c.example.com\n    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }\n",
        "r",
    )
    .unwrap();
    let [a, b, c] = [&t.routes()[0], &t.routes()[1], &t.routes()[2]];
    assert!(a.allows_port(443) && !a.allows_port(8443) && !a.allows_port(80));
    assert!(a.allows_plain_http(80) && !a.allows_plain_http(8080));
    assert!(b.allows_port(8443) && !b.allows_port(443));
    assert!(b.allows_plain_http(80) && b.allows_plain_http(8443));
    assert!(c.allows_port(443));
    assert!(!c.allows_plain_http(80) && !c.allows_plain_http(443));
}

#[test]
fn path_parameters_never_pass_an_allowlist() {
    let t = RouteTable::parse(SAMPLE, "r").unwrap();
    let r = &t.routes()[0];
    for p in [
        "/repos/acme/..;/other",
        "/repos/acme;x/y",
        "/repos/acme/x;y",
        "/repos/acme/%3B/x",
        "/repos/acme/..%3b/x",
    ] {
        assert!(!r.allows_path(p), "{p}");
    }
    // Without an allowlist every path is allowed anyway.
    assert!(t.routes()[1].allows_path("/a;b"));
}

#[test]
fn bad_ports_and_prefixes_in_a_routes_file() {
    let err = RouteTable::parse(
        "version: 1\nroutes:\n  - host: a.example.com\n    ports: [443, \"https\"]\n    allow_private: 1\n    path_allowlist: [\"/x;y/\"]\n",
        "routes.yaml",
    )
    .unwrap_err()
    .to_string();
    for want in [
        "routes[0].ports[1]",
        "is not a port",
        "routes[0].allow_private",
        "path parameter",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
}
