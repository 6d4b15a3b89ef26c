use super::*;

fn pat(s: &str) -> Result<String, HostError> {
    HostPattern::parse(s, IpLiterals::Reject).map(|p| p.as_str().to_owned())
}

fn host(s: &str) -> RequestHost {
    RequestHost::parse(s).unwrap()
}

#[test]
fn patterns_normalise() {
    let cases = [
        ("API.GitHub.com", "api.github.com"),
        ("*.Example.COM", "*.example.com"),
        ("example.com.", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("Git-Gate", "git-gate"),
        ("egress", "egress"),
        ("*.github.com", "*.github.com"),
        ("*.s3.example.test", "*.s3.example.test"),
        ("*.bucket.s3.amazonaws.com", "*.bucket.s3.amazonaws.com"),
    ];
    for (input, want) in cases {
        assert_eq!(pat(input).as_deref(), Ok(want), "{input}");
    }
}

#[test]
fn bad_patterns_say_why() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("https://api.github.com/x", "scheme"),
        ("api.github.com:443", "port"),
        ("api.github.com/repos", "path"),
        ("user@api.github.com", "userinfo"),
        ("*", "bare wildcard"),
        ("*example.com", "misplaced wildcard"),
        ("a.*.com", "misplaced wildcard"),
        ("foo*.com", "misplaced wildcard"),
        ("10.0.0.1", "IP literal"),
        ("[::1]", "IP literal"),
        ("a..b", "empty label"),
        (".a.b", "empty label"),
        ("*.com", "top-level"),
        ("-a.com", "hyphen"),
        ("a_b.com", "not allowed"),
        ("1.2.3.999", "numeric"),
        ("localhost", "single-label"),
        ("intranet", "single-label"),
        ("*.github.io", "public suffix"),
        ("*.co.uk", "public suffix"),
        ("*.amazonaws.com", "public suffix"),
        ("*.s3.amazonaws.com", "public suffix"),
        ("*.GitHubUserContent.com", "public suffix"),
        ("*.herokuapp.com", "public suffix"),
    ];
    for (input, want) in cases {
        let err = pat(input).unwrap_err().to_string();
        assert!(err.contains(want), "{input:?}: {err}");
    }
}

#[test]
fn ip_literals_when_allowed() {
    let p = HostPattern::parse("[::1]", IpLiterals::Allow).unwrap();
    assert_eq!(p.as_str(), "::1");
    assert!(p.matches(&host("[::1]")));
    assert!(
        HostPattern::parse("10.0.0.1", IpLiterals::Allow)
            .unwrap()
            .is_ip()
    );
}

#[test]
fn wildcard_matching() {
    let w = HostPattern::parse("*.example.com", IpLiterals::Reject).unwrap();
    for ok in [
        "example.com",
        "a.example.com",
        "a.b.example.com",
        "A.EXAMPLE.COM.",
    ] {
        assert!(w.matches(&host(ok)), "{ok}");
    }
    for bad in ["barexample.com", "example.com.evil", "xample.com", "com"] {
        assert!(!w.matches(&host(bad)), "{bad}");
    }
    let e = HostPattern::parse("example.com", IpLiterals::Reject).unwrap();
    assert!(e.matches(&host("EXAMPLE.com")));
    assert!(!e.matches(&host("a.example.com")));
}
