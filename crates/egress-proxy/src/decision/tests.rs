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
"#;

fn table() -> LoadedTable {
    let t = RouteTable::parse(ROUTES, "routes.yaml").expect("valid");
    LoadedTable::new(
        t,
        &MapEnv::new([("EGRESS_TOKEN_1", "t1"), ("EGRESS_TOKEN_2", "t2")]),
    )
}

/// Decides `method host path?query` and returns a compact description.
fn check(method: &str, host: &str, target: &str, expected: &str) {
    let t = table();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let rh = RequestHost::parse(host).expect("host");
    let tg = Target {
        scheme: "https",
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
