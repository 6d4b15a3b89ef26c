use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn meta(id: &str) -> Metadata {
    Metadata {
        identity: id.into(),
        agent: "dev".into(),
        cwd: Some("/src/app".into()),
        started_at: "2026-11-23T14:00:00Z".into(),
        launcher_version: "0.0.0".into(),
        images: BTreeMap::from([("egress".into(), "claude-bottle/egress:abc".into())]),
    }
}

#[test]
fn root_prefers_flag_then_env_then_home() {
    let env = |k: &str| match k {
        "HOME" => Some("/home/op".to_owned()),
        STATE_DIR_ENV => Some("/var/cb".to_owned()),
        _ => None,
    };
    assert_eq!(
        root(Some(Path::new("/flag")), env).expect("flag"),
        PathBuf::from("/flag")
    );
    assert_eq!(root(None, env).expect("env"), PathBuf::from("/var/cb"));
    let home_only = |k: &str| (k == "HOME").then(|| "/home/op".to_owned());
    assert_eq!(
        root(None, home_only).expect("home"),
        PathBuf::from("/home/op/.claude-bottle/state")
    );
    let err = root(None, |_| None).expect_err("nothing");
    assert!(err.to_string().contains(STATE_DIR_ENV), "{err}");
}

#[test]
fn create_read_list_and_remove() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let id = Identity::parse("dev-k3x9a").expect("id");
    let st = BottleState::new(tmp.path(), &id);
    st.create(&meta("dev-k3x9a")).expect("create");
    assert_eq!(st.metadata().expect("read"), meta("dev-k3x9a"));
    let mode = std::fs::metadata(st.dir())
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    assert!(st.queue_dir().is_dir());
    assert_eq!(list(tmp.path()).expect("list"), vec![id.clone()]);
    assert!(st.remove_unless_preserved().expect("remove"));
    assert!(!st.dir().exists());
    assert!(list(tmp.path()).expect("list").is_empty());
    // Removing twice is fine (teardown runs on every path).
    assert!(st.remove_unless_preserved().expect("again"));
}

#[test]
fn preserved_state_is_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let st = BottleState::new(tmp.path(), &Identity::parse("dev-aaaaa").expect("id"));
    st.create(&meta("dev-aaaaa")).expect("create");
    std::fs::write(st.dir().join(PRESERVE_MARKER), "").expect("mark");
    assert!(!st.remove_unless_preserved().expect("kept"));
    assert!(st.dir().exists());
}

#[test]
fn broken_metadata_names_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let st = BottleState::new(tmp.path(), &Identity::parse("dev-bbbbb").expect("id"));
    std::fs::create_dir_all(st.dir()).expect("mkdir");
    std::fs::write(st.dir().join(METADATA_FILE), "{").expect("write");
    let err = st.metadata().expect_err("broken");
    assert!(err.to_string().contains("metadata.json"), "{err}");
}

#[test]
fn list_ignores_non_identity_entries_and_missing_root() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(
        list(&tmp.path().join("absent"))
            .expect("missing")
            .is_empty()
    );
    std::fs::create_dir_all(tmp.path().join("not-an-identity")).expect("mkdir");
    assert!(list(tmp.path()).expect("list").is_empty());
}

#[test]
fn the_launch_record_round_trips_privately_and_is_optional() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let id = Identity::parse("dev-k3x9a").expect("id");
    let st = BottleState::new(tmp.path(), &id);
    st.create(&meta("dev-k3x9a")).expect("create");
    assert_eq!(st.launch_record().expect("read"), None, "no record yet");
    let rec = LaunchRecord {
        manifest: Some("/src/app/claude-bottle.yaml".into()),
        bin_dir: Some("/opt/cb/bin".into()),
        offline: true,
        labels: BTreeMap::from([("team".into(), "web".into())]),
        upstream_ca: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()),
        pipelock_image: Some(format!("ghcr.io/x/pipelock@sha256:{}", "a".repeat(64))),
        workspace: Some(manifest::WorkspaceMode::Copy),
        claude_code: Some("/src/app/claude-code.tgz".into()),
    };
    st.write_launch(&rec).expect("write");
    assert_eq!(st.launch_record().expect("read"), Some(rec));
    let path = st.dir().join(LAUNCH_FILE);
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The metadata is untouched and still reads.
    assert_eq!(st.metadata().expect("meta"), meta("dev-k3x9a"));
    // Older records (fewer fields) read with defaults; garbage is an error naming the file.
    std::fs::write(&path, "{}").expect("write");
    assert_eq!(
        st.launch_record().expect("read"),
        Some(LaunchRecord::default())
    );
    std::fs::write(&path, "not json").expect("write");
    let err = st.launch_record().expect_err("garbage");
    assert!(err.to_string().contains("launch.json"), "{err}");
}

#[test]
fn leftovers_split_stale_from_preserved_and_skip_live_bottles() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for id in ["dev-aaaaa", "dev-bbbbb", "dev-ccccc"] {
        let st = BottleState::new(tmp.path(), &Identity::parse(id).expect("id"));
        st.create(&meta(id)).expect("create");
    }
    let b = BottleState::new(tmp.path(), &Identity::parse("dev-bbbbb").expect("id"));
    std::fs::write(b.dir().join(PRESERVE_MARKER), "capability-block\n").expect("marker");
    let l = leftovers(tmp.path(), &["dev-aaaaa"]).expect("leftovers");
    assert_eq!(l.stale, [Identity::parse("dev-ccccc").expect("id")]);
    assert_eq!(l.preserved, [Identity::parse("dev-bbbbb").expect("id")]);
    // A preserved state survives remove_unless_preserved but not remove.
    assert!(!b.remove_unless_preserved().expect("kept"));
    assert!(b.dir().exists());
    b.remove().expect("removed");
    assert!(!b.dir().exists());
    b.remove().expect("a missing directory is fine");
}

#[test]
fn live_routes_round_trip_privately_and_are_optional() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let id = Identity::parse("dev-k3x9a").expect("id");
    let st = BottleState::new(tmp.path(), &id);
    st.create(&meta("dev-k3x9a")).expect("create");
    assert_eq!(st.live_routes().expect("read"), None, "none recorded yet");
    let text = "version: 1\nroutes:\n  - host: a.example\n";
    st.write_live_routes(text).expect("write");
    assert_eq!(st.live_routes().expect("read").as_deref(), Some(text));
    let mode = std::fs::metadata(st.dir().join(LIVE_ROUTES_FILE))
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn recorded_placeholders_go_with_the_state_and_never_take_operator_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ws = tempfile::tempdir().expect("workspace");
    let st = BottleState::new(tmp.path(), &Identity::parse("dev-ddddd").expect("id"));
    st.create(&meta("dev-ddddd")).expect("create");
    let list = vec![
        Placeholder {
            path: ws.path().join("claude-bottle.yaml"),
            dir: true,
        },
        Placeholder {
            path: ws.path().join("inc.cfg"),
            dir: false,
        },
    ];
    st.record_placeholders(&list).expect("record");
    crate::plan::workspace::create_placeholders(&list).expect("create");
    // A crash: the state is stale; removing it removes the placeholders.
    assert!(st.remove_unless_preserved().expect("removed"));
    assert!(!ws.path().join("claude-bottle.yaml").exists());
    assert!(!ws.path().join("inc.cfg").exists());

    // Teardown of a preserved state removes them too, and a placeholder the
    // operator filled meanwhile is left with a warning.
    st.create(&meta("dev-ddddd")).expect("create");
    st.record_placeholders(&list).expect("record");
    crate::plan::workspace::create_placeholders(&list).expect("create");
    std::fs::write(ws.path().join("inc.cfg"), "[user]\n").expect("operator writes");
    std::fs::write(st.dir().join(PRESERVE_MARKER), "x").expect("marker");
    let warnings = st.remove_placeholders();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("inc.cfg"), "{warnings:?}");
    assert!(!ws.path().join("claude-bottle.yaml").exists());
    assert_eq!(
        std::fs::read_to_string(ws.path().join("inc.cfg")).expect("kept"),
        "[user]\n"
    );
    assert!(st.remove_placeholders().is_empty(), "the record is gone");
}
