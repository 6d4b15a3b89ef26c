//! The smaller doors, tried with real clients: other ports, credentials in
//! plain HTTP, TRACE, `;` path parameters, overlong UTF-8 escapes and a
//! request without Host inside a tunnel.

use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::basic::{ROUTES, TOKEN1, TOKEN2};
use crate::support::*;

async fn setup(routes: &str) -> (World, TestProxy) {
    let w = World::new().await;
    let mut o = ProxyOpts::new(routes);
    o.env = vec![("EGRESS_TOKEN_1", TOKEN1), ("EGRESS_TOKEN_2", TOKEN2)];
    let p = w.proxy(o).await;
    (w, p)
}

fn seen(w: &World) -> usize {
    w.upstream.state.requests.load(Ordering::SeqCst)
}

#[tokio::test]
async fn connect_to_an_unlisted_port_is_a_readable_403() {
    let routes =
        format!("{ROUTES}  - host: new.test\n    allow_private: true\n    ports: [443, 8443]\n");
    let (w, p) = setup(&routes).await;
    let ca = &w.proxy_ca.cert_path;
    let before = seen(&w);
    for url in ["https://api.test:8443/x", "https://auth.test:22/x"] {
        let r = curl(&p, ca, &[url]).await;
        assert_eq!(r.exit, 0, "the 403 arrives inside TLS: {r:?}");
        assert_eq!(r.status, 403, "{url}: {r:?}");
        assert_eq!(r.header("x-egress-decision"), Some("deny"));
        assert!(r.body.contains("is not allowed for"), "{}", r.body);
        assert!(r.body.contains("port(s) 443"), "{}", r.body);
    }
    assert_eq!(seen(&w), before, "nothing reached an upstream");
    // A listed port passes the decision (nobody listens there: 502).
    let r = curl(&p, ca, &["https://new.test:8443/x"]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("new.test:8443"), "{}", r.body);
}

#[tokio::test]
async fn credentials_travel_only_inside_tls() {
    let (w, p) = setup(ROUTES).await;
    let ca = &w.proxy_ca.cert_path;
    let before = seen(&w);
    // Absolute-form http:// to a credentialed route.
    let r = curl(&p, ca, &[&w.http("auth.test", "/echo")]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("only sent inside TLS"), "{}", r.body);
    // Plain HTTP inside a CONNECT, to 443 or any other port.
    for port in [443u16, 80, 8080] {
        let mut tcp = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        tcp.write_all(
            format!("CONNECT key.test:{port} HTTP/1.1\r\nHost: key.test:{port}\r\n\r\nGET /echo HTTP/1.1\r\nHost: key.test:{port}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let out = String::from_utf8_lossy(&out);
        let inner = out.split("\r\n\r\n").nth(1).unwrap_or("");
        assert!(inner.starts_with("HTTP/1.1 403"), "port {port}: {out}");
        assert!(out.contains("only sent inside TLS"), "port {port}: {out}");
        assert!(!out.contains(TOKEN2));
    }
    assert_eq!(seen(&w), before, "the credential never left in clear text");
    // Over TLS it is injected; bare routes still take plain HTTP on port 80.
    let r = curl(&p, ca, &[&w.https("auth.test", "/echo")]).await;
    assert_eq!(
        r.json()["headers"]["authorization"][0],
        format!("Bearer {TOKEN1}")
    );
    let r = curl(&p, ca, &[&w.http("api.test", "/echo")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = curl(&p, ca, &["http://api.test:8080/echo"]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("plain HTTP may use port 80"), "{}", r.body);
}

#[tokio::test]
async fn trace_and_track_are_refused() {
    let (w, p) = setup(ROUTES).await;
    let ca = &w.proxy_ca.cert_path;
    let before = seen(&w);
    for method in ["TRACE", "TRACK"] {
        let r = curl(&p, ca, &["-X", method, &w.https("auth.test", "/echo")]).await;
        assert_eq!(r.status, 403, "{method}: {r:?}");
        assert!(
            r.body.contains(&format!("method {method} is refused")),
            "{}",
            r.body
        );
    }
    assert_eq!(seen(&w), before);
}

#[tokio::test]
async fn path_parameters_pass_no_prefix_and_no_push_block() {
    let (w, p) = setup(ROUTES).await;
    let ca = &w.proxy_ca.cert_path;
    let before = seen(&w);
    for path in ["/allowed/..;/secret", "/allowed;x/y", "/allowed/x%3B/y"] {
        let r = curl(&p, ca, &["--path-as-is", &w.https("paths.test", path)]).await;
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(r.body.contains("`;` parameter"), "{path}: {}", r.body);
    }
    for path in [
        "/repo.git/git-receive-pack;x",
        "/repo.git/x/..;/git-receive-pack",
        "/repo.git/info/refs;v?service=git-receive-pack",
    ] {
        let r = curl(
            &p,
            ca,
            &["--path-as-is", "--data", "x", &w.https("api.test", path)],
        )
        .await;
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(
            r.body.contains("git push over HTTPS is blocked"),
            "{path}: {}",
            r.body
        );
    }
    assert_eq!(seen(&w), before);
}

#[tokio::test]
async fn overlong_utf8_escapes_are_refused() {
    let (w, p) = setup(ROUTES).await;
    let ca = &w.proxy_ca.cert_path;
    let before = seen(&w);
    for path in [
        "/allowed/%C0%AE%C0%AE/secret",
        "/allowed/%c0%af..%c0%afsecret",
        "/allowed/%E0%80%AE%E0%80%AE/secret",
    ] {
        let r = curl(&p, ca, &["--path-as-is", &w.https("paths.test", path)]).await;
        assert_eq!(r.status, 400, "{path}: {r:?}");
        assert!(r.body.contains("overlong UTF-8"), "{}", r.body);
    }
    assert_eq!(seen(&w), before);
    // Real multi-byte characters pass.
    let r = curl(&p, ca, &[&w.https("paths.test", "/allowed/caf%C3%A9")]).await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test]
async fn a_request_without_host_inside_a_tunnel_is_400() {
    let (w, p) = setup(ROUTES).await;
    let before = seen(&w);
    let mut tls = connect_tls(p.addr, "api.test", 443, "api.test", &w.proxy_ca).await;
    tls.write_all(b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, tls.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("no Host header"), "{out}");
    assert_eq!(seen(&w), before);
}
