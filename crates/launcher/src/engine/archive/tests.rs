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

/// (path, mode, uid, contents) of each entry.
type Listing = Vec<(String, u32, u64, String)>;

fn entries(tar: &[u8]) -> Listing {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(tar);
    for e in archive.entries().expect("entries") {
        let mut e = e.expect("entry");
        let h = e.header().clone();
        let mut body = String::new();
        let _ = e.read_to_string(&mut body);
        out.push((
            e.path().expect("path").display().to_string(),
            h.mode().expect("mode"),
            h.uid().expect("uid"),
            body,
        ));
    }
    out
}

#[test]
fn reroot_splits_by_the_deepest_writable_mount() {
    let tar = build(&[
        entry("/etc/egress-proxy/routes.yaml", 0o644, 10001, "r"),
        entry(
            "/var/lib/egress-proxy/tokens/EGRESS_TOKEN_1",
            0o400,
            10001,
            "t",
        ),
        entry("/etc/egress-proxy/sub/x", 0o600, 10001, "x"),
    ])
    .expect("build");
    let roots = vec![
        "/etc/egress-proxy".to_owned(),
        "/var/lib/egress-proxy/tokens".to_owned(),
        "/var/lib".to_owned(),
    ];
    let parts = reroot(&tar, &roots).expect("reroot");
    let got: Vec<(String, Listing)> = parts
        .iter()
        .map(|(root, t)| (root.clone(), entries(t)))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "/etc/egress-proxy".to_owned(),
                vec![
                    ("routes.yaml".to_owned(), 0o644, 10001, "r".to_owned()),
                    ("sub/x".to_owned(), 0o600, 10001, "x".to_owned()),
                ]
            ),
            (
                "/var/lib/egress-proxy/tokens".to_owned(),
                vec![("EGRESS_TOKEN_1".to_owned(), 0o400, 10001, "t".to_owned())]
            ),
        ]
    );
    let err = reroot(&tar, &["/var/lib/egress-proxy/tokens".to_owned()]).expect_err("unwritable");
    assert!(
        err.to_string().contains("/etc/egress-proxy/routes.yaml")
            && err.to_string().contains("read-only"),
        "{err}"
    );
    // A mount point is never a file's own path.
    let err = reroot(
        &tar,
        &[
            "/etc/egress-proxy/routes.yaml".to_owned(),
            "/var/lib".to_owned(),
        ],
    )
    .expect_err("file root");
    assert!(err.to_string().contains("routes.yaml"), "{err}");
}

#[test]
fn a_single_file_is_read_back_bounded() {
    let tar =
        build(&[entry("/etc/ssl/certs/ca-certificates.crt", 0o644, 0, "PEM")]).expect("build");
    assert_eq!(
        single_file(&tar, "/x", 1024).expect("file"),
        Fetched::File(b"PEM".to_vec())
    );
    let err = single_file(&tar, "/x", 2).expect_err("too large");
    assert!(err.to_string().contains("larger than 2 bytes"), "{err}");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "ca-certificates.crt", "/etc/pki/bundle.pem")
        .expect("link");
    let link = b.into_inner().expect("tar");
    assert_eq!(
        single_file(&link, "/x", 1024).expect("link"),
        Fetched::Symlink("/etc/pki/bundle.pem".into())
    );
    assert_eq!(single_file(&[], "/x", 1024).expect("empty"), Fetched::Other);
}

#[tokio::test]
async fn a_directory_streams_with_the_agents_owner_and_no_setuid() {
    use futures_util::StreamExt as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("a/b")).expect("dirs");
    std::fs::write(root.join("a/b/f.txt"), "hello").expect("file");
    std::fs::write(root.join("run.sh"), "#!/bin/sh\n").expect("file");
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o4755))
        .expect("mode");
    std::os::unix::fs::symlink("/etc/passwd", root.join("link")).expect("symlink");
    let (stream, done) = stream_directory(root.to_owned(), "workspace".into(), 1000, 1000);
    let chunks: Vec<bytes::Bytes> = stream.map(|c| c.expect("chunk")).collect().await;
    let stats = done.await.expect("join").expect("copied");
    assert_eq!((stats.files, stats.dirs, stats.symlinks), (2, 3, 1));
    let tar: Vec<u8> = chunks.concat();
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut seen = Vec::new();
    for e in archive.entries().expect("entries") {
        let e = e.expect("entry");
        let h = e.header();
        assert_eq!((h.uid().expect("uid"), h.gid().expect("gid")), (1000, 1000));
        let path = e.path().expect("path").display().to_string();
        if path == "workspace/run.sh" {
            assert_eq!(h.mode().expect("mode") & 0o7777, 0o755, "setuid dropped");
        }
        if path == "workspace/link" {
            assert_eq!(
                e.link_name()
                    .expect("link")
                    .map(|l| l.display().to_string())
                    .as_deref(),
                Some("/etc/passwd"),
                "a link is copied as a link, never followed"
            );
        }
        seen.push(path);
    }
    for want in [
        "workspace",
        "workspace/a/b/f.txt",
        "workspace/run.sh",
        "workspace/link",
    ] {
        assert!(
            seen.iter().any(|p| p.trim_end_matches('/') == want),
            "{want} in {seen:?}"
        );
    }
}
