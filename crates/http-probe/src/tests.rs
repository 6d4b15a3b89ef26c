use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::sync::mpsc;

use super::*;

/// A one-shot server on 127.0.0.1: sends back the request line it got and
/// answers `response` (or nothing, holding the connection, when `None`).
fn serve(response: Option<&'static str>) -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(conn.try_clone().expect("clone"));
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).expect("read") == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let _ = tx.send(head);
        match response {
            Some(r) => conn.write_all(r.as_bytes()).expect("write"),
            None => std::thread::sleep(Duration::from_secs(5)),
        }
    });
    (addr, rx)
}

fn args(url: String) -> ProbeArgs {
    ProbeArgs {
        url,
        proxy: None,
        fail: false,
        max_time: 2,
    }
}

#[test]
fn a_response_of_any_status_is_ready_and_its_body_is_kept() {
    let (addr, rx) = serve(Some(
        "HTTP/1.0 404 Not Found\r\nContent-Length: 4\r\n\r\nnope",
    ));
    let r = probe(&args(format!("http://{addr}/mcp"))).expect("answered");
    assert_eq!((r.status, r.body.as_slice()), (404, b"nope".as_slice()));
    let head = rx.recv().expect("request");
    assert!(head.starts_with("GET /mcp HTTP/1.0\r\n"), "{head}");
    assert!(head.contains(&format!("Host: {addr}\r\n")), "{head}");
}

#[test]
fn fail_wants_a_2xx() {
    let (addr, _rx) = serve(Some("HTTP/1.1 503 Unavailable\r\n\r\n"));
    let mut a = args(format!("http://{addr}/"));
    a.fail = true;
    assert!(matches!(probe(&a), Err(ProbeError::Status(503))));
    let (addr, _rx) = serve(Some("HTTP/1.1 200 OK\r\n\r\n{\"ok\":true}"));
    let mut a = args(format!("http://{addr}/status"));
    a.fail = true;
    assert_eq!(probe(&a).expect("2xx").body, b"{\"ok\":true}");
}

#[test]
fn through_a_proxy_the_request_is_in_absolute_form() {
    let (addr, rx) = serve(Some("HTTP/1.1 200 OK\r\n\r\nstatus"));
    let mut a = args("http://_egress.local/status".into());
    a.proxy = Some(addr.to_string());
    assert_eq!(probe(&a).expect("answered").body, b"status");
    let head = rx.recv().expect("request");
    assert!(
        head.starts_with("GET http://_egress.local/status HTTP/1.0\r\n")
            && head.contains("Host: _egress.local\r\n"),
        "{head}"
    );
}

#[test]
fn silence_is_a_timeout_within_max_time() {
    let (addr, _rx) = serve(None);
    let mut a = args(format!("http://{addr}/"));
    a.max_time = 1;
    let started = Instant::now();
    assert!(matches!(probe(&a), Err(ProbeError::Timeout(1))));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn nothing_listening_and_garbage_are_failures() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    // The listener is dropped: the port refuses.
    assert!(matches!(
        probe(&args(format!("http://{addr}/"))),
        Err(ProbeError::Connect(..))
    ));
    let (addr, _rx) = serve(Some("SSH-2.0-OpenSSH\r\n"));
    assert!(matches!(
        probe(&args(format!("http://{addr}/"))),
        Err(ProbeError::NotHttp(_))
    ));
}

#[test]
fn urls_are_plain_http_with_a_host() {
    let check = |url: &str, expect: Option<(&str, u16, &str)>| {
        assert_eq!(split_url(url).ok(), expect, "{url}");
    };
    check(
        "http://127.0.0.1:9100/mcp",
        Some(("127.0.0.1", 9100, "/mcp")),
    );
    check(
        "http://_egress.local/status",
        Some(("_egress.local", 80, "/status")),
    );
    check("http://localhost:9200", Some(("localhost", 9200, "/")));
    check("http://[::1]:9100/x", Some(("[::1]", 9100, "/x")));
    check("https://127.0.0.1/", None);
    check("http://:80/", None);
    check("http://host:notaport/", None);
    check("http://a b/", None);
    check("http://host/a b", None);
    check("127.0.0.1:9100", None);
}

#[test]
fn arguments_parse_like_the_daemons_pass_them() {
    let a = ProbeArgs::try_parse_from([
        "egress-proxy probe",
        "--fail",
        "--proxy",
        "127.0.0.1:9099",
        "--max-time",
        "5",
        "http://_egress.local/status",
    ])
    .expect("parse");
    assert_eq!(
        a,
        ProbeArgs {
            url: "http://_egress.local/status".into(),
            proxy: Some("127.0.0.1:9099".into()),
            fail: true,
            max_time: 5,
        }
    );
    assert!(ProbeArgs::try_parse_from(["p", "--max-time", "0", "http://x/"]).is_err());
    assert!(ProbeArgs::try_parse_from(["p"]).is_err());
}
