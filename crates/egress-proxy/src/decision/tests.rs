use manifest::RouteTable;

use super::*;
use crate::env::MapEnv;

const ROUTES: &str = r#"
version: 1
routes:
  - host: api.example.com
  - host: gh.example.com
    path_allowlist: [/repos/acme/]
    auth: { scheme: token, token_env: EGRESS_TOKEN_1 }
  - host: "*.wild.example"
  - host: key.example
    auth: { header: x-api-key, token_env: EGRESS_TOKEN_2 }
  - host: unset.example
    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_3 }
  - host: alt.example
    ports: [8443]
"#;

fn table() -> LoadedTable {
    let t = RouteTable::parse(ROUTES, "routes.yaml").expect("valid");
    LoadedTable::new(
        t,
        &MapEnv::new([("EGRESS_TOKEN_1", "t1"), ("EGRESS_TOKEN_2", "t2")]),
    )
}

/// Decides `method host path?query` (inside TLS, port 443) and returns a
/// compact description.
#[track_caller]
fn check(method: &str, host: &str, target: &str, expected: &str) {
    check_at("https", 443, method, host, target, expected);
}

#[track_caller]
fn check_at(scheme: &str, port: u16, method: &str, host: &str, target: &str, expected: &str) {
    let t = table();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let rh = RequestHost::parse(host).expect("host");
    let tg = Target {
        scheme,
        port,
        host,
        request_host: &rh,
        method,
        path,
        query,
    };
    let got = match decide(&t, &tg) {
        Decision::Magic(m) => format!("magic {m:?}"),
        Decision::Allow {
            route,
            path_and_query,
            inject,
        } => {
            let inj = inject
                .map(|(n, v)| format!(" {}={}", n, v.to_str().unwrap_or("?")))
                .unwrap_or_default();
            format!("allow {} {path_and_query}{inj}", route.host)
        }
        Decision::Refuse(r) => format!("{} {}", r.status().as_u16(), r.code()),
    };
    assert_eq!(got, expected, "{method} {host}{target}");
}

#[test]
fn decisions_in_order() {
    check(
        "GET",
        "api.example.com",
        "/x?y=1",
        "allow api.example.com /x?y=1",
    );
    check(
        "GET",
        "API.Example.COM",
        "/a/./b//c",
        "allow api.example.com /a/b/c",
    );
    check("GET", "other.example", "/", "403 host-not-allowed");
    check("GET", "wild.example", "/", "allow *.wild.example /");
    check("GET", "a.b.wild.example", "/", "allow *.wild.example /");
    check("GET", "barwild.example", "/", "403 host-not-allowed");
    // Path prefix on the normalised path.
    check(
        "GET",
        "gh.example.com",
        "/repos/acme/x",
        "allow gh.example.com /repos/acme/x authorization=token t1",
    );
    check(
        "GET",
        "gh.example.com",
        "/repos/acme",
        "allow gh.example.com /repos/acme authorization=token t1",
    );
    check(
        "GET",
        "gh.example.com",
        "/repos/acme/../evil",
        "403 path-not-allowed",
    );
    check(
        "GET",
        "gh.example.com",
        "/repos/acme/%2e%2e/evil",
        "403 path-not-allowed",
    );
    check(
        "GET",
        "gh.example.com",
        "/repos/acme%2f..%2fevil",
        "403 path-not-allowed",
    );
    check(
        "GET",
        "gh.example.com",
        "/repos/acmeevil",
        "403 path-not-allowed",
    );
    check("GET", "gh.example.com", "/repos/acme/%zz", "400 bad-path");
    // Custom header gets the raw token.
    check(
        "GET",
        "key.example",
        "/",
        "allow key.example / x-api-key=t2",
    );
    // Unset token: refused, never forwarded.
    check("GET", "unset.example", "/", "502 token-missing");
    // Magic host.
    check("GET", "_egress.local", "/allowlist", "magic Allowlist");
    check("GET", "_egress.local", "/status", "magic Status");
    check("POST", "_egress.local", "/status", "magic NotFound");
}

#[test]
fn git_push_block_comes_first_for_every_host() {
    for host in ["api.example.com", "other.example", "gh.example.com"] {
        check(
            "POST",
            host,
            "/acme/x.git/git-receive-pack",
            "403 git-push-blocked",
        );
        check(
            "GET",
            host,
            "/acme/x.git/info/refs?service=git-receive-pack",
            "403 git-push-blocked",
        );
        check(
            "GET",
            host,
            "/acme/x.git/info/refs?a=b&service=git%2dreceive%2dpack",
            "403 git-push-blocked",
        );
        check(
            "POST",
            host,
            "/acme/x.git/git-%72eceive-pack",
            "403 git-push-blocked",
        );
        check(
            "POST",
            host,
            "/acme/x.git/sub/../git-receive-pack/",
            "403 git-push-blocked",
        );
    }
    // Fetch is not a push.
    check(
        "GET",
        "api.example.com",
        "/x.git/info/refs?service=git-upload-pack",
        "allow api.example.com /x.git/info/refs?service=git-upload-pack",
    );
    check(
        "POST",
        "api.example.com",
        "/x.git/git-upload-pack",
        "allow api.example.com /x.git/git-upload-pack",
    );
}

#[test]
fn is_git_push_table() {
    let cases: &[(&str, Option<&str>, bool)] = &[
        ("/r.git/git-receive-pack", None, true),
        ("/git-receive-pack", None, true),
        ("/r.git/GIT-RECEIVE-PACK", None, true),
        ("/r.git/info/refs", Some("service=git-receive-pack"), true),
        ("/r.git/info/refs", Some("service=GIT-RECEIVE-PACK"), true),
        ("/r.git/info/refs", Some("service=git-upload-pack"), false),
        ("/r.git/info/refs", None, false),
        ("/r.git/git-receive-packs", None, false),
        (
            "/docs/info/refs-and-more",
            Some("service=git-receive-pack"),
            false,
        ),
    ];
    for (path, q, want) in cases {
        assert_eq!(is_git_push(path, *q), *want, "{path} {q:?}");
    }
}

#[test]
fn refusal_bodies_name_host_reason_and_remedy() {
    let rh = RequestHost::parse("other.example").expect("host");
    let t = Target {
        scheme: "https",
        port: 443,
        host: "other.example",
        request_host: &rh,
        method: "GET",
        path: "/p",
        query: Some("secret=1"),
    };
    let body = Refusal::HostNotAllowed.body(&t);
    assert!(body.contains("https://other.example/p"), "{body}");
    assert!(body.contains("egress-block"), "{body}");
    assert!(
        !body.contains("secret=1"),
        "the query is not echoed: {body}"
    );
    let body = Refusal::GitPush.body(&t);
    assert!(body.contains("git-gate"), "{body}");
    let body = Refusal::TokenMissing {
        route: "x".into(),
        token_env: "EGRESS_TOKEN_9".into(),
    }
    .body(&t);
    assert!(body.contains("EGRESS_TOKEN_9"), "{body}");
}

#[test]
fn injected_value_is_marked_sensitive() {
    let t = table();
    let rh = RequestHost::parse("key.example").expect("host");
    let tg = Target {
        scheme: "https",
        port: 443,
        host: "key.example",
        request_host: &rh,
        method: "GET",
        path: "/",
        query: None,
    };
    match decide(&t, &tg) {
        Decision::Allow {
            inject: Some((_, v)),
            ..
        } => assert!(v.is_sensitive()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn ports_and_credentials_need_tls() {
    // TLS: listed ports only (default 443).
    check_at(
        "https",
        8443,
        "GET",
        "api.example.com",
        "/",
        "403 port-not-allowed",
    );
    check_at(
        "https",
        8443,
        "GET",
        "alt.example",
        "/",
        "allow alt.example /",
    );
    check_at(
        "https",
        443,
        "GET",
        "alt.example",
        "/",
        "403 port-not-allowed",
    );
    // Plain HTTP: bare routes on 80 or a listed port; never with a credential.
    check_at(
        "http",
        80,
        "GET",
        "api.example.com",
        "/",
        "allow api.example.com /",
    );
    check_at(
        "http",
        8080,
        "GET",
        "api.example.com",
        "/",
        "403 port-not-allowed",
    );
    check_at(
        "http",
        8443,
        "GET",
        "alt.example",
        "/",
        "allow alt.example /",
    );
    check_at(
        "http",
        80,
        "GET",
        "gh.example.com",
        "/repos/acme/x",
        "403 credential-needs-tls",
    );
    check_at(
        "http",
        443,
        "GET",
        "key.example",
        "/",
        "403 credential-needs-tls",
    );
    // The git-push block and unknown hosts come first, whatever the port.
    check_at(
        "http",
        22,
        "GET",
        "nope.example",
        "/",
        "403 host-not-allowed",
    );
}

#[test]
fn trace_and_track_are_refused() {
    check("TRACE", "api.example.com", "/", "403 method-not-allowed");
    check("TRACK", "api.example.com", "/", "403 method-not-allowed");
    check("trace", "api.example.com", "/", "403 method-not-allowed");
}

#[test]
fn path_parameters_and_overlong_escapes() {
    check(
        "GET",
        "gh.example.com",
        "/repos/acme/..;/other",
        "403 path-parameter",
    );
    check(
        "GET",
        "gh.example.com",
        "/repos/acme;x/y",
        "403 path-parameter",
    );
    check(
        "GET",
        "gh.example.com",
        "/repos/acme/a%3bb",
        "403 path-parameter",
    );
    // Without a path allowlist a parameter is just part of the path.
    check(
        "GET",
        "api.example.com",
        "/a;b/c",
        "allow api.example.com /a;b/c",
    );
    // ... but it never hides a push.
    check(
        "POST",
        "api.example.com",
        "/r.git/git-receive-pack;x",
        "403 git-push-blocked",
    );
    check(
        "POST",
        "api.example.com",
        "/r.git/git-receive-pack;x/",
        "403 git-push-blocked",
    );
    check(
        "GET",
        "api.example.com",
        "/r.git/info/refs;p?service=git-receive-pack",
        "403 git-push-blocked",
    );
    check(
        "POST",
        "api.example.com",
        "/r.git/x/..;/git-receive-pack",
        "403 git-push-blocked",
    );
    for overlong in [
        "/repos/acme/%C0%AE%C0%AE/x",
        "/%c0%af",
        "/%E0%80%AE",
        "/%F0%80%80%AE",
        "/%F8%80%80%80%AE",
        "/%C1%9C",
    ] {
        check("GET", "api.example.com", overlong, "400 bad-path");
    }
    // Proper multi-byte escapes are fine.
    check(
        "GET",
        "api.example.com",
        "/%C3%A9",
        "allow api.example.com /%C3%A9",
    );
    check(
        "GET",
        "api.example.com",
        "/%E2%82%AC",
        "allow api.example.com /%E2%82%AC",
    );
}

#[test]
fn refusal_bodies_are_readable() {
    let rh = RequestHost::parse("alt.example").unwrap();
    let t = Target {
        scheme: "https",
        port: 443,
        host: "alt.example",
        request_host: &rh,
        method: "GET",
        path: "/x",
        query: None,
    };
    let Decision::Refuse(r) = decide(&table(), &t) else {
        panic!("expected a refusal")
    };
    let body = r.body(&t);
    assert!(
        body.contains("port 443 is not allowed for alt.example"),
        "{body}"
    );
    assert!(body.contains("8443"), "{body}");
    assert!(body.contains("only the operator"), "{body}");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn segment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "repos",
            "acme",
            "other",
            "..",
            ".",
            "..;",
            "..;x",
            ";",
            "acme;x",
            "%3B",
            "..%3b",
            "git-receive-pack",
            "git-receive-pack;x",
            "info",
            "refs;a",
            "%2e%2e;",
            "x",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Whatever `;` tricks a path uses, an allowed request on the
        /// allowlisted route reads as a path under the prefix both with and
        /// without its parameters, and never as a push.
        #[test]
        fn parameters_never_widen_an_allowlist(segs in prop::collection::vec(segment(), 0..7)) {
            let raw = format!("/{}", segs.join("/"));
            let rh = RequestHost::parse("gh.example.com").unwrap();
            let t = Target { scheme: "https", port: 443, host: "gh.example.com", request_host: &rh, method: "GET", path: &raw, query: None };
            let table = table();
            if let Decision::Allow { path_and_query, .. } = decide(&table, &t) {
                for view in [path_and_query.clone(), without_path_parameters(&path_and_query)] {
                    prop_assert!(view.starts_with("/repos/acme/") || view == "/repos/acme", "{raw} -> {view}");
                }
                prop_assert!(!is_git_push(&path_and_query, None));
            }
            // And a push is caught in either reading on a route without an allowlist.
            let t2 = Target { request_host: &RequestHost::parse("api.example.com").unwrap(), host: "api.example.com", ..t };
            if let Decision::Allow { path_and_query, .. } = decide(&table, &t2) {
                let stripped = without_path_parameters(&path_and_query);
                prop_assert!(!stripped.trim_end_matches('/').ends_with("/git-receive-pack"), "{raw} -> {stripped}");
            }
        }

        #[test]
        fn overlong_check_never_panics_and_flags_every_c0_c1(s in "(%[0-9A-Fa-f]{2}|[a-z/.;%]){0,12}") {
            let found = overlong_utf8_escape(&s);
            let up = s.to_ascii_uppercase();
            if up.contains("%C0") || up.contains("%C1") {
                prop_assert!(found.is_some(), "{s}");
            }
        }
    }
}
