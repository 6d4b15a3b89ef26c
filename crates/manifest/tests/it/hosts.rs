use manifest::{HostPattern, IpLiterals, RequestHost};
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,6}"
}

fn domain() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 2..4).prop_map(|l| l.join("."))
}

/// A domain a wildcard may cover: random labels can spell a public
/// suffix (`co.uk`), which wildcards refuse; those are left out here.
fn wildcard_base() -> impl Strategy<Value = String> {
    domain().prop_filter("not a public registry", |d| {
        HostPattern::parse(&format!("*.{d}"), IpLiterals::Reject).is_ok()
    })
}

/// Text glued onto an apex without a dot (`bar` + `example.com`). Hyphens
/// in the third and fourth place are left out: `xn--` + `example` is not
/// valid punycode, and IDNA rightly rejects such a label before any
/// matching happens (`unglued_punycode_is_rejected` below covers that).
fn glue() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?".prop_filter("hyphens in the third and fourth place", |g| {
        g.get(2..4) != Some("--")
    })
}

/// Randomly upper-cases ASCII letters.
fn recase(s: &str, mask: &[bool]) -> String {
    s.chars()
        .zip(mask.iter().cycle())
        .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn exact_matching_is_case_insensitive(d in domain(), m1 in prop::collection::vec(any::<bool>(), 1..8), m2 in prop::collection::vec(any::<bool>(), 1..8)) {
        let pat = HostPattern::parse(&recase(&d, &m1), IpLiterals::Reject).unwrap();
        let host = RequestHost::parse(&recase(&d, &m2)).unwrap();
        prop_assert!(pat.matches(&host));
        prop_assert_eq!(pat.as_str(), d.as_str());
    }

    #[test]
    fn wildcard_matches_apex_and_subdomains(d in wildcard_base(), subs in prop::collection::vec(label(), 0..3), m in prop::collection::vec(any::<bool>(), 1..8)) {
        let pat = HostPattern::parse(&format!("*.{}", recase(&d, &m)), IpLiterals::Reject).unwrap();
        let mut host = subs.join(".");
        if !host.is_empty() { host.push('.'); }
        host.push_str(&d);
        prop_assert!(pat.matches(&RequestHost::parse(&recase(&host, &m)).unwrap()));
    }

    #[test]
    fn wildcard_never_crosses_a_label_boundary(d in wildcard_base(), glue in glue(), sub in proptest::option::of(label())) {
        // `glue` is glued onto the apex without a dot: barexample.com
        let pat = HostPattern::parse(&format!("*.{d}"), IpLiterals::Reject).unwrap();
        let mut host = String::new();
        if let Some(s) = sub { host.push_str(&s); host.push('.'); }
        host.push_str(&glue);
        host.push_str(&d);
        let h = RequestHost::parse(&host).unwrap();
        prop_assert!(!pat.matches(&h), "{} matched {}", pat, h);
        // and an exact pattern never matches a different name either
        let exact = HostPattern::parse(&d, IpLiterals::Reject).unwrap();
        prop_assert!(!exact.matches(&h));
    }

    #[test]
    fn exact_never_matches_a_subdomain(d in domain(), sub in label()) {
        let exact = HostPattern::parse(&d, IpLiterals::Reject).unwrap();
        let h = RequestHost::parse(&format!("{sub}.{d}")).unwrap();
        prop_assert!(!exact.matches(&h));
    }

    #[test]
    fn wildcards_over_public_suffixes_are_refused(
        suffix in prop::sample::select(vec!["github.io", "co.uk", "herokuapp.com", "s3.amazonaws.com", "amazonaws.com", "appspot.com", "com.au", "blogspot.com"]),
        name in "[a-z][a-z0-9]{2,8}",
        m in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        let refused = HostPattern::parse(&format!("*.{}", recase(suffix, &m)), IpLiterals::Reject);
        prop_assert!(matches!(refused, Err(manifest::HostError::PublicSuffixWildcard(..))), "{suffix}: {refused:?}");
        // Exact names under it are fine: one registrant each.
        let exact = format!("{name}.{suffix}");
        prop_assert!(HostPattern::parse(&exact, IpLiterals::Reject).is_ok(), "{}", exact);
    }

    #[test]
    fn single_labels_are_refused_except_sidecars(l in label(), m in prop::collection::vec(any::<bool>(), 1..8)) {
        let r = HostPattern::parse(&recase(&l, &m), IpLiterals::Reject);
        if manifest::host::SIDECAR_NAMES.contains(&l.as_str()) {
            prop_assert!(r.is_ok());
        } else {
            prop_assert!(matches!(r, Err(manifest::HostError::SingleLabel(_))), "{l}: {r:?}");
        }
    }

    #[test]
    fn host_parsers_never_panic(s in "\\PC{0,40}") {
        let _ = HostPattern::parse(&s, IpLiterals::Allow);
        let _ = HostPattern::parse(&s, IpLiterals::Reject);
        let _ = RequestHost::parse(&s);
    }

    #[test]
    fn parsed_patterns_reparse_to_themselves(s in "[*.a-zA-Z0-9:/@\\[\\]-]{1,30}") {
        if let Ok(p) = HostPattern::parse(&s, IpLiterals::Allow) {
            prop_assert_eq!(HostPattern::parse(p.as_str(), IpLiterals::Allow).unwrap(), p);
        }
    }
}

/// Found by `host_parsers_never_panic`: an unclosed IPv6 bracket in a
/// URL-looking host made the port stripper slice past the end.
#[test]
fn unclosed_brackets_are_errors_not_panics() {
    for s in ["[/", "http://[::1", "[🕴:x/", "u@[", "[:80"] {
        assert!(HostPattern::parse(s, IpLiterals::Allow).is_err(), "{s}");
    }
}

/// Found by `wildcard_never_crosses_a_label_boundary` in CI: gluing `xn--m`
/// onto `mblrr51.kdx9` makes a label that is not valid punycode. Such a
/// request host must be refused outright, never matched.
#[test]
fn unglued_punycode_is_rejected() {
    for bad in [
        "xn--mmblrr51.kdx9",
        "gz4hz1.xn--mgblrr51.kdx9",
        "xn--.example.com",
    ] {
        assert!(RequestHost::parse(bad).is_err(), "{bad} parsed");
        assert!(
            HostPattern::parse(bad, IpLiterals::Reject).is_err(),
            "{bad} parsed as a pattern"
        );
    }
}
