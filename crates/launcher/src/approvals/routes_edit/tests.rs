use super::*;

const LIVE: &str = "version: 1\nroutes:\n  - host: api.github.com\n";
const GOOD: &str = "version: 1\nroutes:\n  - host: api.github.com\n  - host: pypi.org\n";
const BAD: &str = "version: 1\nroutes:\n  - host: api.github.com\n    paths: [/x]\n";

fn run(interactive: bool, outputs: &[&str]) -> (Result<Edited, EditError>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    let mut seen = Vec::new();
    let mut i = 0;
    let mut editor = |p: &Path| {
        seen.push(std::fs::read_to_string(p).unwrap());
        let out = outputs.get(i).copied().unwrap_or(BAD);
        i += 1;
        std::fs::write(p, out).map_err(|e| e.to_string())
    };
    let r = edit("dev-k3x9a", LIVE, &file, interactive, &mut editor);
    (r, seen)
}

#[test]
fn a_valid_edit_returns_the_new_table() {
    let (r, seen) = run(false, &[GOOD]);
    let Ok(Edited::Changed(t)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(t.routes().len(), 2);
    assert!(seen[0].starts_with("# launcher: live routes of bottle dev-k3x9a"));
    assert!(seen[0].ends_with(LIVE));
}

#[test]
fn an_invalid_edit_without_a_terminal_fails_naming_the_problem() {
    let (r, seen) = run(false, &[BAD]);
    let Err(EditError::Invalid(msg)) = r else {
        panic!("{r:?}")
    };
    assert!(msg.contains("paths"), "{msg}");
    assert_eq!(seen.len(), 1);
}

#[test]
fn a_mistake_reopens_the_editor_with_the_error_then_applies_the_fix() {
    let (r, seen) = run(true, &[BAD, GOOD]);
    assert!(matches!(r, Ok(Edited::Changed(_))), "{r:?}");
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].contains("THE LAST EDIT WAS NOT APPLIED"),
        "{}",
        seen[1]
    );
    assert!(seen[1].contains("# launcher:   "), "{}", seen[1]);
    assert!(
        seen[1].ends_with(BAD),
        "the operator's text is kept: {}",
        seen[1]
    );
}

#[test]
fn saving_the_same_mistake_again_gives_up() {
    let (r, seen) = run(true, &[BAD, BAD, BAD]);
    assert!(matches!(r, Err(EditError::Invalid(_))), "{r:?}");
    assert_eq!(seen.len(), 2);
}

#[test]
fn unchanged_or_emptied_files_cancel() {
    assert_eq!(run(false, &[LIVE]).0, Ok(Edited::Unchanged));
    assert_eq!(run(false, &["# nothing\n"]).0, Ok(Edited::Unchanged));
    assert_eq!(run(false, &[""]).0, Ok(Edited::Unchanged));
}

#[test]
fn a_failing_editor_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = edit("b", LIVE, &dir.path().join("r.yaml"), true, &mut |_| {
        Err("exit 1".into())
    });
    assert!(matches!(r, Err(EditError::Editor(_))), "{r:?}");
}

#[test]
fn the_editor_command_prefers_visual_then_editor_then_vi() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    assert_eq!(
        editor_command(env(&[("VISUAL", "nano"), ("EDITOR", "ed")])),
        "nano"
    );
    assert_eq!(
        editor_command(env(&[("VISUAL", " "), ("EDITOR", "ed")])),
        "ed"
    );
    assert_eq!(editor_command(env(&[])), "vi");
}

#[test]
fn run_editor_passes_the_file_and_reports_failure() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a b.yaml");
    std::fs::write(&f, "x").unwrap();
    run_editor("sh -c 'echo edited > \"$0\"'", &f).unwrap();
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "edited\n");
    let e = run_editor("false", &f).unwrap_err();
    assert!(e.contains("exited"), "{e}");
}

#[test]
fn the_same_loop_checks_a_pipelock_config() {
    let live = crate::approvals::apply::tests::PIPELOCK_CONFIG_TEXT;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipelock.yaml");
    let outputs = [
        live.replace("enabled: true", "enabled: false"),
        live.replace("strict", "audit"),
    ];
    let mut seen = Vec::new();
    let mut editor = |p: &Path| {
        seen.push(std::fs::read_to_string(p).unwrap());
        std::fs::write(p, &outputs[seen.len() - 1]).map_err(|e| e.to_string())
    };
    let r = edit_checked(
        "pipelock config of bottle dev-k3x9a",
        live,
        &file,
        true,
        &mut editor,
        &crate::approvals::apply::check_pipelock_config,
        &|c: &crate::approvals::apply::PipelockConfigText| c.text() == live,
    );
    let Ok(Edited::Changed(c)) = r else {
        panic!("{r:?}")
    };
    assert!(c.text().contains("mode: audit"));
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].contains("# launcher:   forward_proxy.enabled: must stay true"),
        "{}",
        seen[1]
    );
    // Saved unchanged: nothing to apply.
    let mut same = |_: &Path| Ok(());
    let r = edit_checked(
        "pipelock",
        live,
        &file,
        false,
        &mut same,
        &crate::approvals::apply::check_pipelock_config,
        &|c: &crate::approvals::apply::PipelockConfigText| c.text() == live,
    );
    assert!(matches!(r, Ok(Edited::Unchanged)), "{r:?}");
}
