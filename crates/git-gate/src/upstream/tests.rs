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
