use std::time::Duration;

use super::*;

#[test]
fn durations() {
    let ok: &[(&str, Duration)] = &[
        ("30", Duration::from_secs(30)),
        ("30s", Duration::from_secs(30)),
        ("500ms", Duration::from_millis(500)),
        ("5m", Duration::from_secs(300)),
        ("1h", Duration::from_secs(3600)),
    ];
    for (s, d) in ok {
        assert_eq!(parse_duration(s).as_ref(), Ok(d), "{s}");
    }
    for bad in ["", "s", "-1s", "1.5s", "10 days", "0", "0s"] {
        let e = parse_duration(bad).expect_err(bad);
        assert!(e.contains("duration"), "{bad}: {e}");
    }
}

#[test]
fn header_limit_below_hyper_minimum_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = files_in(dir.path());
    settings.limits.max_header_bytes = 100;
    let e = load(&settings).expect_err("too small");
    assert!(e.to_string().contains("8192"), "{e}");
}

#[test]
fn a_missing_tokens_dir_is_refused_before_anything_else_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-dir");
    let mut settings = files_in(dir.path());
    settings.tokens_dir = Some(missing.clone());
    let e = load(&settings).expect_err("missing dir");
    let msg = e.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains("--tokens-dir"), "{msg}");
}

#[test]
fn token_files_override_the_environment_for_slot_names_only() {
    use crate::env::{Env, MapEnv, TokenDir};
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("EGRESS_TOKEN_1"), "file-value\r\n").expect("write");
    std::fs::write(dir.path().join("lower"), "nope").expect("write");
    let env = TokenDir::new(
        dir.path().to_path_buf(),
        std::sync::Arc::new(MapEnv::new([
            ("EGRESS_TOKEN_1", "env-value"),
            ("EGRESS_TOKEN_2", "env-two"),
        ])),
    );
    assert_eq!(env.var("EGRESS_TOKEN_1").as_deref(), Some("file-value"));
    assert_eq!(env.var("EGRESS_TOKEN_2").as_deref(), Some("env-two"));
    assert_eq!(env.var("EGRESS_TOKEN_3"), None);
    // Not a slot name: never looked up as a file.
    assert_eq!(env.var("lower"), None);
    assert_eq!(env.var("../EGRESS_TOKEN_1"), None);
    // Debug names the directory, never a value.
    assert!(!format!("{env:?}").contains("value"));
}

/// Settings naming files in `dir` (none of which exist).
fn files_in(dir: &std::path::Path) -> Settings {
    Settings {
        routes: dir.join("r.yaml"),
        ca_cert: dir.join("c.pem"),
        ca_key: dir.join("k.pem"),
        upstream_ca: None,
        upstream_proxy: None,
        system_roots: false,
        limits: Limits::default(),
        dlp: crate::dlp::DlpSettings::default(),
        inbound: crate::inbound::InboundAction::Off,
        tokens_dir: None,
    }
}

fn load(settings: &Settings) -> Result<Config, crate::config::ConfigError> {
    Config::load(
        settings,
        std::sync::Arc::new(crate::env::MapEnv::default()),
        std::sync::Arc::new(crate::resolve::StaticResolver::default()),
    )
}
