use std::sync::Arc;

use super::*;
use crate::env::MapEnv;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("routes.yaml");
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn load_reads_tokens_and_lists_missing_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "version: 1\nroutes:\n  - host: a.example\n    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_1 }\n  - host: b.example\n    auth: { scheme: Bearer, token_env: EGRESS_TOKEN_2 }\n",
    );
    let env = Arc::new(MapEnv::new([
        ("EGRESS_TOKEN_1", "one"),
        ("EGRESS_TOKEN_2", ""),
    ]));
    let a = Allowlist::load(&p, env).expect("load");
    let cur = a.current();
    assert_eq!(cur.token("EGRESS_TOKEN_1").map(Secret::expose), Some("one"));
    assert!(
        cur.token("EGRESS_TOKEN_2").is_none(),
        "empty counts as unset"
    );
    assert_eq!(cur.missing_tokens(), ["EGRESS_TOKEN_2".to_owned()]);
    assert_eq!(
        format!("{:?}", cur.token("EGRESS_TOKEN_1")),
        "Some(Secret(***))"
    );
    let status = a.status_json().to_string();
    assert!(!status.contains("one\""), "{status}");
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.yaml");
    let e = Allowlist::load(&missing, Arc::new(MapEnv::default())).expect_err("missing");
    assert!(e.to_string().contains("nope.yaml"), "{e}");
    let p = write(dir.path(), "version: 2\nroutes: []\n");
    let e = Allowlist::load(&p, Arc::new(MapEnv::default())).expect_err("bad version");
    let msg = e.to_string();
    assert!(
        msg.contains("routes.yaml") && msg.contains("version"),
        "{msg}"
    );
}

#[test]
fn reload_swaps_only_valid_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "version: 1\nroutes:\n  - host: a.example\n");
    let a = Allowlist::load(&p, Arc::new(MapEnv::default())).expect("load");
    let old = a.current();
    write(
        dir.path(),
        "version: 1\nroutes:\n  - host: a.example\n  - host: b.example\n",
    );
    let v = a.reload().expect("valid reload");
    assert_eq!(a.current().version(), v);
    assert_ne!(old.version(), v);
    // The table a request already holds is unaffected.
    assert_eq!(old.table().routes().len(), 1);
    write(
        dir.path(),
        "version: 1\nroutes:\n  - host: a.example\n  - host: a.example\n",
    );
    let e = a.reload().expect_err("duplicate host");
    assert!(e.to_string().contains("a.example"), "{e}");
    assert_eq!(a.current().version(), v, "old table kept");
    let s = a.status_json();
    assert!(
        s["last_reload_error"]
            .as_str()
            .is_some_and(|m| m.contains("more than one route")),
        "{s}"
    );
    write(dir.path(), "version: 1\nroutes:\n  - host: a.example\n");
    a.reload().expect("fixed");
    assert!(a.status_json()["last_reload_error"].is_null());
}
