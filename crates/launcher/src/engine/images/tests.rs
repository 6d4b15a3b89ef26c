use std::io::Read as _;

use super::*;

#[test]
fn base_tag_is_stable_and_names_the_suite() {
    assert_eq!(base_tag(), base_tag());
    assert!(
        base_tag().starts_with("claude-bottle/base:bookworm-"),
        "{}",
        base_tag()
    );
    assert_eq!(base_tag().len(), "claude-bottle/base:bookworm-".len() + 12);
}

#[test]
fn content_tag_changes_with_every_input() {
    let t = |c, base: &str, df: &str, p: &[u8]| content_tag(c, base, df, p);
    let a = t(Component::Egress, "b:1", "FROM x", b"bin");
    assert!(a.starts_with("claude-bottle/egress:"), "{a}");
    assert_eq!(a, t(Component::Egress, "b:1", "FROM x", b"bin"));
    assert_ne!(a, t(Component::Egress, "b:2", "FROM x", b"bin"));
    assert_ne!(a, t(Component::Egress, "b:1", "FROM y", b"bin"));
    assert_ne!(a, t(Component::Egress, "b:1", "FROM x", b"bin2"));
    // Field boundaries are delimited: moving bytes between fields changes it.
    assert_ne!(t(Component::Egress, "b:1", "FROM xb", b"in"), a);
}

#[test]
fn build_context_has_dockerfile_and_an_executable_binary() {
    let tar = build_context("FROM scratch\n", Some(("egress-proxy", b"\x7fELF"))).expect("tar");
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut seen = Vec::new();
    for e in archive.entries().expect("entries") {
        let mut e = e.expect("entry");
        let mode = e.header().mode().expect("mode");
        let mut body = Vec::new();
        e.read_to_end(&mut body).expect("read");
        seen.push((e.path().expect("path").display().to_string(), mode, body));
    }
    assert_eq!(
        seen,
        vec![
            ("Dockerfile".into(), 0o644, b"FROM scratch\n".to_vec()),
            ("egress-proxy".into(), 0o755, b"\x7fELF".to_vec()),
        ]
    );
}

#[test]
fn every_dockerfile_takes_the_base_as_an_argument_and_sidecars_are_not_root() {
    for c in [
        Component::Egress,
        Component::GitGate,
        Component::Supervise,
        Component::Agent,
    ] {
        let df = dockerfile(c).expect("dockerfile");
        assert!(df.contains("ARG BASE\nFROM ${BASE}"), "{c}");
        assert!(
            !df.contains("apt-get install -y")
                || df
                    .lines()
                    .all(|l| l.starts_with('#') || !l.contains("apt-get")),
            "{c}: no RUN may need the network"
        );
        let user = if c == Component::Agent {
            "USER 1000:1000"
        } else {
            "USER 10001:10001"
        };
        assert!(df.contains(user), "{c}");
    }
}

// One test, not two: writing a script while another test thread forks can
// make exec fail with ETXTBSY (the child briefly holds the write fd).
#[tokio::test]
async fn binaries_decide_availability_and_tags() {
    missing_and_stub_binaries_are_unavailable_with_a_remedy().await;
    planned_tags_follow_the_binaries().await;
}

async fn missing_and_stub_binaries_are_unavailable_with_a_remedy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = locate_binary(dir.path(), "git-gate")
        .await
        .expect_err("missing");
    assert!(err.contains("cargo build --release -p git-gate"), "{err}");

    use std::os::unix::fs::PermissionsExt as _;
    let stub = dir.path().join("git-gate");
    std::fs::write(
        &stub,
        "#!/bin/sh\necho 'git-gate: not implemented yet' >&2\nexit 1\n",
    )
    .expect("write");
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let err = locate_binary(dir.path(), "git-gate")
        .await
        .expect_err("stub");
    assert!(err.contains("not implemented yet"), "{err}");

    let ok = dir.path().join("supervise");
    std::fs::write(&ok, "#!/bin/sh\nexit 0\n").expect("write");
    std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(
        locate_binary(dir.path(), "supervise").await.expect("ok"),
        ok
    );
}

async fn planned_tags_follow_the_binaries() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("egress-proxy");
    std::fs::write(&bin, "#!/bin/sh\nexit 0\n").expect("write");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut opts = ImageOptions {
        bin_dir: dir.path().to_owned(),
        offline: true,
        mirror: None,
        apt_root: dir.path().to_owned(),
        debian_image: None,
        claude_code: claude_code::Source::Skip,
        retry_claude_code: false,
        labels: BTreeMap::new(),
    };
    let a = planned(&opts, &AgentImage::Default).await.expect("planned");
    assert!(a.tags.contains_key(&Component::Egress));
    assert!(a.tags.contains_key(&Component::Agent));
    assert!(a.unavailable.contains_key(&Component::GitGate));
    assert!(a.unavailable.contains_key(&Component::Pipelock));
    std::fs::write(&bin, "#!/bin/sh\n# changed\nexit 0\n").expect("write");
    let b = planned(&opts, &AgentImage::Default).await.expect("planned");
    assert_ne!(
        a.tags[&Component::Egress],
        b.tags[&Component::Egress],
        "a new binary means a new image"
    );
    assert_eq!(a.tags[&Component::Agent], b.tags[&Component::Agent]);
    let c = planned(&opts, &AgentImage::Existing("my/agent:1".into()))
        .await
        .expect("planned");
    assert_eq!(c.tags[&Component::Agent], "my/agent:1");

    // A Claude Code tarball is part of the default agent image's tag, and
    // its version is known before anything is built.
    assert_eq!(a.claude_code, ClaudeCodeStatus::Unknown);
    let tgz = dir.path().join("claude-code.tgz");
    std::fs::write(&tgz, stand_in_tarball("1.2.3")).expect("write");
    opts.claude_code = claude_code::Source::Tarball(tgz.clone());
    let d = planned(&opts, &AgentImage::Default).await.expect("planned");
    assert_ne!(a.tags[&Component::Agent], d.tags[&Component::Agent]);
    assert_eq!(d.claude_code, ClaudeCodeStatus::Installed("1.2.3".into()));
    std::fs::write(&tgz, stand_in_tarball("1.2.4")).expect("write");
    let e = planned(&opts, &AgentImage::Default).await.expect("planned");
    assert_ne!(d.tags[&Component::Agent], e.tags[&Component::Agent]);
    // The sidecars do not depend on it.
    assert_eq!(b.tags[&Component::Egress], e.tags[&Component::Egress]);
    // A bad tarball is refused before anything is built, naming it.
    std::fs::write(&tgz, b"not a tarball").expect("write");
    let err = planned(&opts, &AgentImage::Default)
        .await
        .expect_err("bad tarball")
        .to_string();
    assert!(
        err.contains("claude-code.tgz") && err.contains("gzip"),
        "{err}"
    );
}

/// A minimal `npm pack` tarball of a package named like Claude Code.
fn stand_in_tarball(version: &str) -> Vec<u8> {
    use std::io::Write as _;
    let pj = format!(
        r#"{{"name":"@anthropic-ai/claude-code","version":"{version}","bin":{{"claude":"cli.js"}}}}"#
    );
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("package/package.json", pj.as_bytes()),
        ("package/cli.js", b"#!/usr/bin/env node\n".as_slice()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).expect("append");
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().expect("tar")).expect("gzip");
    gz.finish().expect("gzip")
}

#[test]
fn the_debian_image_must_be_pinned_and_none_means_debootstrap() {
    let none = |_: &str| None;
    assert_eq!(
        debian_image(None, none).expect("default").as_deref(),
        Some(DEFAULT_DEBIAN_IMAGE)
    );
    let local = "127.0.0.1:5000/debian:bookworm-slim@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let env = |k: &str| (k == DEBIAN_IMAGE_ENV).then(|| local.to_owned());
    assert_eq!(
        debian_image(None, env).expect("env").as_deref(),
        Some(local)
    );
    assert_eq!(debian_image(Some("none"), env).expect("none"), None);
    let off = |_: &str| Some("none".to_owned());
    assert_eq!(debian_image(None, off).expect("none"), None);
    for bad in [
        "debian:bookworm-slim",
        "debian@sha256:abc",
        "Debian@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        let err = debian_image(Some(bad), none).expect_err(bad).to_string();
        assert!(
            err.contains(bad) && err.contains("pinned by digest"),
            "{err}"
        );
    }
}

#[test]
fn the_claude_code_label_says_what_the_image_holds() {
    assert_eq!(
        ClaudeCodeStatus::from_label(None),
        ClaudeCodeStatus::Unknown
    );
    assert_eq!(
        ClaudeCodeStatus::from_label(Some("none")),
        ClaudeCodeStatus::Missing
    );
    assert_eq!(
        ClaudeCodeStatus::from_label(Some("2.0.14")),
        ClaudeCodeStatus::Installed("2.0.14".into())
    );
}

#[test]
fn sidecar_tags_cover_the_first_stage_script_and_contexts_carry_it() {
    let df = dockerfile(Component::Egress).expect("egress");
    assert!(sidecar_recipe(df).contains(SIDECAR_ROOTFS));
    let ctx = sidecar_context(df, "egress-proxy", b"bin").expect("context");
    let names: Vec<String> = tar::Archive::new(ctx.as_slice())
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["Dockerfile", SIDECAR_ROOTFS_NAME, "egress-proxy"]);
    for c in [Component::Egress, Component::GitGate, Component::Supervise] {
        let df = dockerfile(c).expect("dockerfile");
        assert!(
            df.contains("\nFROM scratch\n"),
            "{c}: the image is FROM scratch"
        );
        assert!(
            df.contains(&format!("{LABEL_STAGE_OF}=${{STAGE_OF}}")),
            "{c}: the stage is labelled"
        );
        assert!(
            df.lines()
                .all(|l| l.starts_with('#') || !l.contains("curl")),
            "{c}: no curl"
        );
    }
}

#[test]
fn the_pipelock_image_comes_from_the_flag_then_the_environment_then_the_pin() {
    let pinned = "registry.test/pipelock@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let none = |_: &str| None;
    assert_eq!(
        pipelock_image(None, none).expect("default"),
        crate::plan::DEFAULT_PIPELOCK_IMAGE
    );
    let env = |k: &str| (k == PIPELOCK_IMAGE_ENV).then(|| pinned.to_owned());
    assert_eq!(pipelock_image(None, env).expect("env"), pinned);
    assert_eq!(pipelock_image(Some(pinned), none).expect("flag"), pinned);
    // An empty variable is no setting, not an image.
    let empty = |_: &str| Some(String::new());
    assert_eq!(
        pipelock_image(None, empty).expect("empty env"),
        crate::plan::DEFAULT_PIPELOCK_IMAGE
    );
    // A tag is refused, wherever it comes from, naming the value.
    let err = pipelock_image(Some("registry.test/pipelock:latest"), none).expect_err("tag");
    assert!(
        err.to_string().contains("registry.test/pipelock:latest"),
        "{err}"
    );
    let tagged = |_: &str| Some("registry.test/pipelock:3".to_owned());
    assert!(pipelock_image(None, tagged).is_err());
}

#[tokio::test]
async fn adding_pipelock_without_an_engine_only_records_the_tag() {
    let pinned = "registry.test/pipelock@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let mut set = ImageSet::default();
    set.unavailable.insert(Component::Pipelock, "x".into());
    add_pipelock(None, pinned, &mut set, &mut |_| {})
        .await
        .expect("no engine");
    assert_eq!(
        set.tags.get(&Component::Pipelock).map(String::as_str),
        Some(pinned)
    );
    assert!(!set.unavailable.contains_key(&Component::Pipelock));
}

#[test]
fn only_older_unused_builds_are_superseded() {
    let img = |id: &str, tag: &str, created: i64| StoredImage {
        id: id.into(),
        tags: vec![tag.into()],
        created,
    };
    let images = vec![
        img("e1", "claude-bottle/egress:aaa", 1),
        img("e2", "claude-bottle/egress:bbb", 3),
        img("e3", "claude-bottle/egress:ccc", 2),
        img("g1", "claude-bottle/git-gate:ddd", 1),
        img("b1", "claude-bottle/base:bookworm-1", 1),
        img("b2", "claude-bottle/base:bookworm-2", 2),
        img("x", "someone/else:latest", 0),
        img("r", "claude-bottle/agent-resume:dev-abcde", 0),
    ];
    // e3 is older than e2 but a container still uses it.
    let gone = superseded_images(&images, &["e3".to_owned()]);
    assert_eq!(
        gone,
        ["claude-bottle/base:bookworm-1", "claude-bottle/egress:aaa"]
    );
    assert!(superseded_images(&[], &[]).is_empty());
}
