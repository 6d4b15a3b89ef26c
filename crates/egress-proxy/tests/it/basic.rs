//! Allow, deny host, deny path, wildcard + apex, token injection,
//! introspection.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

pub const ROUTES: &str = r#"
version: 1
routes:
  - host: api.test
    allow_private: true
  - host: paths.test
    allow_private: true
    path_allowlist: [/allowed/]
  - host: "*.wild.test"
    allow_private: true
  - host: auth.test
    allow_private: true
    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }
  - host: key.test
    allow_private: true
    auth: { header: x-api-key, token_env: EGRESS_TOKEN_2 }
  - host: notoken.test
    allow_private: true
    auth: { scheme: token, token_env: EGRESS_TOKEN_3 }
"#;

pub const TOKEN1: &str = "tok-one-SECRET-value";
pub const TOKEN2: &str = "tok-two-SECRET-value";

async fn setup() -> (World, TestProxy) {
    let w = World::new().await;
    let mut o = ProxyOpts::new(ROUTES);
    o.env = vec![("EGRESS_TOKEN_1", TOKEN1), ("EGRESS_TOKEN_2", TOKEN2)];
    let p = w.proxy(o).await;
    (w, p)
}

#[tokio::test]
async fn allowed_host_is_forwarded_over_connect_and_absolute_form() {
    let (w, p) = setup().await;
    let ca = &w.proxy_ca.cert_path;
    let r = curl(&p, ca, &[&w.https("api.test", "/echo?x=1")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-egress-decision"), None);
    let j = r.json();
    assert_eq!(j["path"], "/echo");
    assert_eq!(j["query"], "x=1");
    assert_eq!(j["headers"]["host"][0], "api.test");
    assert!(j["headers"].get("proxy-connection").is_none());

    // Plain http:// in absolute form.
    let r = curl(&p, ca, &[&w.http("api.test", "/echo")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["path"], "/echo");
}

#[tokio::test]
async fn denied_host_gets_a_readable_403_inside_tls() {
    let (w, p) = setup().await;
    let before = w
        .upstream
        .state
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    let r = curl(
        &p,
        &w.proxy_ca.cert_path,
        &[&w.https("denied.test", "/some/thing")],
    )
    .await;
    assert_eq!(r.exit, 0, "TLS to a denied host must still complete: {r:?}");
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-egress-decision"), Some("deny"));
    assert!(r.body.contains("denied.test"), "{}", r.body);
    assert!(
        r.body.contains("not in this bottle's egress allowlist"),
        "{}",
        r.body
    );
    assert!(r.body.contains("egress-block"), "{}", r.body);
    // Plain http too.
    let r = curl(&p, &w.proxy_ca.cert_path, &[&w.http("denied.test", "/")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        w.upstream
            .state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        before
    );
}

#[tokio::test]
async fn path_allowlist_is_checked_on_the_normalised_path() {
    let (w, p) = setup().await;
    let ca = &w.proxy_ca.cert_path;
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("/allowed/x", 200, Some("/allowed/x")),
        ("/allowed", 200, Some("/allowed")),
        ("/allowed/./x", 200, Some("/allowed/x")),
        ("//allowed//x", 200, Some("/allowed/x")),
        ("/allowed/%78", 200, Some("/allowed/x")),
        ("/allowed/../secret", 403, None),
        ("/allowed/%2e%2e/secret", 403, None),
        ("/allowed/%2E%2E/%2e%2e/secret", 403, None),
        ("/allowed/..//secret", 403, None),
        ("//secret", 403, None),
        ("/allowed%2f../secret", 403, None),
        ("/allowed/x%2f..%2f..%2fsecret", 403, None),
        ("/allowedevil", 403, None),
        ("/secret", 403, None),
    ];
    for (path, status, upstream_path) in cases {
        let url = w.https("paths.test", path);
        let r = curl(&p, ca, &["--path-as-is", &url]).await;
        assert_eq!(r.status, *status, "{path}: {r:?}");
        match upstream_path {
            Some(up) => assert_eq!(r.json()["path"], *up, "{path}"),
            None => {
                assert_eq!(r.header("x-egress-decision"), Some("deny"), "{path}");
                assert!(r.body.contains("/allowed/"), "{path}: {}", r.body);
            }
        }
    }
}

#[tokio::test]
async fn wildcard_matches_apex_and_subdomains_on_label_boundary() {
    let (w, p) = setup().await;
    let ca = &w.proxy_ca.cert_path;
    for host in [
        "wild.test",
        "a.wild.test",
        "deep.a.wild.test",
        "A.Wild.Test",
    ] {
        let r = curl(&p, ca, &[&w.https(host, "/echo")]).await;
        assert_eq!(r.status, 200, "{host}: {r:?}");
    }
    let r = curl(&p, ca, &[&w.https("barwild.test", "/echo")]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("x-egress-decision"), Some("deny"));
}

#[tokio::test]
async fn token_is_injected_and_client_value_dropped() {
    let (w, p) = setup().await;
    let ca = &w.proxy_ca.cert_path;
    let r = curl(
        &p,
        ca,
        &[
            "-H",
            "Authorization: Bearer agent-made-this-up",
            &w.https("auth.test", "/echo"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let auth = &r.json()["headers"]["authorization"];
    assert_eq!(auth, &serde_json::json!([format!("Bearer {TOKEN1}")]));

    let r = curl(
        &p,
        ca,
        &[
            "-H",
            "x-api-key: agent-key",
            "-H",
            "X-Api-Key: second",
            &w.https("key.test", "/echo"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json()["headers"]["x-api-key"],
        serde_json::json!([TOKEN2])
    );

    // Plain http never carries the credential: refused before connecting.
    let before = w
        .upstream
        .state
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    let r = curl(&p, ca, &[&w.http("auth.test", "/echo")]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("only sent inside TLS"), "{}", r.body);
    assert!(!r.body.contains(TOKEN1));
    assert_eq!(
        w.upstream
            .state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        before
    );

    // Bare routes never receive a token, and the client's header passes.
    let r = curl(
        &p,
        ca,
        &[
            "-H",
            "Authorization: Bearer mine",
            &w.https("api.test", "/echo"),
        ],
    )
    .await;
    assert_eq!(
        r.json()["headers"]["authorization"],
        serde_json::json!(["Bearer mine"])
    );
}

#[tokio::test]
async fn unset_token_variable_fails_closed_naming_it() {
    let (w, p) = setup().await;
    let before = w
        .upstream
        .state
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    let r = curl(
        &p,
        &w.proxy_ca.cert_path,
        &[&w.https("notoken.test", "/echo")],
    )
    .await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("EGRESS_TOKEN_3"), "{}", r.body);
    assert_eq!(r.header("x-egress-decision"), Some("error"));
    assert_eq!(
        w.upstream
            .state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        before
    );
}

#[tokio::test]
async fn introspection_lists_routes_without_secrets() {
    let (w, p) = setup().await;
    let ca = &w.proxy_ca.cert_path;
    for url in [
        "http://_egress.local/allowlist",
        "https://_egress.local/allowlist",
    ] {
        let r = curl(&p, ca, &[url]).await;
        assert_eq!(r.status, 200, "{url}: {r:?}");
        assert!(
            !r.body.contains(TOKEN1) && !r.body.contains(TOKEN2),
            "{}",
            r.body
        );
        let j = r.json();
        let routes = j["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 6);
        let auth = routes.iter().find(|r| r["host"] == "auth.test").unwrap();
        assert_eq!(auth["auth"]["token_env"], "EGRESS_TOKEN_1");
        assert_eq!(auth["auth"]["scheme"], "Bearer");
        assert_eq!(r.header("x-egress-decision"), Some("introspection"));
    }
    let r = curl(&p, ca, &["http://_egress.local/status"]).await;
    let j = r.json();
    assert_eq!(j["version"], p.proxy.allowlist().current().version());
    assert!(j["last_reload_error"].is_null());
    assert_eq!(
        j["missing_token_env"],
        serde_json::json!(["EGRESS_TOKEN_3"])
    );
    assert!(!r.body.contains(TOKEN1));
    let r = curl(&p, ca, &["http://_egress.local/nope"]).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn domain_fronting_is_refused() {
    let (w, p) = setup().await;
    let port = 443;
    // Host header naming another host inside an allowed tunnel.
    let mut send = tunnel_client(p.addr, "api.test", port, &w.proxy_ca).await;
    let (status, decision, body) = get(&mut send, &format!("auth.test:{port}"), "/echo").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(decision.as_deref(), Some("deny"));
    assert!(body.contains("domain fronting"), "{body}");
    // Same tunnel, right host: fine.
    let (status, _, _) = get(&mut send, &format!("api.test:{port}"), "/echo").await;
    assert_eq!(status, 200);
    // SNI naming another host than the CONNECT target: no session results
    // (the proxy closes on the mismatch; the client would also refuse the
    // leaf, which names the CONNECT host).
    let res = tokio::time::timeout(DEADLINE, async {
        let mut tcp = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        tcp.write_all(format!("CONNECT denied.test:{port} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.add(w.proxy_ca.cert_der()).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("api.test").unwrap();
        let mut tls = match tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect(name, tcp)
            .await
        {
            Ok(t) => t,
            Err(_) => return true,
        };
        // TLS 1.3: the server may only close after the client's Finished.
        let _ = tls
            .write_all(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n")
            .await;
        let mut out = Vec::new();
        matches!(tls.read_to_end(&mut out).await, Err(_) | Ok(0))
    })
    .await
    .unwrap();
    assert!(
        res,
        "a tunnel whose SNI differs from the CONNECT host must be closed"
    );
}

#[tokio::test]
async fn ip_literal_routes_and_leaves() {
    let w = World::new().await;
    let p = w
        .proxy(ProxyOpts::new(
            "version: 1\nroutes:\n  - host: 127.0.0.1\n    allow_private: true\n",
        ))
        .await;
    let ca = &w.proxy_ca.cert_path;
    // The leaf for an IP CONNECT carries an IP SAN; curl verifies it.
    let r = curl(&p, ca, &[&w.https("127.0.0.1", "/echo")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["path"], "/echo");
    // Another IP is not allowed (refused before any connection is made).
    let r = curl(
        &p,
        ca,
        &[&format!("https://127.0.0.2:{}/x", w.upstream.tls_port)],
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("127.0.0.2"), "{}", r.body);
}
