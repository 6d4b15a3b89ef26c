use std::process::Command;

use proptest::prelude::*;

use super::*;

fn run_git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.test"])
        .args(args)
        .env_remove("GIT_DIR")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn paths(guards: &[Guard]) -> Vec<(String, GuardKind)> {
    guards
        .iter()
        .map(|g| (g.path.display().to_string(), g.kind))
        .collect()
}

#[test]
fn a_plain_directory_gets_placeholders_for_git_and_every_manifest_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(dir.path()).expect("canonical");
    std::fs::write(root.join("claude-bottle.yml"), "agents: {}\n").expect("write");
    let got = paths(&survey(&root).expect("survey"));
    assert_eq!(
        got,
        vec![
            (".git".into(), GuardKind::PlaceholderDir),
            ("claude-bottle.yaml".into(), GuardKind::PlaceholderDir),
            ("claude-bottle.yml".into(), GuardKind::Existing),
            ("claude-bottle.json".into(), GuardKind::PlaceholderDir),
        ]
    );
}

#[test]
fn a_repository_guards_git_submodule_links_hook_paths_and_includes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(dir.path()).expect("canonical");
    run_git(&root, &["init", "-q"]);
    run_git(&root, &["commit", "-q", "--allow-empty", "-m", "init"]);
    // A checked-out submodule (its own repository) and a link that is not
    // checked out, both as gitlinks in the index.
    let sub = root.join("libs/sub");
    std::fs::create_dir_all(&sub).expect("sub");
    run_git(&sub, &["init", "-q"]);
    run_git(&sub, &["commit", "-q", "--allow-empty", "-m", "s"]);
    let sha = String::from_utf8(
        Command::new("git")
            .arg("-C")
            .arg(&sub)
            .args(["rev-parse", "HEAD"])
            .output()
            .expect("rev-parse")
            .stdout,
    )
    .expect("utf8");
    let sha = sha.trim();
    run_git(
        &root,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{sha},libs/sub"),
        ],
    );
    run_git(
        &root,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{sha},vendor/gone"),
        ],
    );
    run_git(&root, &["config", "core.hooksPath", ".husky/_"]);
    run_git(&root, &["config", "include.path", "../tools/git.cfg"]);
    run_git(
        &root,
        &[
            "config",
            "includeIf.gitdir:/nowhere/.path",
            "/etc/outside.cfg",
        ],
    );
    std::fs::create_dir_all(root.join("tools")).expect("tools");
    std::fs::write(root.join("tools/git.cfg"), "").expect("cfg");
    let guards = survey(&root).expect("survey");
    let got = paths(&guards);
    for want in [
        (".git", GuardKind::Existing),
        ("claude-bottle.yaml", GuardKind::PlaceholderDir),
        ("libs/sub/.git", GuardKind::Existing),
        ("vendor/gone", GuardKind::PlaceholderDir),
        (".husky/_", GuardKind::PlaceholderDir),
        ("tools/git.cfg", GuardKind::Existing),
    ] {
        assert!(
            got.contains(&(want.0.to_owned(), want.1)),
            "missing {want:?} in {got:?}"
        );
    }
    assert!(!got.iter().any(|(p, _)| p.contains("outside")), "{got:?}");

    // Placeholders: missing parents first, created, then removed again.
    let list = placeholders(&root, &guards);
    let rel: Vec<String> = list
        .iter()
        .map(|p| {
            p.path
                .strip_prefix(&root)
                .expect("under root")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        rel,
        vec![
            "claude-bottle.yaml",
            "claude-bottle.yml",
            "claude-bottle.json",
            "vendor",
            "vendor/gone",
            ".husky",
            ".husky/_"
        ]
    );
    create_placeholders(&list).expect("create");
    assert!(root.join("vendor/gone").is_dir() && root.join(".husky/_").is_dir());
    assert!(
        create_placeholders(&list[..1]).is_err(),
        "a path that exists is never reused"
    );
    assert!(remove_placeholders(&list).is_empty());
    for p in &list {
        assert!(!p.path.exists(), "{} removed", p.path.display());
    }
    assert!(
        root.join("tools/git.cfg").exists(),
        "existing files are never removed"
    );
}

#[test]
fn placeholders_that_changed_are_left_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(dir.path()).expect("canonical");
    let list = vec![
        Placeholder {
            path: root.join("d"),
            dir: true,
        },
        Placeholder {
            path: root.join("f"),
            dir: false,
        },
    ];
    create_placeholders(&list).expect("create");
    std::fs::write(root.join("d/kept"), "x").expect("write");
    std::fs::write(root.join("f"), "now a real file").expect("write");
    let warnings = remove_placeholders(&list);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(root.join("d/kept").exists() && root.join("f").exists());
    assert!(
        remove_placeholders(&[Placeholder {
            path: root.join("never"),
            dir: true
        }])
        .is_empty()
    );
}

#[test]
fn symbolic_links_at_guarded_paths_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(dir.path()).expect("canonical");
    std::os::unix::fs::symlink("/etc", root.join(".git")).expect("symlink");
    let err = survey(&root).expect_err("symlinked .git");
    let msg = err.to_string();
    assert!(
        msg.contains(".git is a symbolic link") && msg.contains("--workspace copy"),
        "{msg}"
    );
}

#[test]
fn hooks_path_at_the_root_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(dir.path()).expect("canonical");
    run_git(&root, &["init", "-q"]);
    run_git(&root, &["config", "core.hooksPath", "."]);
    let msg = survey(&root).expect_err("hooksPath .").to_string();
    assert!(
        msg.contains("core.hookspath names the workspace root"),
        "{msg}"
    );
}

#[test]
fn gitlink_listing_parses_only_clean_gitlinks() {
    let listing = b"100644 aaaa 0\tREADME.md\x00160000 bbbb 0\tlibs/sub\x00160000 bbbb 0\tlibs/sub\x00160000 cccc 0\t../evil\x00160000 dddd 0\t/abs\x00garbage\x00160000 eeee 0\twith\ttab\x00";
    assert_eq!(
        parse_gitlinks(listing),
        vec![PathBuf::from("libs/sub"), PathBuf::from("with\ttab")]
    );
    assert!(parse_gitlinks(b"").is_empty());
}

#[test]
fn config_output_parses_origin_key_and_value() {
    let out = b"file:.git/config\x00core.hooksPath\n.githooks\x00command line:\x00include.path\n/x\x00file:/home/o/.gitconfig\x00includeif.gitdir:~/w/.path\n~/w.cfg\x00";
    let got = parse_config_paths(out);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].origin.as_deref(), Some(Path::new(".git/config")));
    assert_eq!(
        (got[0].key.as_str(), got[0].value.as_str()),
        ("core.hookspath", ".githooks")
    );
    assert_eq!(got[1].origin, None);
    assert_eq!(got[2].value, "~/w.cfg");
}

#[test]
fn config_paths_resolve_like_git() {
    let home = Path::new("/home/o");
    let base = Path::new("/w/.git");
    let check = |v: &str, want: Option<&str>| {
        assert_eq!(
            resolve_config_path(v, base, Some(home)).as_deref(),
            want.map(Path::new),
            "{v:?}"
        );
    };
    check("../tools/g.cfg", Some("/w/tools/g.cfg"));
    check("./x/../y", Some("/w/.git/y"));
    check("~/g.cfg", Some("/home/o/g.cfg"));
    check("~", Some("/home/o"));
    check("~bob/g.cfg", None);
    check("", None);
    check("/etc/../w/h", Some("/w/h"));
    assert_eq!(resolve_config_path("~/x", base, None), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A resolved path is absolute and has no `.` or `..` left in it.
    #[test]
    fn resolved_paths_are_clean(value in "[~./a-z]{0,24}") {
        if let Some(p) = resolve_config_path(&value, Path::new("/w/.git"), Some(Path::new("/home/o"))) {
            prop_assert!(p.is_absolute());
            prop_assert!(p.components().all(|c| matches!(c, PathComponent::RootDir | PathComponent::Normal(_))), "{}", p.display());
        }
    }

    /// Any listing parses without a panic to clean relative paths only.
    #[test]
    fn gitlink_parser_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for p in parse_gitlinks(&bytes) {
            prop_assert!(is_clean_relative(&p));
        }
    }

    /// Deduplication keeps no guard under another one.
    #[test]
    fn dedup_leaves_no_nested_guards(paths in proptest::collection::vec("[ab]{1,2}(/[ab]{1,2}){0,2}", 0..8)) {
        let guards: Vec<Guard> = paths.iter().map(|p| Guard { path: PathBuf::from(p), kind: GuardKind::Existing, why: String::new() }).collect();
        let out = dedup(guards);
        for a in &out {
            for b in &out {
                prop_assert!(std::ptr::eq(a, b) || !a.path.starts_with(&b.path));
            }
        }
        for p in &paths {
            prop_assert!(out.iter().any(|g| Path::new(p).starts_with(&g.path)), "{p} is covered");
        }
    }
}
