use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::lifecycle::LABEL_LAUNCHER_PID;
use crate::plan::identity::Component;

fn meta() -> Metadata {
    Metadata {
        identity: "dev-k3x9a".into(),
        agent: "dev".into(),
        cwd: Some("/src/app".into()),
        started_at: "2026-11-23T14:00:00Z".into(),
        launcher_version: "0.0.0".into(),
        images: BTreeMap::new(),
    }
}

fn record() -> LaunchRecord {
    LaunchRecord {
        manifest: Some("/src/app/claude-bottle.yaml".into()),
        bin_dir: Some("/opt/cb/bin".into()),
        offline: false,
        labels: BTreeMap::from([("team".into(), "web".into()), ("run".into(), "1".into())]),
        upstream_ca: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()),
        pipelock_image: Some(format!("ghcr.io/x/pipelock@sha256:{}", "a".repeat(64))),
        workspace: Some(manifest::WorkspaceMode::Copy),
        claude_code: Some("/src/app/claude-code.tgz".into()),
    }
}

#[test]
fn without_flags_the_recorded_launch_is_reused() {
    assert_eq!(
        effective(Some(&record()), &ResumeFlags::default()),
        record()
    );
}

#[test]
fn flags_win_over_the_record_key_by_key() {
    let flags = ResumeFlags {
        manifest: Some("/elsewhere/m.yaml".into()),
        bin_dir: None,
        offline: true,
        labels: vec![("run".into(), "2".into()), ("new".into(), "x".into())],
        claude_code: None,
    };
    let e = effective(Some(&record()), &flags);
    assert_eq!(e.manifest, Some(PathBuf::from("/elsewhere/m.yaml")));
    assert_eq!(
        e.bin_dir,
        Some(PathBuf::from("/opt/cb/bin")),
        "kept from the record"
    );
    assert!(e.offline);
    assert_eq!(
        e.labels,
        BTreeMap::from([
            ("team".into(), "web".into()),
            ("run".into(), "2".into()),
            ("new".into(), "x".into())
        ])
    );
    assert_eq!(e.upstream_ca, record().upstream_ca, "the CA is not a flag");
    assert_eq!(e.pipelock_image, record().pipelock_image);
    assert_eq!(e.claude_code, record().claude_code, "kept from the record");
    let flags = ResumeFlags {
        claude_code: Some("/new/claude-code.tgz".into()),
        ..ResumeFlags::default()
    };
    assert_eq!(
        effective(Some(&record()), &flags).claude_code,
        Some(PathBuf::from("/new/claude-code.tgz"))
    );
}

#[test]
fn without_a_record_only_the_flags_count() {
    let flags = ResumeFlags {
        offline: true,
        ..ResumeFlags::default()
    };
    let e = effective(None, &flags);
    assert_eq!(
        e,
        LaunchRecord {
            offline: true,
            ..LaunchRecord::default()
        }
    );
}

#[test]
fn the_resumed_plan_options_match_the_original_start() {
    let root = tempfile::tempdir().expect("tempdir");
    let identity = Identity::parse("dev-k3x9a").expect("id");
    let st = BottleState::new(root.path(), &identity);
    let images = BTreeMap::from([(
        Component::Agent,
        "claude-bottle/agent-resume:dev-k3x9a-abc".into(),
    )]);
    let o = plan_options(
        &identity,
        &meta(),
        &record(),
        &st,
        &ImageSet {
            tags: images.clone(),
            unavailable: BTreeMap::new(),
            ..ImageSet::default()
        },
        Vec::new(),
        4242,
    );
    assert_eq!(o.identity, identity, "same identity");
    assert_eq!(o.cwd, Some(PathBuf::from("/src/app")), "same workspace");
    assert_eq!(o.queue_dir, st.queue_dir(), "same queue");
    assert_eq!(o.images, images);
    assert_eq!(o.upstream_ca, record().upstream_ca, "same upstream CA");
    assert_eq!(
        o.workspace_mode,
        Some(manifest::WorkspaceMode::Copy),
        "same workspace mode"
    );
    assert_eq!(o.extra_labels.get("team").map(String::as_str), Some("web"));
    assert_eq!(o.extra_labels.get("run").map(String::as_str), Some("1"));
    assert_eq!(
        o.extra_labels.get(LABEL_LAUNCHER_PID).map(String::as_str),
        Some("4242"),
        "this process is the launcher to signal"
    );
    // A record without a CA gives none (not a silent default).
    let o = plan_options(
        &identity,
        &meta(),
        &LaunchRecord::default(),
        &st,
        &ImageSet::default(),
        Vec::new(),
        1,
    );
    assert_eq!(o.upstream_ca, None);
}

#[test]
fn resume_tags_name_their_bottle_and_round_trip() {
    let id = Identity::parse("dev-k3x9a").unwrap();
    let tag = resume_image_tag(&id, "FROM x\n");
    assert!(
        tag.starts_with("claude-bottle/agent-resume:dev-k3x9a-"),
        "{tag}"
    );
    assert_eq!(identity_of_resume_tag(&tag), Some(id.clone()));
    assert_ne!(
        tag,
        resume_image_tag(&id, "FROM y\n"),
        "a new Dockerfile, a new tag"
    );
    for not in [
        "claude-bottle/agent:dev-k3x9a-0123456789ab",
        "claude-bottle/agent-resume:dev-k3x9a",
        "claude-bottle/agent-resume:dev-k3x9a-xyz",
        "claude-bottle/agent-resume:Bad!-0123456789ab",
        "claude-bottle/agent-resume-other:dev-k3x9a-0123456789ab",
    ] {
        assert_eq!(identity_of_resume_tag(not), None, "{not}");
    }
}

#[test]
fn resume_images_of_running_or_preserved_bottles_are_kept() {
    let a = Identity::parse("dev-aaaaa").unwrap();
    let b = Identity::parse("dev-bbbbb").unwrap();
    let c = Identity::parse("dev-ccccc").unwrap();
    let tags: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|i| resume_image_tag(i, "FROM x\n"))
        .chain(["claude-bottle/agent:latest".to_owned()])
        .collect();
    let gone = unneeded_resume_images(&tags, &["dev-aaaaa"], std::slice::from_ref(&b));
    assert_eq!(gone, [resume_image_tag(&c, "FROM x\n")]);
}
