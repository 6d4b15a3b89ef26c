use std::os::unix::fs::PermissionsExt as _;

use super::*;

#[test]
fn collects_files_recursively_with_names_and_modes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let review = tmp.path().join("skills/review");
    std::fs::create_dir_all(review.join("bin")).expect("mkdir");
    std::fs::write(review.join("SKILL.md"), "# Review").expect("write");
    std::fs::write(review.join("bin/run.sh"), "#!/bin/sh").expect("write");
    std::fs::set_permissions(
        review.join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let files = collect(tmp.path(), &["skills/review".into()]).expect("collect");
    let got: Vec<(&str, &str, bool)> = files
        .iter()
        .map(|f| (f.skill.as_str(), f.relative.as_str(), f.executable))
        .collect();
    assert_eq!(
        got,
        vec![
            ("review", "SKILL.md", false),
            ("review", "bin/run.sh", true)
        ]
    );
}

#[test]
fn refuses_symlinks_missing_dirs_and_duplicates_by_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a/review");
    std::fs::create_dir_all(&a).expect("mkdir");
    std::os::unix::fs::symlink("/etc/passwd", a.join("passwd")).expect("symlink");
    let err = collect(tmp.path(), &["a/review".into()]).expect_err("symlink");
    assert!(
        err.to_string().contains("symlink") && err.to_string().contains("passwd"),
        "{err}"
    );

    let err = collect(tmp.path(), &["nope".into()]).expect_err("missing");
    assert!(err.to_string().contains("nope"), "{err}");

    std::fs::remove_file(a.join("passwd")).expect("rm");
    let b = tmp.path().join("b/review");
    std::fs::create_dir_all(&b).expect("mkdir");
    let err = collect(tmp.path(), &["a/review".into(), "b/review".into()]).expect_err("duplicate");
    assert!(err.to_string().contains("\"review\""), "{err}");
}
