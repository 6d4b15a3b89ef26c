#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::*;

#[test]
fn proxy_urls() {
    for (input, want) in [
        ("http://egress:9099", "egress:9099"),
        ("http://egress:9099/", "egress:9099"),
        ("http://egress", "egress:80"),
        ("http://127.0.0.1:3128", "127.0.0.1:3128"),
    ] {
        assert_eq!(
            ProxyAddr::parse(input).unwrap().authority(),
            want,
            "{input}"
        );
    }
    for bad in [
        "egress:9099",
        "https://egress:9099",
        "http://u:p@egress:1",
        "http://egress:1/x",
        "",
        "http://",
    ] {
        let e = ProxyAddr::parse(bad).unwrap_err();
        assert!(
            e.to_string().contains("expected http://HOST:PORT"),
            "{bad}: {e}"
        );
    }
}

#[tokio::test]
async fn unreachable_proxy_is_a_connect_error() {
    // A port that was just free: bind, note, drop.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = ProxyAddr::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let e = fetch_routes(&addr).await.unwrap_err();
    assert!(matches!(e, EgressError::Connect { .. }), "{e}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
}
