//! The gate pushes upstream only what it scanned: file and directory names
//! (also where only a tree changed, as in a rename), commit messages and
//! ref names, not just file contents.

use crate::harness::{RemoteSpec, World, aws_key, world};

fn one() -> World {
    world(&[RemoteSpec {
        name: "app",
        branches: "",
    }])
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Pushes `refspec` and asserts the gate refused it with a masked finding
/// and that nothing reached upstream or the mirror.
fn assert_refused_masked(w: &World, repo: &std::path::Path, refspec: &str) -> String {
    let up = w.upstream_repo("app");
    let before = (
        w.git_ok(&up, &["for-each-ref"]),
        w.git_ok(&w.mirror("app"), &["for-each-ref"]),
    );
    let out = w.git(repo, &["push", "origin", refspec]);
    let err = stderr(&out);
    let key = aws_key();
    assert!(!out.status.success(), "the push must be refused:\n{err}");
    assert!(
        err.contains("secret(s) found") && err.contains("aws-access-key-id"),
        "{err}"
    );
    assert!(
        err.contains("AKIA***"),
        "the finding is shown masked:\n{err}"
    );
    // What the gate says (git's own lines may repeat the agent's refspec).
    let gate_said: String = err.lines().filter(|l| l.starts_with("remote:")).collect();
    assert!(
        !gate_said.contains(&key[4..]),
        "the secret must not be echoed:\n{err}"
    );
    let after = (
        w.git_ok(&up, &["for-each-ref"]),
        w.git_ok(&w.mirror("app"), &["for-each-ref"]),
    );
    assert_eq!(after, before, "nothing may land upstream or in the mirror");
    err
}

#[test]
fn a_secret_used_as_a_file_name_is_refused() {
    let w = one();
    let repo = w.clone("app", "work");
    let name = format!("deploy/{}.txt", aws_key());
    w.commit(&repo, &[(&name, "nothing secret in here\n")], "add file");
    let err = assert_refused_masked(&w, &repo, "main");
    assert!(err.contains("name"), "{err}");
}

#[test]
fn a_secret_used_as_a_nested_directory_name_is_refused() {
    let w = one();
    let repo = w.clone("app", "work");
    let name = format!("a/b/{}/c/notes.md", aws_key());
    w.commit(&repo, &[(&name, "plain text\n")], "add notes");
    assert_refused_masked(&w, &repo, "main");
}

#[test]
fn renaming_a_file_to_a_secret_is_refused() {
    // The blob is unchanged and already on the gate: only the tree is new.
    let w = one();
    let repo = w.clone("app", "work");
    w.git_ok(&repo, &["mv", "README.md", &format!("{}.md", aws_key())]);
    w.git_ok(&repo, &["commit", "--quiet", "-m", "rename"]);
    assert_refused_masked(&w, &repo, "main");
}

#[test]
fn renaming_a_directory_to_a_secret_is_refused() {
    // The subtree is unchanged and already on the gate.
    let w = one();
    let repo = w.clone("app", "work");
    w.commit(&repo, &[("src/lib.rs", "pub fn f() {}\n")], "src");
    w.git_ok(&repo, &["push", "--quiet", "origin", "main"]);
    w.git_ok(&repo, &["mv", "src", &aws_key()]);
    w.git_ok(&repo, &["commit", "--quiet", "-m", "move src"]);
    assert_refused_masked(&w, &repo, "main");
}

#[test]
fn a_secret_in_a_commit_message_is_refused() {
    let w = one();
    let repo = w.clone("app", "work");
    std::fs::write(repo.join("x.txt"), "x\n").expect("write");
    w.git_ok(&repo, &["add", "x.txt"]);
    w.git_ok(
        &repo,
        &[
            "commit",
            "--quiet",
            "-m",
            &format!("use key {} for now", aws_key()),
        ],
    );
    assert_refused_masked(&w, &repo, "main");
}

#[test]
fn a_secret_in_a_branch_name_is_refused() {
    let w = one();
    let repo = w.clone("app", "work");
    let refspec = format!("HEAD:refs/heads/leak/{}", aws_key());
    assert_refused_masked(&w, &repo, &refspec);
}
