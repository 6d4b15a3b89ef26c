use super::*;

#[test]
fn proxy_urls() {
    let p = UpstreamProxy::parse("http://pipelock:8888").expect("plain");
    assert_eq!(p.to_string(), "http://pipelock:8888");
    assert!(p.auth.is_none());
    let p = UpstreamProxy::parse("pipelock:3128").expect("bare");
    assert_eq!((p.host.as_str(), p.port), ("pipelock", 3128));
    let p = UpstreamProxy::parse("http://pipelock").expect("default port");
    assert_eq!(p.port, 80);
    let p = UpstreamProxy::parse("http://user:p%40ss@proxy:1/").expect("auth");
    assert_eq!(p.auth.as_deref(), Some("Basic dXNlcjpwQHNz"));
    assert!(
        !format!("{p:?}").contains("dXNl"),
        "auth is redacted in Debug"
    );
    for bad in [
        "https://proxy:1",
        "socks5://proxy:1",
        "http://proxy:1/path",
        "http://:1",
        "http://proxy:notaport",
    ] {
        let e = UpstreamProxy::parse(bad).expect_err(bad);
        assert!(
            e.to_string().contains("expected http://host:port"),
            "{bad}: {e}"
        );
    }
    let e = UpstreamProxy::parse("https://user:secret@proxy:1").expect_err("scheme");
    assert!(!e.to_string().contains("secret"), "userinfo redacted: {e}");
}

#[test]
fn host_port_split() {
    assert_eq!(
        split_host_port("a.example:8443", 443),
        Some(("a.example".into(), 8443))
    );
    assert_eq!(
        split_host_port("a.example", 443),
        Some(("a.example".into(), 443))
    );
    assert_eq!(
        split_host_port("[::1]:8080", 80),
        Some(("::1".into(), 8080))
    );
    assert_eq!(split_host_port("[::1]", 80), Some(("::1".into(), 80)));
    assert_eq!(split_host_port("a:b:c", 80), None);
    assert_eq!(split_host_port("a.example:x", 80), None);
}

#[test]
fn base64_matches_rfc4648() {
    for (i, o) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(i.as_bytes()), o);
    }
}

#[test]
fn empty_trust_store_is_tolerated() {
    // No system roots and no extra CA: the config builds; every upstream
    // certificate will then fail verification (fail closed).
    client_tls(false, &[]).expect("builds");
}

#[test]
fn system_roots_load_or_are_skipped() {
    // Whatever the machine's store holds (possibly nothing), building the
    // config with system roots plus an extra anchor succeeds.
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).expect("ca");
    client_tls(true, &[ca.der().clone()]).expect("builds");
}
