//! `git-gate scan PATH…|-`: the scanner on files, directories or stdin.

use std::io::Write;
use std::path::Path;

use secret_scan::RuleSet;

/// Scans each path (directories recursively, skipping `.git`; `-` is stdin),
/// printing one line per finding plus its excerpt to `out`. Returns the
/// number of findings; unreadable paths are errors naming the path.
pub fn scan_paths(
    rules: &RuleSet,
    paths: &[String],
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    use anyhow::Context as _;
    let mut count = 0;
    for p in paths {
        if p == "-" {
            let fs = rules
                .scan_reader(std::io::stdin().lock(), Some("<stdin>"))
                .context("reading stdin")?;
            count += print(&fs, out)?;
            continue;
        }
        let mut stack = vec![Path::new(p).to_path_buf()];
        while let Some(path) = stack.pop() {
            let meta = std::fs::metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if meta.is_dir() {
                if path.file_name().is_some_and(|n| n == ".git") {
                    continue;
                }
                let mut entries: Vec<_> = std::fs::read_dir(&path)
                    .with_context(|| format!("cannot list {}", path.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                entries.sort();
                stack.extend(entries.into_iter().rev());
            } else {
                let file = std::fs::File::open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                let name = path.display().to_string();
                let fs = rules
                    .scan_reader(std::io::BufReader::new(file), Some(&name))
                    .with_context(|| format!("reading {name}"))?;
                count += print(&fs, out)?;
            }
        }
    }
    Ok(count)
}

fn print(fs: &[secret_scan::Finding], out: &mut impl Write) -> anyhow::Result<usize> {
    for f in fs {
        writeln!(
            out,
            "{}:{}:{}: {} ({})\n    {}",
            f.path.as_deref().unwrap_or("-"),
            f.line,
            f.column,
            f.rule_id,
            f.description,
            f.excerpt
        )?;
    }
    Ok(fs.len())
}
