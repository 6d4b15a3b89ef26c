use std::io::Read as _;

use super::*;

fn entry(path: &str, mode: u32, uid: u64, contents: &str) -> FileEntry {
    FileEntry {
        path: path.into(),
        mode,
        uid,
        gid: uid,
        contents: contents.as_bytes().to_vec(),
    }
}

#[test]
fn entries_carry_the_stated_mode_and_owner_not_the_hosts() {
    let tar = build(&[
        entry(
            "/etc/egress-proxy/routes.yaml",
            0o644,
            10001,
            "routes: []\n",
        ),
        entry("/etc/egress-proxy/ca.key", 0o400, 10001, "KEY"),
    ])
    .expect("build");
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut seen = Vec::new();
    for e in archive.entries().expect("entries") {
        let mut e = e.expect("entry");
        let h = e.header().clone();
        let mut body = String::new();
        e.read_to_string(&mut body).expect("read");
        seen.push((
            e.path().expect("path").display().to_string(),
            h.mode().expect("mode"),
            h.uid().expect("uid"),
            h.gid().expect("gid"),
            body,
        ));
    }
    assert_eq!(
        seen,
        vec![
            (
                "etc/egress-proxy/routes.yaml".into(),
                0o644,
                10001,
                10001,
                "routes: []\n".into()
            ),
            (
                "etc/egress-proxy/ca.key".into(),
                0o400,
                10001,
                10001,
                "KEY".into()
            ),
        ]
    );
}

#[test]
fn bad_paths_are_refused_with_the_path_named() {
    for bad in [
        "relative/x",
        "/",
        "/etc/../x",
        "/etc/./x",
        "/etc//x",
        "/etc/x/",
        "",
    ] {
        let err = build(&[entry(bad, 0o644, 0, "")]).expect_err(bad);
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
}

#[test]
fn a_mode_beyond_permission_bits_is_refused() {
    let err = build(&[entry("/x", 0o100644, 0, "")]).expect_err("mode");
    assert!(err.to_string().contains("100644"), "{err}");
}

#[test]
fn debug_does_not_print_contents() {
    let dbg = format!("{:?}", entry("/k", 0o400, 1, "SECRET-KEY"));
    assert!(
        !dbg.contains("SECRET-KEY") && dbg.contains("bytes"),
        "{dbg}"
    );
}
