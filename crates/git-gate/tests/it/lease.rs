//! The gate never rewrites upstream history it has not seen: its upstream
//! push is leased on the value the gate's mirror holds, and is forced only
//! where the branch rules allow force.

use std::time::Duration;

use crate::harness::{RemoteSpec, World, world, world_with};

const PROTECTED: &str = "{ allow: [\"*\"], protected: [main] }";

/// One remote whose mirror refreshes at most once an hour, so a commit
/// made upstream out of band stays unseen by the gate for the whole test.
fn stale_world(branches: &'static str) -> World {
    world_with(
        &[RemoteSpec {
            name: "app",
            branches,
        }],
        |c| c.refresh_interval = Duration::from_secs(3600),
    )
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A commit pushed straight into the upstream bare repo, as another
/// person's push would land, bypassing the gate.
fn out_of_band_commit(w: &World) -> String {
    let other = w.path("other");
    let up = w.upstream_repo("app");
    w.git_ok(
        w.dir.path(),
        &[
            "clone",
            "--quiet",
            up.to_str().expect("utf-8"),
            other.to_str().expect("utf-8"),
        ],
    );
    let c = w.commit(&other, &[("theirs.txt", "their work\n")], "their commit");
    w.git_ok(&other, &["push", "--quiet", "origin", "main"]);
    c
}

/// Whether upstream `main` still contains `commit`.
fn upstream_keeps(w: &World, commit: &str) -> bool {
    w.git(
        &w.upstream_repo("app"),
        &["merge-base", "--is-ancestor", commit, "refs/heads/main"],
    )
    .status
    .success()
}

fn assert_stale_refusal(w: &World, out: &std::process::Output, theirs: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "the push must fail:\n{err}");
    assert!(
        err.contains("moved since the gate last fetched it")
            && err.contains("fetch")
            && err.contains("rebase"),
        "the agent must be told to fetch and rebase:\n{err}"
    );
    assert!(
        upstream_keeps(w, theirs),
        "the out-of-band commit was lost upstream:\n{err}"
    );
    assert_eq!(
        w.rev(&w.upstream_repo("app"), "refs/heads/main").as_deref(),
        Some(theirs),
        "upstream main must be untouched"
    );
}

/// Clones, lets upstream move out of band, commits on the stale clone and
/// pushes it plainly: through the gate's stale mirror it looks like a
/// fast-forward. Returns the world and the out-of-band commit.
fn push_over_an_unseen_commit(branches: &'static str) -> (World, std::path::PathBuf, String) {
    let w = stale_world(branches);
    let repo = w.clone("app", "work");
    let theirs = out_of_band_commit(&w);
    w.commit(&repo, &[("mine.txt", "my work\n")], "my commit");
    let out = w.git(&repo, &["push", "origin", "main"]);
    assert_stale_refusal(&w, &out, &theirs);
    (w, repo, theirs)
}

#[test]
fn stale_mirror_push_never_overwrites_an_out_of_band_upstream_commit() {
    push_over_an_unseen_commit("");
}

#[test]
fn stale_mirror_force_push_cannot_overwrite_an_unseen_upstream_commit() {
    // An explicit force on an unprotected branch may only overwrite what
    // the gate has seen (and advertised), never a commit it has not.
    let w = stale_world("");
    let repo = w.clone("app", "work");
    let theirs = out_of_band_commit(&w);
    w.git_ok(&repo, &["commit", "--quiet", "--amend", "-m", "rewritten"]);
    let out = w.git(&repo, &["push", "--force", "origin", "main"]);
    assert_stale_refusal(&w, &out, &theirs);
}

#[test]
fn stale_mirror_push_to_a_protected_branch_keeps_upstream_commits() {
    push_over_an_unseen_commit(PROTECTED);
}

#[test]
fn after_a_stale_refusal_fetch_rebase_and_push_lands_both_commits() {
    let (w, repo, theirs) = push_over_an_unseen_commit(PROTECTED);
    // The refusal makes the gate's next ref advertisement refresh, even
    // inside the hour-long debounce, so the advice works.
    w.git_ok(&repo, &["pull", "--quiet", "--rebase", "origin", "main"]);
    let out = w.git(&repo, &["push", "origin", "main"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mine = w.git_ok(&repo, &["rev-parse", "HEAD"]);
    assert!(upstream_keeps(&w, &theirs));
    assert_eq!(
        w.rev(&w.upstream_repo("app"), "refs/heads/main").as_deref(),
        Some(mine.as_str())
    );
}

/// The agent is not bound to git's client: it can send any old value in
/// its push command. Claiming an ancestor of its new commit as the old
/// value must not turn a rewrite of a protected branch into an accepted
/// "fast-forward", even with the mirror perfectly fresh.
#[test]
fn a_forged_old_value_cannot_force_a_protected_branch() {
    let w = world(&[RemoteSpec {
        name: "app",
        branches: PROTECTED,
    }]);
    let repo = w.clone("app", "work");
    let base = w.git_ok(&repo, &["rev-parse", "HEAD"]);
    let a = w.commit(&repo, &[("a.txt", "a\n")], "a");
    w.git_ok(&repo, &["push", "--quiet", "origin", "main"]);
    assert_eq!(
        w.rev(&w.upstream_repo("app"), "refs/heads/main").as_deref(),
        Some(a.as_str())
    );
    // B rewrites main: its parent is `base`, not `a`.
    w.git_ok(&repo, &["reset", "--quiet", "--hard", &base]);
    let b = w.commit(&repo, &[("b.txt", "b\n")], "b");
    // Claims `base` (an ancestor of `b`) as main's old value.
    let (_, text) = w.post_receive_pack(&w.push_body(&repo, &base, &b), false);
    assert_eq!(
        w.rev(&w.upstream_repo("app"), "refs/heads/main").as_deref(),
        Some(a.as_str()),
        "upstream main was rewritten; gate said:\n{text}"
    );
    assert_eq!(
        w.rev(&w.mirror("app"), "refs/heads/main").as_deref(),
        Some(a.as_str())
    );
}
