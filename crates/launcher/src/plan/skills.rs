//! Reading the agent's skill directories on the host into the list of files
//! the plan copies into `~/.claude/skills/<name>/`.
//!
//! A skill is a directory (as written in the manifest, relative to the
//! manifest's directory); its name is the directory's name. Regular files
//! only: a symlink is refused (it could pull any host file into the agent),
//! and the total size is capped.

use std::path::{Path, PathBuf};

use crate::plan::SkillFile;

/// Largest total size of all skill files.
pub const MAX_SKILL_BYTES: u64 = 16 * 1024 * 1024;

/// Why the skills could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SkillError {
    /// The path is not a directory.
    #[error(
        "skill {0}: not a directory; a skill is a directory (e.g. skills/review with a SKILL.md)"
    )]
    NotADirectory(PathBuf),
    /// A symlink inside a skill.
    #[error(
        "skill file {0} is a symlink; skills are copied as regular files only (replace the link with the file)"
    )]
    Symlink(PathBuf),
    /// Too big.
    #[error(
        "skills total more than {MAX_SKILL_BYTES} bytes (at {0}); keep skills small, they are copied into every bottle"
    )]
    TooLarge(PathBuf),
    /// Two skills with one name.
    #[error("two skills are named {0:?}; skill directory names must be unique")]
    Duplicate(String),
    /// A file name that is not UTF-8.
    #[error("skill file {0} has a name that is not UTF-8")]
    BadName(PathBuf),
    /// Reading failed.
    #[error("reading skill {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Every file of the skill directories `dirs` (relative ones resolved
/// against `base`), in a stable order.
pub fn collect(base: &Path, dirs: &[String]) -> Result<Vec<SkillFile>, SkillError> {
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut total = 0u64;
    for d in dirs {
        let dir = base.join(d);
        let meta = std::fs::symlink_metadata(&dir).map_err(|source| SkillError::Io {
            path: dir.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(SkillError::NotADirectory(dir));
        }
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| SkillError::BadName(dir.clone()))?
            .to_owned();
        if names.contains(&name) {
            return Err(SkillError::Duplicate(name));
        }
        names.push(name.clone());
        walk(&dir, &dir, &name, &mut out, &mut total)?;
    }
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    skill: &str,
    out: &mut Vec<SkillFile>,
    total: &mut u64,
) -> Result<(), SkillError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SkillError::Io { path, source }
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort();
    for path in entries {
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.file_type().is_symlink() {
            return Err(SkillError::Symlink(path));
        }
        if meta.is_dir() {
            walk(root, &path, skill, out, total)?;
            continue;
        }
        *total += meta.len();
        if *total > MAX_SKILL_BYTES {
            return Err(SkillError::TooLarge(path));
        }
        let relative = path
            .strip_prefix(root)
            .ok()
            .and_then(|r| r.to_str())
            .ok_or_else(|| SkillError::BadName(path.clone()))?
            .to_owned();
        use std::os::unix::fs::PermissionsExt as _;
        out.push(SkillFile {
            skill: skill.to_owned(),
            relative,
            executable: meta.permissions().mode() & 0o111 != 0,
            host_path: path,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
