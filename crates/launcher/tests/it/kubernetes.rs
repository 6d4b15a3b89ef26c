//! `launcher render kubernetes` and `--target kubernetes` as a process:
//! YAML out without a cluster, never a secret value, clear errors.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

const SECRET: &str = "ghp_RENDER_MUST_NEVER_PRINT_THIS";

const MANIFEST: &str = r#"
agents:
  dev:
    bottle:
      egress:
        routes:
          - host: api.github.com
            auth: { scheme: Bearer, token_ref: GITHUB_TOKEN }
      git:
        - { name: app, upstream: "https://github.com/acme/app.git", auth: { token_ref: GITHUB_TOKEN } }
      supervise: true
"#;

/// A directory with stand-ins for the sidecar binaries (their bytes only
/// feed the image tags) and the manifest.
fn setup(dir: &Path) {
    for b in ["egress-proxy", "git-gate", "supervise"] {
        let p = dir.join(b);
        std::fs::write(&p, format!("#!/bin/sh\n# stand-in {b}\nexit 0\n")).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::write(dir.join("claude-bottle.yaml"), MANIFEST).expect("manifest");
}

fn launcher(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_launcher"));
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("HOME", dir)
        .env("GITHUB_TOKEN", SECRET)
        .env("KUBECONFIG", dir.join("no-such-kubeconfig"));
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.output().expect("running the launcher binary")
}

#[test]
fn render_prints_every_object_and_no_secret() {
    let tmp = tempfile::tempdir().expect("tmp");
    setup(tmp.path());
    let bin = tmp.path().to_str().expect("utf8");
    let o = launcher(
        tmp.path(),
        &[
            "render",
            "kubernetes",
            "dev",
            "--bin-dir",
            bin,
            "--claude-code",
            "none",
            "--service-ip",
            "egress=10.96.200.10",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    for kind in [
        "kind: Namespace",
        "kind: ServiceAccount",
        "kind: NetworkPolicy",
        "kind: ConfigMap",
        "kind: Secret",
        "kind: PersistentVolumeClaim",
        "kind: Service",
        "kind: Pod",
    ] {
        assert!(out.contains(kind), "{kind} missing");
    }
    assert!(out.contains("clusterIP: \"10.96.200.10\""));
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "a token was printed"
    );
}

#[test]
fn start_dry_run_renders_without_a_cluster_and_stop_without_one_fails_clearly() {
    let tmp = tempfile::tempdir().expect("tmp");
    setup(tmp.path());
    let bin = tmp.path().to_str().expect("utf8");
    let o = launcher(
        tmp.path(),
        &[
            "start",
            "--target",
            "kubernetes",
            "dev",
            "--dry-run",
            "--bin-dir",
            bin,
            "--claude-code",
            "none",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("name: default-deny"));

    let o = launcher(tmp.path(), &["stop", "--target", "kubernetes", "dev-k3x9a"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no Kubernetes cluster to talk to"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let o = launcher(tmp.path(), &["logs", "--target", "kubernetes", "dev-k3x9a"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`launcher logs` is not yet on kubernetes"),
        "{err}"
    );
}

#[test]
fn render_refuses_what_kubernetes_cannot_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    setup(tmp.path());
    let bin = tmp.path().to_str().expect("utf8");
    let o = launcher(
        tmp.path(),
        &[
            "render",
            "kubernetes",
            "dev",
            "--bin-dir",
            bin,
            "--cwd",
            bin,
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--cwd is not supported with --target kubernetes"),
        "{err}"
    );
}
