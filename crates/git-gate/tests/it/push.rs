use crate::harness::{RemoteSpec, World, aws_key, private_key, world};

fn one(branches: &'static str) -> World {
    world(&[RemoteSpec {
        name: "app",
        branches,
    }])
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Upstream and mirror `main` before, for "nothing landed" checks.
fn tips(w: &World) -> (Option<String>, Option<String>) {
    (
        w.rev(&w.upstream_repo("app"), "refs/heads/main"),
        w.rev(&w.mirror("app"), "refs/heads/main"),
    )
}

#[test]
fn clone_then_clean_push_lands_upstream_and_in_mirror() {
    let w = one("");
    let repo = w.clone("app", "work");
    assert!(repo.join("README.md").exists());
    // The token lives only in the gate's environment: not in the mirror's
    // config, not in the agent's clone.
    for cfg in [w.mirror("app").join("config"), repo.join(".git/config")] {
        let text = std::fs::read_to_string(&cfg).expect("read config");
        assert!(
            !text.contains(crate::harness::TOKEN),
            "{}: {text}",
            cfg.display()
        );
    }
    assert_eq!(
        w.git_ok(&repo, &["remote", "get-url", "origin"]),
        w.gate_url("app")
    );
    let head = w.commit(
        &repo,
        &[("src/lib.rs", "pub fn answer() -> u32 { 42 }\n")],
        "add lib",
    );
    let out = w.git(&repo, &["push", "origin", "main"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("git-gate: push accepted"), "{err}");
    assert_eq!(
        w.rev(&w.upstream_repo("app"), "refs/heads/main").as_deref(),
        Some(head.as_str())
    );
    assert_eq!(
        w.rev(&w.mirror("app"), "refs/heads/main").as_deref(),
        Some(head.as_str())
    );
    // A new branch too.
    w.git_ok(&repo, &["checkout", "--quiet", "-b", "feature/x"]);
    let f = w.commit(&repo, &[("notes.txt", "hello\n")], "notes");
    w.git_ok(&repo, &["push", "--quiet", "origin", "feature/x"]);
    assert_eq!(
        w.rev(&w.upstream_repo("app"), "refs/heads/feature/x")
            .as_deref(),
        Some(f.as_str())
    );
}

#[test]
fn push_with_aws_key_is_rejected_and_nothing_lands() {
    let w = one("");
    let repo = w.clone("app", "work");
    let before = tips(&w);
    let key = aws_key();
    w.commit(
        &repo,
        &[(
            "deploy/config.py",
            &format!("REGION = 'eu-west-1'\nAWS_ACCESS_KEY_ID = '{key}'\n"),
        )],
        "config",
    );
    let out = w.git(&repo, &["push", "origin", "main"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "push should fail:\n{err}");
    assert!(err.contains("push rejected: 1 secret(s) found"), "{err}");
    assert!(err.contains("deploy/config.py:2:22 (commit "), "{err}");
    assert!(err.contains("aws-access-key-id"), "{err}");
    assert!(err.contains("AKIA***"), "{err}");
    assert!(err.contains("To fix:"), "{err}");
    assert!(
        !err.contains(&key[4..]),
        "the secret must not be echoed:\n{err}"
    );
    assert_eq!(tips(&w), before, "upstream and mirror unchanged");
}

#[test]
fn push_with_private_key_is_rejected() {
    let w = one("");
    let repo = w.clone("app", "work");
    let before = tips(&w);
    w.commit(&repo, &[("keys/id_rsa.pem", &private_key())], "oops");
    let out = w.git(&repo, &["push", "origin", "main"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("keys/id_rsa.pem:1:1") && err.contains("private-key"),
        "{err}"
    );
    assert!(!err.contains("MIIEowIBAAKCAQEA"), "{err}");
    assert_eq!(tips(&w), before);
}

#[test]
fn secret_added_then_removed_in_the_same_push_is_still_rejected() {
    let w = one("");
    let repo = w.clone("app", "work");
    let before = tips(&w);
    w.commit(
        &repo,
        &[("app.env", &format!("KEY={}\n", aws_key()))],
        "add key",
    );
    w.git_ok(&repo, &["rm", "--quiet", "app.env"]);
    w.git_ok(&repo, &["commit", "--quiet", "-m", "remove key"]);
    let out = w.git(&repo, &["push", "origin", "main"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("app.env:1:5") && err.contains("history keeps it"),
        "{err}"
    );
    assert_eq!(tips(&w), before);
}

#[test]
fn push_to_a_disallowed_branch_is_rejected() {
    let w = one("{ allow: [main, \"feature/*\"], protected: [main] }");
    let repo = w.clone("app", "work");
    w.git_ok(&repo, &["checkout", "--quiet", "-b", "release/1.0"]);
    w.commit(&repo, &[("a.txt", "a\n")], "a");
    let out = w.git(&repo, &["push", "origin", "release/1.0"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("refusing to update refs/heads/release/1.0")
            && err.contains("main, feature/*"),
        "{err}"
    );
    assert_eq!(
        w.rev(&w.upstream_repo("app"), "refs/heads/release/1.0"),
        None
    );
    assert_eq!(w.rev(&w.mirror("app"), "refs/heads/release/1.0"), None);
}

#[test]
fn force_push_and_delete_on_protected_branch_are_rejected() {
    let w = one("{ allow: [\"*\"], protected: [main] }");
    let repo = w.clone("app", "work");
    let before = tips(&w);
    w.git_ok(
        &repo,
        &["commit", "--quiet", "--amend", "-m", "rewritten history"],
    );
    let out = w.git(&repo, &["push", "--force", "origin", "main"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("refusing non-fast-forward update of protected refs/heads/main"),
        "{err}"
    );
    assert_eq!(tips(&w), before);
    let out = w.git(&repo, &["push", "origin", ":main"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert_eq!(tips(&w), before);
    // Force-pushing an unprotected branch is fine.
    w.git_ok(&repo, &["checkout", "--quiet", "-b", "topic"]);
    w.commit(&repo, &[("t.txt", "1\n")], "t1");
    w.git_ok(&repo, &["push", "--quiet", "origin", "topic"]);
    w.git_ok(&repo, &["commit", "--quiet", "--amend", "-m", "t1 again"]);
    let out = w.git(&repo, &["push", "--force", "origin", "topic"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn upstream_refusal_reaches_the_agent_and_mirror_is_unchanged() {
    let w = one("");
    let hook = w.upstream_repo("app").join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'policy: commits to main need a signed-off-by line' >&2\nexit 1\n",
    )
    .expect("write hook");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let repo = w.clone("app", "work");
    let before = tips(&w);
    w.commit(&repo, &[("x.txt", "x\n")], "x");
    let out = w.git(&repo, &["push", "origin", "main"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("policy: commits to main need a signed-off-by line"),
        "{err}"
    );
    assert!(err.contains("upstream") && err.contains("refused"), "{err}");
    assert!(!err.contains(crate::harness::TOKEN), "{err}");
    assert_eq!(tips(&w), before);
}

#[test]
fn concurrent_pushes_to_different_remotes_both_land() {
    let w = world(&[
        RemoteSpec {
            name: "one",
            branches: "",
        },
        RemoteSpec {
            name: "two",
            branches: "",
        },
    ]);
    let r1 = w.clone("one", "w1");
    let r2 = w.clone("two", "w2");
    let h1 = w.commit(&r1, &[("a.txt", "1\n")], "one");
    let h2 = w.commit(&r2, &[("b.txt", "2\n")], "two");
    let root = w.dir.path().to_path_buf();
    let (ra, rb) = (root.clone(), root.clone());
    let t1 =
        std::thread::spawn(move || crate::harness::git_in(&ra, &r1, &["push", "origin", "main"]));
    let t2 =
        std::thread::spawn(move || crate::harness::git_in(&rb, &r2, &["push", "origin", "main"]));
    let (o1, o2) = (t1.join().expect("thread"), t2.join().expect("thread"));
    assert!(o1.status.success(), "{}", stderr(&o1));
    assert!(o2.status.success(), "{}", stderr(&o2));
    assert_eq!(
        w.rev(&w.upstream_repo("one"), "main").as_deref(),
        Some(h1.as_str())
    );
    assert_eq!(
        w.rev(&w.upstream_repo("two"), "main").as_deref(),
        Some(h2.as_str())
    );
}

#[test]
fn many_commits_and_a_large_blob_stream_through() {
    let w = one("");
    let repo = w.clone("app", "work");
    // 2000 commits via fast-import, plus one 24 MiB blob (three scanner
    // chunks) with a secret past the first chunk boundary. GIT_GATE_BIG_TESTS=1
    // runs the full-size variant: 10k commits and a 100 MiB blob.
    let big_run = std::env::var_os("GIT_GATE_BIG_TESTS").is_some();
    let (commits, blob_mib) = if big_run { (10_000, 100) } else { (2000, 24) };
    if !big_run {
        println!("note: set GIT_GATE_BIG_TESTS=1 for the 10k-commit / 100 MiB variant");
    }
    let mut fi = String::new();
    let head = w.git_ok(&repo, &["rev-parse", "HEAD"]);
    for i in 0..commits {
        let content = format!("line {i}\n");
        fi.push_str(&format!(
            "commit refs/heads/main\ncommitter A <a@b.invalid> {} +0000\ndata 4\nc{:03}\n{}M 100644 inline f{}.txt\ndata {}\n{content}\n",
            1_700_000_000 + i,
            i % 1000,
            if i == 0 { format!("from {head}\n") } else { String::new() },
            i % 50,
            content.len()
        ));
    }
    let import = std::process::Command::new("git")
        .current_dir(&repo)
        .env_clear()
        .envs(w.env())
        .args(["fast-import", "--quiet", "--force"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("fast-import");
    {
        use std::io::Write;
        let mut stdin = import.stdin.as_ref().expect("stdin");
        stdin.write_all(fi.as_bytes()).expect("feed fast-import");
    }
    let st = import.wait_with_output().expect("fast-import");
    assert!(st.status.success());
    w.git_ok(&repo, &["reset", "--quiet", "--hard", "main"]);
    let mut big = String::with_capacity((blob_mib + 1) << 20);
    while big.len() < blob_mib << 20 {
        big.push_str("fn filler() -> usize { 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 }\n");
    }
    let clean_head = w.commit(&repo, &[("big.rs", &big)], "big clean file");
    let out = w.git(&repo, &["push", "origin", "main"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("scanned {} commit(s)", commits + 1)),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        w.rev(&w.upstream_repo("app"), "main").as_deref(),
        Some(clean_head.as_str())
    );
    // Now a secret deep inside a large file.
    big.push_str(&format!("const K: &str = \"{}\";\n", aws_key()));
    w.commit(&repo, &[("big.rs", &big)], "big with secret");
    let out = w.git(&repo, &["push", "origin", "main"]);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("big.rs:") && err.contains("aws-access-key-id"),
        "{err}"
    );
    assert_eq!(
        w.rev(&w.upstream_repo("app"), "main").as_deref(),
        Some(clean_head.as_str())
    );
}

#[test]
fn push_over_the_size_cap_fails_and_nothing_lands() {
    let w = crate::harness::world_with(
        &[RemoteSpec {
            name: "app",
            branches: "",
        }],
        |c| c.max_push_bytes = 256 << 10,
    );
    let repo = w.clone("app", "work");
    let before = tips(&w);
    // 1 MiB of incompressible-ish text: the pack exceeds the 256 KiB cap.
    let mut text = String::new();
    let mut x: u64 = 7;
    while text.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.push_str(&format!("{x:016x}\n"));
    }
    w.commit(&repo, &[("data.txt", &text)], "big");
    let out = w.git(&repo, &["push", "origin", "main"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("push accepted"), "{err}");
    eprintln!("{err}");
    assert_eq!(tips(&w), before);
}

#[test]
fn many_findings_are_counted_and_the_list_is_bounded() {
    let w = one("");
    let repo = w.clone("app", "work");
    let key = aws_key();
    let text: String = (0..50)
        .map(|i| format!("k{i} = {}{}\n", &key[..19], (b'A' + (i % 26) as u8) as char))
        .collect();
    w.commit(&repo, &[("keys.txt", &text)], "keys");
    let out = w.git(&repo, &["push", "origin", "main"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("push rejected: 50 secret(s) found") && err.contains("… and 30 more"),
        "{err}"
    );
}

#[test]
fn first_push_to_an_empty_upstream_works() {
    let w = one("");
    let up = w.upstream_repo("app");
    w.git_ok(&up, &["update-ref", "-d", "refs/heads/main"]);
    let repo = w.clone("app", "work");
    let head = w.commit(&repo, &[("first.txt", "hello\n")], "first");
    let out = w.git(&repo, &["push", "origin", "HEAD:refs/heads/main"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        w.rev(&up, "refs/heads/main").as_deref(),
        Some(head.as_str())
    );
    assert_eq!(
        w.rev(&w.mirror("app"), "refs/heads/main").as_deref(),
        Some(head.as_str())
    );
}
