//! `launcher validate` on fixture manifests (good and bad), the search
//! order, exit statuses and both output formats.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs `launcher validate ARGS` in `cwd` with a scrubbed environment:
/// HOME points at `home`, and `extra_env` is added.
fn run(args: &[&str], cwd: &Path, home: &Path, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_launcher"));
    cmd.arg("validate")
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("HOME", home);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().expect("running the launcher binary")
}

fn run_flag(args: &[&str]) -> Output {
    let tmp = tempfile::tempdir().expect("tmp");
    run(args, tmp.path(), tmp.path(), &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn good_manifest_text_summary() {
    let path = fixture("good.yaml");
    let o = run_flag(&["--manifest", path.to_str().expect("utf8")]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(
        out.starts_with(&format!(
            "manifest: {} (given with --manifest)\n",
            path.display()
        )),
        "{out}"
    );
    for want in [
        "agent dev: works on the app",
        "image:     built from ./Dockerfile.agent",
        "egress:    7 routes (dlp warn)",
        "    api.github.com  paths /repos/acme/  auth Authorization: Bearer from EGRESS_TOKEN_1",
        "    api.anthropic.com  auth Authorization: Bearer from EGRESS_TOKEN_2  role claude_code_oauth",
        "token:     EGRESS_TOKEN_1 <- operator's $GITHUB_TOKEN",
        "git:       app -> https://github.com/acme/app.git (user x-access-token, GIT_GATE_TOKEN_1 <- operator's $GITHUB_TOKEN)",
        "agent env: CLAUDE_CODE_OAUTH_TOKEN, DISABLE_TELEMETRY",
        "sidecars:  egress, git-gate, supervise, pipelock",
        "agent minimal",
        "ok: 2 agents valid",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn good_manifest_json_summary() {
    let path = fixture("good.yaml");
    let o = run_flag(&[
        "--manifest",
        path.to_str().expect("utf8"),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    assert_eq!(v["valid"], true);
    assert_eq!(v["manifest"]["source"], "flag");
    let dev = &v["agents"][0];
    assert_eq!(dev["name"], "dev");
    assert_eq!(
        dev["image"],
        serde_json::json!({"kind": "dockerfile", "path": "./Dockerfile.agent"})
    );
    let routes = dev["routes"].as_array().expect("routes");
    let gh = routes
        .iter()
        .find(|r| r["host"] == "api.github.com")
        .expect("github route");
    assert_eq!(gh["path_allowlist"], serde_json::json!(["/repos/acme/"]));
    assert_eq!(gh["auth"]["token_env"], "EGRESS_TOKEN_1");
    assert_eq!(gh["auth"]["scheme"], "Bearer");
    assert!(routes.iter().any(|r| r["host"] == "*.pythonhosted.org"));
    assert_eq!(
        dev["token_slots"],
        serde_json::json!([
            {"token_env": "EGRESS_TOKEN_1", "token_ref": "GITHUB_TOKEN"},
            {"token_env": "EGRESS_TOKEN_2", "token_ref": "CLAUDE_BOTTLE_OAUTH"}
        ])
    );
    let app = &dev["git_remotes"][0];
    assert_eq!(app["name"], "app");
    assert_eq!(app["auth"]["token_env"], "GIT_GATE_TOKEN_1");
    assert_eq!(app["branches"]["protected"], serde_json::json!(["main"]));
    assert_eq!(dev["agent_env"][0], "CLAUDE_CODE_OAUTH_TOKEN");
    assert_eq!(dev["routes_version"].as_str().map(str::len), Some(16));
    assert_eq!(v["agents"][1]["name"], "minimal");
}

#[test]
fn json_manifests_and_markdown_directories_load() {
    let o = run_flag(&["--manifest", fixture("good.json").to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("image:     image debian:bookworm"),
        "{}",
        stdout(&o)
    );
    let o = run_flag(&[
        "--manifest",
        fixture("agents").to_str().expect("utf8"),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let names: Vec<&str> = v["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["helper", "reviewer"]);
    assert_eq!(v["agents"][1]["description"], "reviews pull requests");
    assert_eq!(v["agents"][1]["has_prompt"], true);
    let one = run_flag(&[
        "--manifest",
        fixture("agents/reviewer.md").to_str().expect("utf8"),
    ]);
    assert_eq!(one.status.code(), Some(0), "{}", stderr(&one));
    assert!(
        stdout(&one).contains("agent reviewer: reviews pull requests"),
        "{}",
        stdout(&one)
    );
}

#[test]
fn bad_manifest_lists_every_problem() {
    let path = fixture("bad.yaml");
    let o = run_flag(&["--manifest", path.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    let err = stderr(&o);
    let f = path.display().to_string();
    let expected = [
        format!("{f}:3:5: agents.dev.promt: unknown key \"promt\"; did you mean \"prompt\"?"),
        format!(
            "{f}:6:21: agents.dev.bottle.egress.allowlist[0]: host \"https://pypi.org\" has a scheme; write the bare host name, e.g. \"pypi.org\""
        ),
        format!(
            "{f}:6:41: agents.dev.bottle.egress.allowlist[1]: host \"10.0.0.1\" is an IP literal; IP literals are refused unless egress.allow_ip_literals is true"
        ),
        format!(
            "{f}:9:30: agents.dev.bottle.egress.routes[0].path_allowlist[0]: path \"repos/acme\" is not absolute; expected it to start with `/`"
        ),
        format!(
            "{f}:10:29: agents.dev.bottle.egress.routes[0].auth.scheme: unknown auth scheme \"Digest\"; expected Bearer, token or Basic"
        ),
        format!(
            "{f}:14:13: agents.dev.bottle.egress.routes[2].role: role claude_code_oauth is already on agents.dev.bottle.egress.routes[1]; at most one route per bottle may carry it"
        ),
        format!(
            "{f}:18:19: agents.dev.bottle.egress.routes[3].role: unknown role \"admin\"; known roles: claude_code_oauth"
        ),
        format!(
            "{f}:21:21: agents.dev.bottle.git[0].upstream: upstream \"git@github.com:acme/app.git\" must be an https:// URL"
        ),
        format!("{f}:22:3: agents.Bad_Name: invalid agent name \"Bad_Name\""),
        format!("error: manifest {f} (given with --manifest) is invalid (9 problems)"),
    ];
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{err}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(want.as_str()),
            "want {want:?}\n got {line:?}"
        );
    }
}

#[test]
fn bad_manifest_json_errors() {
    let path = fixture("bad.yaml");
    let o = run_flag(&[
        "--manifest",
        path.to_str().expect("utf8"),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    assert_eq!(v["valid"], false);
    let errors = v["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 9);
    assert_eq!(
        errors[4]["path"],
        "agents.dev.bottle.egress.routes[0].auth.scheme"
    );
    assert_eq!(errors[4]["line"], 10);
    assert_eq!(errors[4]["column"], 29);
    assert_eq!(errors[4]["file"], path.display().to_string());
    assert!(
        errors[4]["message"]
            .as_str()
            .expect("msg")
            .contains("expected Bearer, token or Basic")
    );
}

#[test]
fn legacy_keys_die_with_recipes() {
    let o = run_flag(&["--manifest", fixture("legacy.yaml").to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for want in [
        "agents.old.runtime: `runtime` is no longer supported",
        "agents.old.bottle.cred_proxy: `cred_proxy` was removed",
        "agents.old.bottle.tokens: `tokens` was removed",
        "agents.old.bottle.ssh: `ssh` was removed",
        "agents.old.bottle.egress_proxy: `egress_proxy` was renamed to `egress`",
        "is invalid (5 problems)",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn bad_markdown_directory_reports_each_file() {
    let o = run_flag(&["--manifest", fixture("bad-agents").to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(
            "broken.md:2:1: descripton: unknown key \"descripton\"; did you mean \"description\"?"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "broken.md:4:3: bottle.egres: unknown key \"egres\"; did you mean \"egress\"?"
        ),
        "{err}"
    );
    assert!(
        err.contains("nofront.md: a Markdown agent file must start with a YAML frontmatter block"),
        "{err}"
    );
}

#[test]
fn search_order_as_a_process() {
    let cwd = tempfile::tempdir().expect("tmp");
    let home = tempfile::tempdir().expect("tmp");
    // nothing → embedded default
    let o = run(&[], cwd.path(), home.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(
            "manifest: <embedded default> (no manifest found; using the embedded default)"
        ),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("agent claude"), "{}", stdout(&o));
    // ~/.claude-bottle/manifest.yaml
    std::fs::create_dir_all(home.path().join(".claude-bottle")).expect("mkdir");
    std::fs::write(
        home.path().join(".claude-bottle/manifest.yaml"),
        "agents: {home-agent: {}}\n",
    )
    .expect("write");
    let o = run(&[], cwd.path(), home.path(), &[]);
    assert!(
        stdout(&o).contains("(found in ~/.claude-bottle)")
            && stdout(&o).contains("agent home-agent"),
        "{}",
        stdout(&o)
    );
    // ./claude-bottle.yaml wins over home
    std::fs::write(
        cwd.path().join("claude-bottle.yaml"),
        "agents: {cwd-agent: {}}\n",
    )
    .expect("write");
    let o = run(&[], cwd.path(), home.path(), &[]);
    assert!(
        stdout(&o).contains("(found in the current directory)")
            && stdout(&o).contains("agent cwd-agent"),
        "{}",
        stdout(&o)
    );
    // $CLAUDE_BOTTLE_MANIFEST wins over the current directory
    let env_file = fixture("good.json");
    let o = run(
        &[],
        cwd.path(),
        home.path(),
        &[("CLAUDE_BOTTLE_MANIFEST", env_file.to_str().expect("utf8"))],
    );
    assert!(
        stdout(&o).contains("(named by $CLAUDE_BOTTLE_MANIFEST)"),
        "{}",
        stdout(&o)
    );
    // a missing $CLAUDE_BOTTLE_MANIFEST is an error, not a fall-through
    let o = run(
        &[],
        cwd.path(),
        home.path(),
        &[("CLAUDE_BOTTLE_MANIFEST", "/nonexistent.yaml")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "error: manifest /nonexistent.yaml (named by $CLAUDE_BOTTLE_MANIFEST) does not exist"
        ),
        "{}",
        stderr(&o)
    );
    // two candidates in one directory are ambiguous
    std::fs::write(cwd.path().join("claude-bottle.json"), "{}").expect("write");
    let o = run(&[], cwd.path(), home.path(), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("keep one manifest (or choose with --manifest)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn file_system_problems_exit_2_and_name_the_path() {
    let o = run_flag(&["--manifest", "/nonexistent/m.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).trim(),
        "error: manifest /nonexistent/m.yaml (given with --manifest) does not exist; expected a YAML/JSON manifest, a Markdown agent file or a directory of them"
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let bin = tmp.path().join("m.yaml");
    std::fs::write(&bin, [0xffu8, 0xfe]).expect("write");
    let o = run(
        &["--manifest", bin.to_str().expect("utf8")],
        tmp.path(),
        tmp.path(),
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not UTF-8 text"), "{}", stderr(&o));
}

#[test]
fn usage_errors_and_help() {
    let o = run_flag(&["--format", "xml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid value 'xml'"), "{}", stderr(&o));
    let o = run_flag(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("--manifest <PATH>") && stdout(&o).contains("CLAUDE_BOTTLE_MANIFEST"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn token_values_are_never_read_or_printed() {
    let secret = "value-of-the-operator-token-9f8e7d";
    let cwd = tempfile::tempdir().expect("tmp");
    for format in ["text", "json"] {
        let o = run(
            &[
                "--manifest",
                fixture("good.yaml").to_str().expect("utf8"),
                "--format",
                format,
            ],
            cwd.path(),
            cwd.path(),
            &[("GITHUB_TOKEN", secret), ("CLAUDE_BOTTLE_OAUTH", secret)],
        );
        assert_eq!(o.status.code(), Some(0));
        assert!(!stdout(&o).contains(secret) && !stderr(&o).contains(secret));
    }
}
