//! `--upstream-ca` plus the system roots is exactly what the gate trusts for
//! its upstream: TLS and git-config variables in the daemon's environment
//! change nothing. These run the real `git-gate` binary with a hostile
//! environment against an HTTPS upstream on 127.0.0.1 whose certificate
//! comes from a test CA.

use crate::harness::{GateBin, RemoteSpec, TestCa, World, world_full};

struct Tls {
    w: World,
    ca: TestCa,
    _ca_dir: tempfile::TempDir,
}

fn tls_world() -> Tls {
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(ca_dir.path(), "upstream");
    let w = world_full(
        &[RemoteSpec {
            name: "app",
            branches: "",
        }],
        Some(&ca),
        |_| {},
    );
    Tls {
        w,
        ca,
        _ca_dir: ca_dir,
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Clones through `gate`, then pushes a new branch. Returns whether the
/// clone got upstream's files (the gate's refresh reached upstream), the
/// push's output, and whether upstream got the branch.
fn clone_and_push(w: &World, gate: &GateBin, into: &str) -> (bool, std::process::Output, bool) {
    let dest = w.path(into);
    let out = w.git(
        w.dir.path(),
        &["clone", &gate.url("app"), dest.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let cloned = dest.join("README.md").exists();
    w.commit(&dest, &[("new.txt", "new\n")], "new");
    // A branch per clone: the upstream is shared by every call.
    let branch = format!("refs/heads/topic-{into}");
    let pushed = w.git(&dest, &["push", "origin", &format!("HEAD:{branch}")]);
    let landed = w.rev(&w.upstream_repo("app"), &branch).is_some();
    (cloned, pushed, landed)
}

#[test]
fn trust_variables_in_the_gates_environment_do_not_change_trust() {
    let t = tls_world();
    let ca = t.ca.cert_path.to_str().expect("utf-8").to_owned();
    let ca_dir =
        t.ca.cert_path
            .parent()
            .expect("dir")
            .to_str()
            .expect("utf-8")
            .to_owned();
    let global = t.w.path("hostile.gitconfig");
    std::fs::write(
        &global,
        format!("[http]\n\tsslVerify = false\n\tsslCAInfo = {ca}\n"),
    )
    .expect("write");
    let global = global.to_str().expect("utf-8").to_owned();
    let hostile: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("GIT_SSL_CAINFO", vec![("GIT_SSL_CAINFO", ca.as_str())]),
        ("GIT_SSL_NO_VERIFY", vec![("GIT_SSL_NO_VERIFY", "1")]),
        ("GIT_SSL_CAPATH", vec![("GIT_SSL_CAPATH", ca_dir.as_str())]),
        ("SSL_CERT_FILE", vec![("SSL_CERT_FILE", ca.as_str())]),
        ("CURL_CA_BUNDLE", vec![("CURL_CA_BUNDLE", ca.as_str())]),
        (
            "GIT_CONFIG_GLOBAL",
            vec![("GIT_CONFIG_GLOBAL", global.as_str())],
        ),
        (
            "GIT_CONFIG_PARAMETERS",
            vec![("GIT_CONFIG_PARAMETERS", "'http.sslverify'='false'")],
        ),
        (
            "GIT_CONFIG_COUNT",
            vec![
                ("GIT_CONFIG_COUNT", "1"),
                ("GIT_CONFIG_KEY_0", "http.sslVerify"),
                ("GIT_CONFIG_VALUE_0", "false"),
            ],
        ),
    ];
    for (i, (what, env)) in hostile.iter().enumerate() {
        let gate = GateBin::spawn(&t.w, &[], env, None);
        let (cloned, pushed, landed) = clone_and_push(&t.w, &gate, &format!("work-{i}"));
        let err = stderr(&pushed);
        assert!(!cloned, "{what}: the gate's refresh trusted the upstream");
        assert!(
            !pushed.status.success() && !landed,
            "{what}: the push went through:\n{err}\n{}",
            gate.log()
        );
        assert!(
            err.contains("certificate") || err.contains("SSL"),
            "{what}: the refusal must be about the certificate:\n{err}"
        );
    }
}

#[test]
fn the_upstream_ca_flag_is_trusted() {
    let t = tls_world();
    let ca = t.ca.cert_path.to_str().expect("utf-8").to_owned();
    let gate = GateBin::spawn(&t.w, &["--upstream-ca", &ca], &[], None);
    let (cloned, pushed, landed) = clone_and_push(&t.w, &gate, "work");
    assert!(cloned, "the clone has upstream's files");
    assert!(pushed.status.success() && landed, "{}", stderr(&pushed));
}
