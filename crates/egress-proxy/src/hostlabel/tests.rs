use super::*;

#[test]
fn subdomains_are_the_labels_left_of_the_base() {
    assert_eq!(subdomain("a.b.example.test", "example.test"), Some("a.b"));
    assert_eq!(subdomain("example.test", "example.test"), None);
    assert_eq!(subdomain("barexample.test", "example.test"), None);
}

#[test]
fn data_shaped_labels_and_ordinary_ones() {
    let hex: String = "4a7f19c2e8b05d3361af9e07c4d2b88e".into();
    let b32 = "mfrggzdfmztwq2lknnwg23tpobyxe43u";
    for data in [
        hex.as_str(),
        b32,
        "x7k2m9q4w8e1r5t3y6u0p2a9s4d7f1g8.cdn",
        "mfrggzdf4nnwg23t.obyxe43uovrg2l5p.mztwq2lk",
    ] {
        assert!(looks_like_data(data), "{data}");
    }
    for ordinary in [
        "www",
        "api",
        "d111111abcdef8",
        "my-company-assets-prod",
        "feature-login-page-redesign.preview",
        "eu-west-1.s3",
        "objects",
        "3fa85f64",
    ] {
        assert!(!looks_like_data(ordinary), "{ordinary}");
    }
}

#[test]
fn decodings_include_hex_and_base32_of_labels_and_their_join() {
    let secret = b"password=hunter2";
    let hex = data_encoding::HEXLOWER.encode(secret);
    let (a, b) = hex.split_at(16);
    let doc = decodings(&format!("{a}.{b}"));
    assert!(doc.windows(secret.len()).any(|w| w == secret));
    let b32 = data_encoding::BASE32_NOPAD.encode(secret).to_lowercase();
    let doc = decodings(&b32);
    assert!(doc.windows(secret.len()).any(|w| w == secret));
}

#[test]
fn the_rate_of_new_subdomains_is_bounded_per_wildcard() {
    let w = RateWatch::default();
    let t0 = Instant::now();
    for i in 0..RATE_LIMIT {
        assert!(!w.exceeded("*.a.test", &format!("s{i}"), t0));
    }
    assert!(w.exceeded("*.a.test", "one-more", t0));
    // Known names and other wildcards are unaffected.
    assert!(!w.exceeded("*.a.test", "s3", t0));
    assert!(!w.exceeded("*.b.test", "one-more", t0));
    // The window slides.
    assert!(!w.exceeded(
        "*.a.test",
        "one-more",
        t0 + RATE_WINDOW + Duration::from_secs(1)
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn label_checks_never_panic(sub in "[a-z0-9.-]{0,200}", base in "[a-z]{1,10}\\.test") {
        let host = format!("{sub}.{base}");
        let _ = subdomain(&host, &base);
        let _ = looks_like_data(&sub);
        let _ = decodings(&sub);
    }

    #[test]
    fn hex_of_any_text_label_reads_as_data(text in "[ -~]{10,31}") {
        let hex = data_encoding::HEXLOWER.encode(text.as_bytes());
        proptest::prop_assert!(looks_like_data(&hex), "{}", hex);
    }
}
