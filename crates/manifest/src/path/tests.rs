use super::*;

#[test]
fn normalisation_table() {
    let cases = [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a//b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/a/b/..", "/a/"),
        ("/../../etc", "/etc"),
        ("/a/%2e%2e/b", "/b"),
        ("/a/%2E./b", "/b"),
        ("/%7Euser", "/~user"),
        ("/a%2fb", "/a%2Fb"),
        ("/a/", "/a/"),
        ("//", "/"),
    ];
    for (input, want) in cases {
        assert_eq!(normalize_path(input).as_deref(), Ok(want), "{input}");
    }
}

#[test]
fn bad_paths() {
    assert!(matches!(
        normalize_path("a/b"),
        Err(PathError::NotAbsolute(_))
    ));
    assert!(matches!(
        normalize_path("/a%zz"),
        Err(PathError::BadEscape(_))
    ));
    assert!(matches!(
        normalize_path("/a%2"),
        Err(PathError::BadEscape(_))
    ));
    assert!(matches!(
        normalize_path("/a\\b"),
        Err(PathError::BadChar(..))
    ));
}

#[test]
fn prefixes_match_on_segment_boundaries() {
    let p = PathPrefix::parse("/repos/acme").unwrap();
    let q = PathPrefix::parse("/repos/acme/").unwrap();
    for pre in [&p, &q] {
        assert!(pre.allows("/repos/acme"));
        assert!(pre.allows("/repos/acme/x"));
        assert!(!pre.allows("/repos/acmeevil"));
        assert!(!pre.allows(&normalize_path("/repos/acme/../other").unwrap()));
    }
    assert!(PathPrefix::parse("/").unwrap().allows("/anything"));
}

#[test]
fn prefixes_must_be_normalised() {
    let err = PathPrefix::parse("/a/../b").unwrap_err().to_string();
    assert!(err.contains("write \"/b\""), "{err}");
    assert!(PathPrefix::parse("relative").is_err());
    assert!(PathPrefix::parse("/a?x=1").is_err());
}
