use super::*;

const DEB822: &str = "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n";

#[test]
fn deb822_picks_the_paragraph_serving_the_suite() {
    assert_eq!(
        mirror_from_deb822(DEB822, "bookworm").as_deref(),
        Some("http://mirror.invalid/debian")
    );
    assert_eq!(
        mirror_from_deb822(DEB822, "bookworm-security").as_deref(),
        Some("http://mirror.invalid/debian-security")
    );
    assert_eq!(mirror_from_deb822(DEB822, "trixie"), None);
}

#[test]
fn deb822_skips_disabled_and_source_only_paragraphs() {
    let text = "Types: deb-src\nURIs: http://src.invalid/debian\nSuites: bookworm\n\nEnabled: no\nTypes: deb\nURIs: http://off.invalid/debian\nSuites: bookworm\n\nTypes: deb\nURIs: cdrom:/x http://on.invalid/debian\nSuites: bookworm\n";
    assert_eq!(
        mirror_from_deb822(text, "bookworm").as_deref(),
        Some("http://on.invalid/debian")
    );
}

#[test]
fn one_line_format_with_and_without_options() {
    let text = "# comment\ndeb-src http://src.invalid/debian bookworm main\ndeb [arch=amd64 signed-by=/x.gpg] http://a.invalid/debian bookworm main\ndeb http://b.invalid/debian bookworm main\n";
    assert_eq!(
        mirror_from_list(text, "bookworm").as_deref(),
        Some("http://a.invalid/debian")
    );
    assert_eq!(
        mirror_from_list(
            "deb http://b.invalid/debian bookworm-updates main",
            "bookworm"
        ),
        None
    );
}

#[test]
fn host_mirror_reads_a_fake_root_and_names_what_it_searched() {
    let root = tempfile::tempdir().expect("tempdir");
    let err = host_mirror(root.path(), "bookworm").expect_err("empty root");
    assert!(
        err.to_string().contains("\"bookworm\"") && err.to_string().contains("sources.list"),
        "{err}"
    );

    std::fs::create_dir_all(root.path().join("etc/apt/sources.list.d")).expect("mkdir");
    std::fs::write(
        root.path().join("etc/apt/sources.list"),
        "deb http://list.invalid/debian bookworm main\n",
    )
    .expect("write");
    assert_eq!(
        host_mirror(root.path(), "bookworm").expect("list"),
        "http://list.invalid/debian"
    );
    std::fs::write(
        root.path().join("etc/apt/sources.list.d/debian.sources"),
        DEB822,
    )
    .expect("write");
    assert_eq!(
        host_mirror(root.path(), "bookworm").expect("deb822 first"),
        "http://mirror.invalid/debian"
    );
}
