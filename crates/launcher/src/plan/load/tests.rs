use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, text).expect("write");
    p
}

const GOOD: &str = "agents:\n  dev: {}\n";

#[test]
fn search_order() {
    let cwd = tempfile::tempdir().expect("tmp");
    let home = tempfile::tempdir().expect("tmp");
    let (c, h) = (cwd.path(), home.path());
    // nothing anywhere → embedded
    let l = locate(None, no_env, c, Some(h)).expect("locate");
    assert_eq!((l.source, l.path), (Source::Embedded, None));
    // home
    let hp = write(h, ".claude-bottle/manifest.yml", GOOD);
    assert_eq!(
        locate(None, no_env, c, Some(h)).expect("home").path,
        Some(hp)
    );
    // current dir beats home
    let cp = write(c, "claude-bottle.json", "{\"agents\": {\"dev\": {}}}");
    let l = locate(None, no_env, c, Some(h)).expect("cwd");
    assert_eq!((l.source, l.path), (Source::CurrentDir, Some(cp.clone())));
    // env beats cwd; relative env paths are relative to cwd
    let ep = write(c, "other.yaml", GOOD);
    let env = |k: &str| (k == MANIFEST_ENV).then(|| "other.yaml".to_owned());
    let l = locate(None, env, c, Some(h)).expect("env");
    assert_eq!(
        (l.source, l.path),
        (Source::Env, Some(c.join("other.yaml")))
    );
    assert!(ep.exists());
    // an empty env var is ignored
    let empty = |k: &str| (k == MANIFEST_ENV).then(String::new);
    assert_eq!(
        locate(None, empty, c, Some(h)).expect("empty env").source,
        Source::CurrentDir
    );
    // flag beats everything
    let l = locate(Some(&cp), env, c, Some(h)).expect("flag");
    assert_eq!(l.source, Source::Flag);
}

#[test]
fn missing_named_paths_do_not_fall_through() {
    let cwd = tempfile::tempdir().expect("tmp");
    write(cwd.path(), "claude-bottle.yaml", GOOD);
    let err = locate(
        Some(Path::new("/nonexistent/m.yaml")),
        no_env,
        cwd.path(),
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "manifest /nonexistent/m.yaml (given with --manifest) does not exist; expected a YAML/JSON manifest, a Markdown agent file or a directory of them"
    );
    let env = |_: &str| Some("/nonexistent/env.yaml".to_owned());
    let err = locate(None, env, cwd.path(), None).unwrap_err();
    assert!(
        err.to_string()
            .contains("(named by $CLAUDE_BOTTLE_MANIFEST) does not exist"),
        "{err}"
    );
}

#[test]
fn two_candidates_are_ambiguous() {
    let cwd = tempfile::tempdir().expect("tmp");
    write(cwd.path(), "claude-bottle.yaml", GOOD);
    write(cwd.path(), "claude-bottle.json", "{}");
    let err = locate(None, no_env, cwd.path(), None).unwrap_err();
    assert!(matches!(err, LoadError::Ambiguous(..)), "{err}");
    assert!(
        err.to_string()
            .contains("keep one manifest (or choose with --manifest)"),
        "{err}"
    );
}

#[test]
fn loads_every_form() {
    let d = tempfile::tempdir().expect("tmp");
    let yaml = write(d.path(), "m.yaml", GOOD);
    let flag = |p: &Path| find_and_load(Some(p), no_env, d.path(), None);
    assert_eq!(
        flag(&yaml).expect("yaml").manifest.agents()[0]
            .name()
            .as_str(),
        "dev"
    );
    let md = write(
        d.path(),
        "agents/reviewer.md",
        "---\ndescription: r\n---\nReview.\n",
    );
    write(d.path(), "agents/helper.md", "---\nname: helper\n---\n");
    write(d.path(), "agents/notes.txt", "ignored");
    let one = flag(&md).expect("md");
    assert_eq!(one.manifest.agents()[0].prompt(), Some("Review."));
    let all = flag(&d.path().join("agents")).expect("dir");
    let names: Vec<&str> = all
        .manifest
        .agents()
        .iter()
        .map(|a| a.name().as_str())
        .collect();
    assert_eq!(names, ["helper", "reviewer"]);
    let embedded = find_and_load(None, no_env, d.path(), None).expect("embedded");
    assert_eq!(embedded.manifest.agents()[0].name().as_str(), "claude");
}

#[test]
fn directory_errors_are_collected_across_files() {
    let d = tempfile::tempdir().expect("tmp");
    write(d.path(), "a.md", "---\nbotle: {}\n---\n");
    write(d.path(), "b.md", "no frontmatter");
    write(d.path(), "c.md", "---\nname: a\n---\n");
    let err = find_and_load(Some(d.path()), no_env, d.path(), None).unwrap_err();
    let LoadError::Invalid(e) = err else {
        panic!("{err}")
    };
    let text = e.to_string();
    assert_eq!(e.diagnostics().len(), 2, "{text}");
    assert!(text.contains("a.md:2:1: botle: unknown key"), "{text}");
    assert!(
        text.contains("b.md: a Markdown agent file must start"),
        "{text}"
    );
    // duplicate names across files (once the others are fixed)
    write(d.path(), "a.md", "---\n---\n");
    write(d.path(), "b.md", "---\n---\n");
    let err = find_and_load(Some(d.path()), no_env, d.path(), None).unwrap_err();
    assert!(
        err.to_string()
            .contains("c.md: name: agent name \"a\" is already defined in"),
        "{err}"
    );
}

#[test]
fn io_problems_name_the_file() {
    let d = tempfile::tempdir().expect("tmp");
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let err = find_and_load(Some(&empty), no_env, d.path(), None).unwrap_err();
    assert!(
        err.to_string().contains("has no Markdown agent files"),
        "{err}"
    );
    let bin = d.path().join("bin.yaml");
    std::fs::write(&bin, [0xff, 0xfe, 0x00]).expect("write");
    let err = find_and_load(Some(&bin), no_env, d.path(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("manifest {} is not UTF-8 text", bin.display())
    );
    let big = d.path().join("big.yaml");
    std::fs::write(&big, vec![b'#'; MAX_DOCUMENT_BYTES + 1]).expect("write");
    let err = find_and_load(Some(&big), no_env, d.path(), None).unwrap_err();
    assert!(matches!(err, LoadError::TooLarge(..)), "{err}");
}

#[test]
fn only_the_predecessors_manifest_gets_a_hint() {
    let home = tempfile::tempdir().expect("home");
    let cwd = tempfile::tempdir().expect("cwd");
    let located = locate(None, no_env, cwd.path(), Some(home.path())).expect("locate");
    assert_eq!(located.source, Source::Embedded);
    assert_eq!(predecessor_hint(&located, Some(home.path())), None);
    let old = write(home.path(), PREDECESSOR_MANIFEST, "{\"agents\": {}}");
    let hint = predecessor_hint(&located, Some(home.path())).expect("a hint");
    assert!(
        hint.contains(&old.display().to_string())
            && hint.contains("~/.claude-bottle/manifest.json")
            && hint.contains("launcher validate"),
        "{hint}"
    );
    // A manifest found by the search order needs no hint.
    write(home.path(), ".claude-bottle/manifest.yaml", "agents: {}\n");
    let located = locate(None, no_env, cwd.path(), Some(home.path())).expect("locate");
    assert_eq!(located.source, Source::Home);
    assert_eq!(predecessor_hint(&located, Some(home.path())), None);
}
