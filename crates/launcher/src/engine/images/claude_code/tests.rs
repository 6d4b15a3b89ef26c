use std::io::Write as _;

use proptest::prelude::*;

use super::*;

/// One tar member: path, type, mode, contents (a link's target for links).
type Member<'a> = (&'a str, tar::EntryType, u32, &'a [u8]);

fn tgz(members: &[Member<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, mode, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_mtime(0);
        if kind.is_symlink() || kind.is_hard_link() {
            h.set_size(0);
            b.append_link(&mut h, path, std::str::from_utf8(data).expect("utf8"))
                .expect("append link");
        } else {
            // Raw names: `append_data` would refuse `..` and absolute paths.
            h.as_gnu_mut().expect("gnu").name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
    }
    gzip(&b.into_inner().expect("tar"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

const FILE: tar::EntryType = tar::EntryType::Regular;
const DIR: tar::EntryType = tar::EntryType::Directory;
const PJ: &[u8] =
    br#"{"name":"@anthropic-ai/claude-code","version":"2.0.14","bin":{"claude":"cli.js"}}"#;

/// A well-formed package plus `extra` members.
fn package_with(extra: &[Member<'_>]) -> Vec<u8> {
    let mut m: Vec<Member<'_>> = vec![
        ("package/package.json", FILE, 0o644, PJ),
        ("package/cli.js", FILE, 0o644, b"#!/usr/bin/env node\n"),
    ];
    m.extend_from_slice(extra);
    tgz(&m)
}

#[test]
fn a_packed_package_is_accepted_with_its_version_hash_and_bin() {
    let bytes = package_with(&[
        ("package/", DIR, 0o755, b""),
        ("package/vendor/rg", FILE, 0o755, b"\x7fELF"),
    ]);
    let p = parse(&bytes).expect("valid");
    assert_eq!(p.version, "2.0.14");
    assert_eq!(p.bin, "cli.js");
    assert_eq!(p.sha256, format!("{:x}", Sha256::digest(&bytes)));
    assert_eq!(p.file_count(), 3);
}

#[test]
fn bin_paths_with_dot_slash_are_normalised() {
    let pj = br#"{"name":"@anthropic-ai/claude-code","version":"1.0.0","bin":{"claude":"./bin/claude.js"}}"#;
    let bytes = tgz(&[
        ("package/package.json", FILE, 0o644, pj),
        ("package/bin/claude.js", FILE, 0o644, b"x"),
    ]);
    assert_eq!(parse(&bytes).expect("valid").bin, "bin/claude.js");
}

/// Each bad tarball and the words its error must contain.
#[test]
fn bad_tarballs_are_refused_naming_what_is_wrong() {
    let check = |bytes: Vec<u8>, expect: &str| {
        let err = parse(&bytes).expect_err(expect).to_string();
        assert!(err.contains(expect), "{err:?} lacks {expect:?}");
    };
    check(b"not gzip at all".to_vec(), "not a gzip-compressed tar");
    check(
        gzip(b"gzip but not a tar archive, just text"),
        "not a gzip-compressed tar",
    );
    check(gzip(&[0u8; 1024]), "no package/package.json");
    check(
        tgz(&[("package/cli.js", FILE, 0o644, b"x")]),
        "no package/package.json",
    );
    check(
        tgz(&[("package/package.json", FILE, 0o644, b"{not json")]),
        "not valid JSON",
    );
    check(
        tgz(&[(
            "package/package.json",
            FILE,
            0o644,
            br#"{"name":"left-pad","version":"1.0.0","bin":{"claude":"x"}}"#,
        )]),
        "names \"left-pad\"",
    );
    check(
        tgz(&[(
            "package/package.json",
            FILE,
            0o644,
            br#"{"name":"@anthropic-ai/claude-code","version":"1.0.0 && rm","bin":{"claude":"x"}}"#,
        )]),
        "version",
    );
    check(
        tgz(&[(
            "package/package.json",
            FILE,
            0o644,
            br#"{"name":"@anthropic-ai/claude-code","version":"1.0.0","bin":"cli.js"}"#,
        )]),
        "bin.claude",
    );
    check(
        tgz(&[("package/package.json", FILE, 0o644, br#"{"name":"@anthropic-ai/claude-code","version":"1.0.0","bin":{"claude":"missing.js"}}"#)]),
        "\"missing.js\", which is not a file",
    );
    check(
        tgz(&[("package/package.json", FILE, 0o644, br#"{"name":"@anthropic-ai/claude-code","version":"1.0.0","bin":{"claude":"../../etc/passwd"}}"#)]),
        "not a file",
    );
    check(
        package_with(&[("other/x", FILE, 0o644, b"")]),
        "outside package/",
    );
    check(
        package_with(&[("package/../x", FILE, 0o644, b"")]),
        "not a plain relative path",
    );
    check(
        package_with(&[("package/a/./b", FILE, 0o644, b"")]),
        "not a plain relative path",
    );
    check(
        package_with(&[("/package/x", FILE, 0o644, b"")]),
        "outside package/",
    );
    check(
        package_with(&[(
            "package/link",
            tar::EntryType::Symlink,
            0o777,
            b"/etc/shadow",
        )]),
        "only regular files and directories",
    );
    check(
        package_with(&[(
            "package/hard",
            tar::EntryType::Link,
            0o644,
            b"package/cli.js",
        )]),
        "only regular files and directories",
    );
    check(
        package_with(&[("package/cli.js", FILE, 0o644, b"again")]),
        "appears twice",
    );
    check(
        package_with(&[("package/cli.js/inner", FILE, 0o644, b"")]),
        "appears twice",
    );
}

#[test]
fn the_overlay_puts_the_package_under_node_modules_and_links_claude() {
    let p = parse(&package_with(&[("package/lib/x.js", FILE, 0o600, b"x")])).expect("valid");
    let mut b = tar::Builder::new(Vec::new());
    p.append_to(&mut b).expect("overlay");
    let tar = b.into_inner().expect("tar");
    let mut seen = BTreeMap::new();
    for e in tar::Archive::new(tar.as_slice())
        .entries()
        .expect("entries")
    {
        let e = e.expect("entry");
        let h = e.header();
        let link = e
            .link_name()
            .expect("link")
            .map(|l| l.display().to_string());
        seen.insert(
            e.path().expect("path").display().to_string(),
            (
                h.entry_type(),
                h.mode().expect("mode"),
                h.uid().expect("uid"),
                link,
            ),
        );
    }
    let root = "claude-code/usr/local/lib/node_modules/@anthropic-ai/claude-code";
    assert_eq!(
        seen[&format!("{root}/cli.js")].1,
        0o755,
        "the bin is executable"
    );
    assert_eq!(seen[&format!("{root}/package.json")].1, 0o644);
    assert_eq!(
        seen[&format!("{root}/lib/x.js")].1,
        0o644,
        "modes are normalised"
    );
    assert_eq!(seen[&format!("{root}/lib/")].1, 0o755);
    assert_eq!(
        seen["claude-code/usr/local/bin/claude"],
        (
            tar::EntryType::Symlink,
            0o777,
            0,
            Some(format!("{INSTALL_DIR}/cli.js"))
        )
    );
    assert!(seen.values().all(|(_, _, uid, _)| *uid == 0), "root-owned");
    assert!(seen.contains_key("claude-code/"));
}

#[test]
fn the_source_is_the_flag_then_the_environment_then_the_registry() {
    let env = |v: &'static str| move |k: &str| (k == ENV).then(|| v.to_owned());
    let none = |_: &str| None;
    assert_eq!(Source::from_flag_or_env(None, none), Source::Registry);
    assert_eq!(Source::from_flag_or_env(None, env("")), Source::Registry);
    assert_eq!(
        Source::from_flag_or_env(None, env("/x/cc.tgz")),
        Source::Tarball("/x/cc.tgz".into())
    );
    assert_eq!(Source::from_flag_or_env(None, env("none")), Source::Skip);
    assert_eq!(
        Source::from_flag_or_env(Some(Path::new("/f.tgz")), env("none")),
        Source::Tarball("/f.tgz".into())
    );
    assert_eq!(
        Source::from_flag_or_env(Some(Path::new("none")), env("/x.tgz")),
        Source::Skip
    );
}

#[test]
fn a_missing_file_names_the_path() {
    let err = read(Path::new("/nonexistent/claude-code.tgz")).expect_err("missing");
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/claude-code.tgz") && text.contains("cannot read it"),
        "{text}"
    );
    assert!(
        text.contains("npm pack @anthropic-ai/claude-code"),
        "{text}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any entry name either lands strictly inside the package, as plain
    /// parts, or the tarball is refused: nothing escapes the install dir.
    #[test]
    fn no_entry_name_escapes_the_package(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("..".to_owned()), Just(".".to_owned()), Just(String::new()),
                Just("package".to_owned()), Just("/".to_owned()), Just("\\".to_owned()),
                "[a-z.]{1,6}",
            ],
            1..6,
        )
    ) {
        let name = parts.join("/");
        prop_assume!(!name.is_empty() && name.len() < 100);
        let bytes = package_with(&[(name.as_str(), FILE, 0o644, b"x")]);
        if let Ok(p) = parse(&bytes) {
            for rel in p.entries.keys() {
                prop_assert!(!rel.starts_with('/'));
                prop_assert!(rel.split('/').all(|c| !c.is_empty() && c != "." && c != ".."), "{rel}");
            }
        }
    }

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn arbitrary_bytes_are_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes);
        let _ = parse(&gzip(&bytes));
    }
}
