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

/// Answers the first lookup with `first` and every later one with `later`,
/// counting lookups: a rebinding DNS server in miniature.
#[derive(Debug)]
struct Rebinding {
    first: SocketAddr,
    later: SocketAddr,
    lookups: std::sync::atomic::AtomicUsize,
}

impl Resolver for Rebinding {
    fn resolve(&self, _host: &str, _port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let n = self
            .lookups
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let addr = if n == 0 { self.first } else { self.later };
        Box::pin(async move { Ok(vec![addr]) })
    }
}

fn connector(resolver: Arc<Rebinding>, policy: AddressPolicy) -> Connector {
    let tls = client_tls(false, &[]).expect("tls config");
    Connector::new(resolver, tls, None, Duration::from_secs(5), policy)
}

/// One connection decision, one lookup: the address that was checked is
/// the address that is dialled, whatever DNS says afterwards.
#[tokio::test]
async fn one_lookup_per_connection_and_the_checked_address_is_dialled() {
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resolver = Arc::new(Rebinding {
        first: a.local_addr().unwrap(),
        later: b.local_addr().unwrap(),
        lookups: Default::default(),
    });
    let c = connector(resolver.clone(), AddressPolicy::AllowPrivate);
    let s = c
        .connect("http://rebind.test/".parse().unwrap())
        .await
        .expect("connects");
    let UpstreamStream::Tcp(tcp) = s else {
        panic!("plain http is TCP")
    };
    assert_eq!(tcp.peer_addr().unwrap(), a.local_addr().unwrap());
    assert_eq!(
        resolver.lookups.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let accepted = tokio::time::timeout(Duration::from_secs(5), a.accept()).await;
    assert!(accepted.is_ok(), "the vetted address got the connection");
    let other = tokio::time::timeout(Duration::from_millis(200), b.accept()).await;
    assert!(other.is_err(), "the rebound address was never dialled");
}

/// A name that first resolves inside is refused on that one answer, with
/// no further lookup and no connection attempt.
#[tokio::test]
async fn an_inside_answer_is_refused_without_a_second_lookup() {
    let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resolver = Arc::new(Rebinding {
        first: "127.0.0.2:9".parse().unwrap(),
        later: b.local_addr().unwrap(),
        lookups: Default::default(),
    });
    let c = connector(resolver.clone(), AddressPolicy::GlobalOnly);
    let err = c
        .connect("https://rebind.test/".parse().unwrap())
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, ConnectError::NotGlobal { addr, .. } if addr.class == crate::addr::AddrClass::Loopback),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "rebind.test resolves to 127.0.0.2, a loopback address"
    );
    assert_eq!(
        resolver.lookups.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // And with many connections, still one lookup each.
    for _ in 0..3 {
        let _ = c.connect("https://rebind.test/".parse().unwrap()).await;
    }
    assert_eq!(
        resolver.lookups.load(std::sync::atomic::Ordering::SeqCst),
        4
    );
}

/// Through a parent proxy an IP-literal target is still checked here (the
/// parent's own address is the operator's and is not).
#[tokio::test]
async fn parent_proxy_literal_targets_are_checked() {
    let parent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = client_tls(false, &[]).expect("tls config");
    let proxy = UpstreamProxy::parse(&format!("http://{}", parent.local_addr().unwrap())).unwrap();
    let c = Connector::new(
        Arc::new(crate::resolve::StaticResolver::default()),
        tls,
        Some(proxy),
        Duration::from_secs(5),
        AddressPolicy::GlobalOnly,
    );
    let err = c
        .connect("https://10.1.2.3/".parse().unwrap())
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("private address"), "{err}");
    let nothing = tokio::time::timeout(Duration::from_millis(200), parent.accept()).await;
    assert!(nothing.is_err(), "the parent was not asked");
}
