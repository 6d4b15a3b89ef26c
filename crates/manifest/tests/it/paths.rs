use manifest::path::{PathPrefix, normalize_path};
use manifest::{HostPattern, IpLiterals, Route};
use proptest::prelude::*;

/// Path segments chosen to attack a prefix: dot segments in plain and
/// encoded forms, empty segments, encoded separators and look-alikes.
fn segment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "repos",
        "acme",
        "acmeevil",
        "other",
        "x",
        "",
        ".",
        "..",
        "%2e",
        "%2E%2e",
        "%2e%2e",
        ".%2e",
        "%2F",
        "%2f..",
        "%5C",
        "%61cme",
        "a%2Fb",
        "...",
        "~",
        "%7E",
        "..;",
        "..;x",
        "acme;x",
        ";",
        ".;",
        "%3B",
        "..%3b",
        "repos;a=b",
    ])
}

fn raw_path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..8).prop_map(|s| format!("/{}", s.join("/")))
}

/// How a parameter-stripping upstream reads a path: each segment cut at
/// `;` (or `%3B`), then dot segments resolved.
fn strip_params(p: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for seg in p.split('/').filter(|s| !s.is_empty()) {
        let upper = seg.to_ascii_uppercase();
        let cut = [seg.find(';'), upper.find("%3B")]
            .into_iter()
            .flatten()
            .min();
        let seg = &seg[..cut.unwrap_or(seg.len())];
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_owned()),
        }
    }
    format!("/{}", out.join("/"))
}

fn segments(p: &str) -> Vec<&str> {
    p.split('/').filter(|s| !s.is_empty()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn nothing_escapes_a_prefix(raw in raw_path(), prefix in prop::sample::select(vec!["/repos/acme", "/repos/acme/", "/repos", "/"])) {
        let mut route = Route::bare(HostPattern::parse("api.example.com", IpLiterals::Reject).unwrap());
        route.path_allowlist = vec![PathPrefix::parse(prefix).unwrap()];
        if let Ok(norm) = normalize_path(&raw)
            && route.allows_path(&norm)
        {
            {
                // Independent check: the normalised path's segments start
                // with the prefix's segments, and it holds no dot segment
                // or encoded separator that an upstream could resolve.
                let (ps, ns) = (segments(prefix), segments(&norm));
                prop_assert!(ns.len() >= ps.len() && ns[..ps.len()] == ps[..], "{raw} -> {norm} passed {prefix}");
                prop_assert!(!ns.iter().any(|s| *s == "." || *s == ".."), "{norm}");
                prop_assert!(!norm.to_ascii_uppercase().contains("%2F") && !norm.to_ascii_uppercase().contains("%5C"), "{norm}");
                // An upstream that strips `;params` from segments (Tomcat,
                // Spring) must see a path under the prefix too.
                let stripped = strip_params(&norm);
                let ss = segments(&stripped);
                prop_assert!(ss.len() >= ps.len() && ss[..ps.len()] == ps[..], "{raw} -> {norm} reads as {stripped} upstream, outside {prefix}");
            }
        }
    }

    #[test]
    fn normalisation_is_idempotent_and_clean(raw in raw_path()) {
        if let Ok(norm) = normalize_path(&raw) {
            prop_assert!(norm.starts_with('/'));
            prop_assert!(!norm.contains("//"), "{norm}");
            prop_assert!(!segments(&norm).iter().any(|s| *s == "." || *s == ".."), "{norm}");
            prop_assert!(!norm.to_ascii_lowercase().contains("%2e"), "{norm}");
            prop_assert_eq!(normalize_path(&norm).unwrap(), norm.clone());
            // a normalised path is a valid prefix of itself
            prop_assert!(PathPrefix::parse(&norm).unwrap().allows(&norm));
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries(a in "[a-z]{1,5}", b in "[a-z]{1,5}", tail in "[a-z]{1,5}") {
        let p = PathPrefix::parse(&format!("/{a}/{b}")).unwrap();
        let (same, below, glued) = (format!("/{a}/{b}"), format!("/{a}/{b}/{tail}"), format!("/{a}/{b}{tail}"));
        prop_assert!(p.allows(&same));
        prop_assert!(p.allows(&below));
        prop_assert!(!p.allows(&glued));
    }

    #[test]
    fn normalize_never_panics(s in "\\PC{0,60}") {
        let _ = normalize_path(&s);
        let _ = PathPrefix::parse(&s);
    }
}
