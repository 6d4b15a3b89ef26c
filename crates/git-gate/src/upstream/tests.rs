use super::{Secret, Upstream, base64};

#[test]
fn base64_matches_rfc4648_vectors() {
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
fn credentials_travel_only_in_git_config_env() {
    let u = Upstream {
        url: "https://git.example/a.git".into(),
        auth: Some(("x-access-token".into(), Secret::new("tok3n"))),
        ca: None,
    };
    let env = u.git_env();
    let header = env
        .iter()
        .find(|(_, v)| v.starts_with("Authorization: Basic "))
        .map(|(_, v)| v.clone());
    assert_eq!(
        header.as_deref(),
        Some("Authorization: Basic eC1hY2Nlc3MtdG9rZW46dG9rM24=")
    );
    assert!(
        env.iter()
            .any(|(k, v)| k.starts_with("GIT_CONFIG_KEY_") && v == "http.followRedirects")
    );
    assert!(!format!("{u:?}").contains("tok3n"));
    assert_eq!(
        u.scrub("saw tok3n and eC1hY2Nlc3MtdG9rZW46dG9rM24= here"),
        "saw *** and *** here"
    );
}

#[test]
fn the_trust_bundle_is_the_system_roots_plus_the_extra_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = dir.path().join("extra.pem");
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    std::fs::write(&extra, pem).expect("write");
    let out = dir.path().join("bundle.pem");
    super::write_trust_bundle(&extra, &out).expect("bundle");
    let bundle = std::fs::read_to_string(&out).expect("read");
    assert!(bundle.ends_with(pem), "the extra CA comes last");
    if let Some(system) = super::SYSTEM_CA_BUNDLES
        .iter()
        .find(|p| std::path::Path::new(p).is_file())
    {
        let roots = std::fs::read_to_string(system).expect("read roots");
        assert!(bundle.starts_with(roots.trim_end()), "system roots first");
    }
    std::fs::write(&extra, "not a certificate").expect("write");
    let err = super::write_trust_bundle(&extra, &out).expect_err("no PEM");
    assert!(err.contains("no PEM certificate"), "{err}");
}
