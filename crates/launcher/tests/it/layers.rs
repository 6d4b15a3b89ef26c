//! The library's layers import downwards only (ARCHITECTURE.md): the plan
//! never reaches for an engine, an engine never for the lifecycle or the
//! approval loop, the lifecycle never for the approval loop.

use std::path::{Path, PathBuf};

/// Every `.rs` file of a layer: its root module and its directory.
fn layer_files(layer: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = vec![src.join(format!("{layer}.rs"))];
    let mut dirs = vec![src.join(layer)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

/// The lines of `layer` (comments skipped) that name a module of
/// `forbidden`.
fn violations(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in layer_files(layer) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for f in forbidden {
                if code.contains(&format!("crate::{f}")) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn the_plan_layer_imports_no_engine_lifecycle_or_approval_code() {
    assert!(!layer_files("plan").is_empty());
    let v = violations("plan", &["engine", "lifecycle", "approvals", "dashboard"]);
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn the_engine_layer_imports_no_lifecycle_or_approval_code() {
    let v = violations("engine", &["lifecycle", "approvals", "dashboard"]);
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn the_lifecycle_layer_imports_no_approval_code() {
    let v = violations("lifecycle", &["approvals", "dashboard"]);
    assert!(v.is_empty(), "{v:#?}");
}
