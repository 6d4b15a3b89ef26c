//! The manifest examples in README.md and docs/manifest.md must stay valid:
//! every fenced `yaml` block that declares `agents:` is parsed.

use manifest::agent::Manifest;

fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```yaml") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn check(rel: &str) -> usize {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut checked = 0;
    for (i, block) in yaml_blocks(&text).iter().enumerate() {
        if !block.lines().any(|l| l.starts_with("agents:")) {
            continue;
        }
        if let Err(e) = Manifest::parse(block, &format!("{rel} block {i}")) {
            panic!("{rel}: example {i} no longer validates:\n{e}\n---\n{block}");
        }
        checked += 1;
    }
    checked
}

#[test]
fn readme_manifest_example_is_valid() {
    assert!(check("README.md") >= 1);
}

#[test]
fn reference_manifest_examples_are_valid() {
    assert!(check("docs/manifest.md") >= 1);
}
