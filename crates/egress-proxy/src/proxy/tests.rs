use super::*;

#[test]
fn hop_by_hop_and_proxy_headers_are_stripped() {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("connection", "keep-alive, x-drop-me"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic abc"),
        ("proxy-connection", "keep-alive"),
        ("proxy-anything", "x"),
        ("x-drop-me", "1"),
        ("te", "trailers"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("expect", "100-continue"),
        ("host", "evil.example"),
        ("accept", "*/*"),
        ("authorization", "Bearer client"),
    ] {
        h.append(k, HeaderValue::from_static(v));
    }
    sanitize_request(&mut h, false);
    let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["accept", "authorization"]);
}

#[test]
fn upgrade_keeps_its_headers() {
    let mut h = HeaderMap::new();
    h.insert("connection", HeaderValue::from_static("Upgrade"));
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    h.insert("sec-websocket-key", HeaderValue::from_static("k"));
    assert!(is_upgrade(&h));
    sanitize_request(&mut h, true);
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "upgrade");
    assert_eq!(h["sec-websocket-key"], "k");
}

#[test]
fn sniffing_http_request_lines() {
    for (b, want) in [
        (&b"GET / HTTP/1.1\r\n"[..], true),
        (b"OPTIONS * HTTP/1.1", true),
        (b"\x16\x03\x01", false),
        (b"get / HTTP/1.1", false),
        (b"SSH-2.0-x", false),
        (b"", false),
    ] {
        assert_eq!(looks_like_http(b), want, "{:?}", String::from_utf8_lossy(b));
    }
}

#[test]
fn origin_authority_omits_default_ports() {
    let o = |scheme, host: &str, port| Origin {
        scheme,
        host: host.to_owned(),
        request_host: RequestHost::parse(host).expect("host"),
        port,
    };
    assert_eq!(o("https", "a.example", 443).authority(), "a.example");
    assert_eq!(o("https", "a.example", 8443).authority(), "a.example:8443");
    assert_eq!(o("http", "a.example", 80).authority(), "a.example");
    assert_eq!(o("http", "::1", 8080).authority(), "[::1]:8080");
}
