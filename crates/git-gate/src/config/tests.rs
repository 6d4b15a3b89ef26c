use std::time::Duration;

use manifest::remotes::RemotesFile;

use super::Config;

fn cfg(yaml: &str, env: &[(&str, &str)]) -> Config {
    Config {
        remotes: RemotesFile::parse(yaml, "remotes.yaml").expect("valid"),
        remotes_path: "remotes.yaml".into(),
        data_dir: "data".into(),
        rules_path: None,
        upstream_ca: None,
        refresh_interval: Duration::ZERO,
        max_request_bytes: 1,
        max_push_bytes: 1,
        max_object_bytes: 1,
        max_inflated_bytes: 1,
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        max_connections: 1,
        hook_exe: "git-gate".into(),
        child_env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

const TWO: &str = "version: 1\nremotes:\n  - name: a\n    upstream: https://git.example/a.git\n    auth: { token_env: GIT_GATE_TOKEN_1 }\n  - name: b\n    upstream: https://git.example/b.git\n    auth: { token_env: GIT_GATE_TOKEN_2 }\n  - name: pub\n    upstream: https://git.example/p.git\n";

#[test]
fn every_missing_token_is_named_at_once() {
    let err = cfg(TWO, &[]).upstreams().expect_err("tokens missing");
    assert!(
        err.contains("remote \"a\": auth.token_env GIT_GATE_TOKEN_1 is not set"),
        "{err}"
    );
    assert!(
        err.contains("remote \"b\": auth.token_env GIT_GATE_TOKEN_2 is not set"),
        "{err}"
    );
}

#[test]
fn tokens_come_from_the_child_environment_and_stay_hidden() {
    let c = cfg(
        TWO,
        &[("GIT_GATE_TOKEN_1", "t-one"), ("GIT_GATE_TOKEN_2", "t-two")],
    );
    let ups = c.upstreams().expect("all set");
    assert_eq!(ups.len(), 3);
    assert_eq!(
        ups[0].auth.as_ref().map(|(u, t)| (u.as_str(), t.expose())),
        Some(("x-access-token", "t-one"))
    );
    assert!(ups[2].auth.is_none());
    let shown = format!("{ups:?}");
    assert!(
        !shown.contains("t-one") && !shown.contains("t-two"),
        "{shown}"
    );
    assert_eq!(c.mirror_path("a"), std::path::PathBuf::from("data/a.git"));
}

#[test]
fn child_env_keeps_routing_and_tokens_and_drops_whatever_changes_trust() {
    let remotes = RemotesFile::parse(TWO, "remotes.yaml").expect("valid");
    let daemon: Vec<(String, String)> = [
        ("PATH", "/usr/bin"),
        ("HTTPS_PROXY", "http://proxy:3128"),
        ("GIT_GATE_TOKEN_1", "t-one"),
        ("GIT_GATE_TOKEN_9", "not a slot of this file"),
        ("GIT_SSL_CAINFO", "/tmp/evil.pem"),
        ("GIT_SSL_NO_VERIFY", "1"),
        ("SSL_CERT_FILE", "/tmp/evil.pem"),
        ("GIT_PROXY_COMMAND", "/tmp/evil.sh"),
        ("GIT_CONFIG_GLOBAL", "/tmp/evil.gitconfig"),
        ("GIT_CONFIG_PARAMETERS", "'http.sslverify'='false'"),
        ("GIT_EXEC_PATH", "/tmp/evil"),
        ("GIT_DIR", "/tmp/elsewhere.git"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let got = super::child_env(daemon, &remotes);
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "PATH",
            "HTTPS_PROXY",
            "GIT_GATE_TOKEN_1",
            "GIT_CONFIG_GLOBAL",
            "GIT_CONFIG_NOSYSTEM"
        ]
    );
    assert!(got.contains(&("GIT_CONFIG_GLOBAL".into(), "/dev/null".into())));
    // Applying it twice changes nothing (main and run both apply it).
    assert_eq!(super::child_env(got.clone(), &remotes), got);
}
