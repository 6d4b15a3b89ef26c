//! Failure paths: upstream down / DNS / TLS verify → 502 with the reason;
//! malformed requests → 400; non-TLS tunnels closed; connection cap.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const ROUTES: &str = "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n  - host: down.test\n    allow_private: true\n  - host: nodns.test\n    allow_private: true\n  - host: new.test\n    allow_private: true\n";

fn routes(_unused: u16) -> String {
    ROUTES.to_owned()
}

#[tokio::test]
async fn upstream_failures_are_502_with_the_reason() {
    let w = World::new().await;
    // Refused: a port nobody listens on.
    let dead = free_port();
    let other = TestCa::new(w.dir.path(), "other");
    let rogue = Upstream::start(&other, &["new.test"]).await;
    let plain = w.upstream.plain_port;
    let routes = format!(
        "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n    ports: [443, {plain}]\n  - host: down.test\n    allow_private: true\n    ports: [{dead}]\n  - host: nodns.test\n    allow_private: true\n  - host: new.test\n    allow_private: true\n    ports: [{}]\n",
        rogue.tls_port
    );
    let p = w.proxy(ProxyOpts::new(&routes)).await;
    let ca = &w.proxy_ca.cert_path;
    let r = curl(&p, ca, &[&format!("https://down.test:{dead}/x")]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.header("x-egress-decision"), Some("error"));
    assert!(r.body.contains("connecting to down.test"), "{}", r.body);
    // DNS: a routed name the resolver does not know.
    let r = curl(&p, ca, &["https://nodns.test/x"]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(
        r.body.contains("DNS lookup of nodns.test failed"),
        "{}",
        r.body
    );
    // TLS verify: upstream cert signed by a CA the proxy does not trust.
    let r = curl(&p, ca, &[&format!("https://new.test:{}/x", rogue.tls_port)]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("failed verification"), "{}", r.body);
    // Upstream speaking plain HTTP where TLS was expected.
    let r = curl(
        &p,
        ca,
        &[&format!("https://api.test:{}/x", w.upstream.plain_port)],
    )
    .await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("TLS"), "{}", r.body);
}

async fn raw(p: &TestProxy, bytes: &[u8]) -> String {
    let mut tcp = TcpStream::connect(p.addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn malformed_requests_get_400() {
    let w = World::new().await;
    let p = w.proxy(ProxyOpts::new(&routes(0))).await;
    let r = raw(&p, b"GARBAGE\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw(
        &p,
        b"GET / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("forward proxy"), "{r}");
    let r = raw(
        &p,
        b"CONNECT api.test HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw(
        &p,
        b"GET ftp://api.test/ HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw(
        &p,
        b"GET http://api.test/a%zz HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let big = format!(
        "GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\nX-Big: {}\r\n\r\n",
        // Over the 64 KiB head limit, under the connection's read buffer:
        // the head limit itself must answer.
        "a".repeat(100_000)
    );
    let r = raw(&p, big.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{}", &r[..r.len().min(100)]);
    // The proxy is still healthy.
    let r = curl(&p, &w.proxy_ca.cert_path, &["http://_egress.local/status"]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn tunnel_that_is_neither_tls_nor_http_is_closed() {
    let w = World::new().await;
    let p = w.proxy(ProxyOpts::new(&routes(0))).await;
    let before = w
        .upstream
        .state
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    let mut tcp = TcpStream::connect(p.addr).await.unwrap();
    let port = 443;
    tcp.write_all(
        format!("CONNECT api.test:{port} HTTP/1.1\r\nHost: api.test:{port}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tcp.write_all(b"\x00\x01\x02SSH-2.0-raw-bytes\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let res = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut out))
        .await
        .unwrap();
    assert!(
        res.is_err() || out.iter().all(|b| *b != b'S'),
        "tunnel must be closed without relaying: {out:?}"
    );
    assert!(!String::from_utf8_lossy(&out).contains("SSH"));
    assert_eq!(
        w.upstream
            .state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        before
    );

    // Plain HTTP inside a CONNECT goes through the same decision.
    let mut tcp = TcpStream::connect(p.addr).await.unwrap();
    let pp = w.upstream.plain_port;
    tcp.write_all(
        format!("CONNECT denied.test:{pp} HTTP/1.1\r\nHost: denied.test:{pp}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tcp.write_all(
        format!("GET / HTTP/1.1\r\nHost: denied.test:{pp}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut out))
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("403 Forbidden"), "{out}");
}

#[tokio::test]
async fn connection_cap_answers_503() {
    let w = World::new().await;
    let mut o = ProxyOpts::new("version: 1\nroutes: []\n");
    o.limits.max_connections = 1;
    let p = w.proxy(o).await;
    let mut held = TcpStream::connect(p.addr).await.unwrap();
    // Make sure the first connection is being served before the second.
    held.write_all(b"GET http://_egress.local/status HTTP/1.1\r\nHost: _egress.local\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    held.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let r = raw(
        &p,
        b"GET http://_egress.local/status HTTP/1.1\r\nHost: _egress.local\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    drop(held);

    // A CONNECT tunnel keeps its slot after the upgrade.
    let tunnel = poll_until("the held slot to free", || async {
        let mut tcp = TcpStream::connect(p.addr).await.ok()?;
        tcp.write_all(b"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 12];
        tcp.read_exact(&mut buf).await.ok()?;
        (&buf == b"HTTP/1.1 200").then_some(tcp)
    })
    .await;
    let r = raw(
        &p,
        b"GET http://_egress.local/status HTTP/1.1\r\nHost: _egress.local\r\n\r\n",
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 503"),
        "tunnel must hold its slot: {r}"
    );
    drop(tunnel);
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let w = World::new().await;
    let mut p = w
        .proxy(ProxyOpts::new(
            "version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n",
        ))
        .await;
    let mut child = curl_cmd(&p, &w.proxy_ca.cert_path)
        .arg("-N")
        .arg(w.https("api.test", "/sse"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    use tokio::io::AsyncBufReadExt;
    tokio::time::timeout(DEADLINE, lines.read_line(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert!(first.contains("first-event"));
    p.shutdown.cancel();
    let mut task = p.task.take().unwrap();
    // New connections are refused once the listener is gone.
    poll_until("listener closed", || async {
        TcpStream::connect(p.addr).await.is_err().then_some(())
    })
    .await;
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), &mut task)
            .await
            .is_err(),
        "run() must wait for the in-flight stream"
    );
    w.upstream.state.sse_release.notify_one();
    let mut rest = String::new();
    tokio::time::timeout(DEADLINE, lines.read_to_string(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.contains("second-event"), "{rest}");
    tokio::time::timeout(DEADLINE, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn idle_and_handshake_timeouts_close_connections() {
    let w = World::new().await;
    let mut o =
        ProxyOpts::new("version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n");
    o.limits.idle_timeout = std::time::Duration::from_millis(300);
    o.limits.header_read_timeout = std::time::Duration::from_millis(300);
    o.limits.tls_handshake_timeout = std::time::Duration::from_millis(300);
    let p = w.proxy(o).await;
    // A client that connects and says nothing is closed.
    let mut tcp = TcpStream::connect(p.addr).await.unwrap();
    let mut out = Vec::new();
    let r = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "silent client must be closed by the proxy");
    // A tunnel that never starts its handshake is closed.
    let mut tcp = TcpStream::connect(p.addr).await.unwrap();
    let port = 443;
    tcp.write_all(
        format!("CONNECT api.test:{port} HTTP/1.1\r\nHost: api.test:{port}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let r = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "stalled tunnel must be closed by the proxy");
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    // A head sent too slowly is cut off too.
    let mut tcp = TcpStream::connect(p.addr).await.unwrap();
    tcp.write_all(b"GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let r = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "incomplete head must be closed by the proxy");
}

#[tokio::test]
async fn silent_upstream_gets_502_after_the_response_timeout() {
    let w = World::new().await;
    let mut o =
        ProxyOpts::new("version: 1\nroutes:\n  - host: api.test\n    allow_private: true\n");
    o.limits.response_timeout = std::time::Duration::from_millis(300);
    let p = w.proxy(o).await;
    let r = curl(&p, &w.proxy_ca.cert_path, &[&w.https("api.test", "/hang")]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("sent no response head"), "{}", r.body);
}
