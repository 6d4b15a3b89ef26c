//! The operator's working directory (`--cwd`) in protect mode: what is
//! mounted read-only over the agent's read-write bind mount, because the
//! host later executes it or trusts it.
//!
//! Is: [`survey`], which finds, under the workspace root,
//! - `.git` (a directory, or the file of a linked worktree): its config,
//!   hooks, index and modules decide what host git runs (`core.fsmonitor`,
//!   `core.hooksPath`, aliases, hooks; a gitlink the agent adds to the
//!   index makes host `git status` run git, with the config the agent
//!   wrote, in a directory it controls), so all of it is read-only;
//! - `claude-bottle.yaml|yml|json`, the manifest the next `launcher start`
//!   in that directory loads ([`crate::plan::load::CWD_NAMES`]);
//! - the `.git` of every submodule link (recursively), and the directory of
//!   a link that is not checked out: host `git status` runs git inside it;
//! - the directory named by `core.hooksPath` and every file named by
//!   `include.path` / `includeIf.*.path`, when they lie in the workspace;
//!
//! each as a [`Guard`]. What does not exist yet gets an empty placeholder
//! the launcher creates (a directory; an empty file for an included
//! config), records in the bottle's state and removes at teardown
//! ([`create_placeholders`], [`remove_placeholders`]), so the agent cannot
//! create it either. The manifest placeholders are directories, which the
//! manifest search skips, so another `launcher start` there is unaffected.
//!
//! Is not: Docker (the lifecycle turns guards into mounts), copy mode
//! (`archive::stream_directory`), or a guard against everything in the
//! working tree: files that build tools, hook frameworks or editors run
//! from the tree (`Makefile`, `.pre-commit-config.yaml`, `.envrc`, …) are
//! agent-written code, as in any review of agent output (docs/decisions.md).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component as PathComponent, Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::{Deserialize, Serialize};

use crate::plan::load::CWD_NAMES;

/// How deep submodules are followed.
pub const MAX_SUBMODULE_DEPTH: usize = 8;
/// How many submodule links protect mode guards at most.
pub const MAX_GITLINKS: usize = 4096;

/// What a guard mounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardKind {
    /// The path exists and is mounted read-only over itself.
    Existing,
    /// An empty directory the launcher creates first.
    PlaceholderDir,
    /// An empty file the launcher creates first.
    PlaceholderFile,
}

/// One path under the workspace root that the agent sees read-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Guard {
    /// Relative to the workspace root; never empty, never `..`.
    pub path: PathBuf,
    /// Whether it exists or is a placeholder.
    pub kind: GuardKind,
    /// Why the host trusts it.
    pub why: String,
}

/// A placeholder the launcher created in the operator's directory, as
/// recorded in the bottle's state (`placeholders.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placeholder {
    /// Absolute path.
    pub path: PathBuf,
    /// A directory (else an empty file).
    pub dir: bool,
}

/// Why the workspace cannot be protected.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// A guarded path, or a directory above it, is a symbolic link: a
    /// mount there would land wherever the link points.
    #[error(
        "workspace {root}: {path} is a symbolic link, so protect mode cannot mount it read-only; replace the link, or use --workspace copy",
        root = .root.display(), path = .path.display()
    )]
    Symlink {
        /// The workspace.
        root: PathBuf,
        /// The link, relative to the workspace.
        path: PathBuf,
    },
    /// The workspace is (in) a git repository but git is not installed.
    #[error(
        "workspace {}: it is in a git repository, and protect mode needs git on this host to find submodule links and hook paths; install git, or use --workspace copy",
        .0.display()
    )]
    GitMissing(PathBuf),
    /// git failed for another reason than "not a repository".
    #[error("workspace {root}: `git {args}` failed: {message}", root = .root.display())]
    Git {
        /// The directory git ran in.
        root: PathBuf,
        /// Its arguments.
        args: String,
        /// Its message.
        message: String,
    },
    /// More submodule links than [`MAX_GITLINKS`].
    #[error(
        "workspace {}: more than {MAX_GITLINKS} submodule links; protect mode guards each one, use --workspace copy",
        .0.display()
    )]
    TooManySubmodules(PathBuf),
    /// git's configuration names the workspace root itself.
    #[error(
        "workspace {root}: {key} names the workspace root itself, so protect mode would have to make all of it read-only; change {key}, or use --workspace copy",
        root = .root.display()
    )]
    WholeRoot {
        /// The workspace.
        root: PathBuf,
        /// The configuration key.
        key: String,
    },
    /// A file system operation failed.
    #[error("workspace: {action} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

const WHY_GIT: &str = "git metadata: config (core.fsmonitor, hooksPath, aliases), hooks, index and modules decide what host git runs";
const WHY_MANIFEST: &str = "the manifest the next `launcher start` in this directory loads";
const WHY_SUBMODULE: &str =
    "submodule link: host `git status` runs git in it with the config its .git names";
const WHY_HOOKS: &str = "core.hooksPath: hooks host git runs";
const WHY_INCLUDE: &str = "a git config file host git includes";

/// Finds the guards of the workspace `root` (absolute, canonical).
pub fn survey(root: &Path) -> Result<Vec<Guard>, WorkspaceError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut guards = vec![guard(
        root,
        Path::new(".git"),
        GuardKind::PlaceholderDir,
        WHY_GIT,
    )?];
    for name in CWD_NAMES {
        guards.push(guard(
            root,
            Path::new(name),
            GuardKind::PlaceholderDir,
            WHY_MANIFEST,
        )?);
    }
    let Some(top) = toplevel(root)? else {
        return Ok(dedup(guards));
    };
    let mut links = Vec::new();
    collect_gitlinks(root, Path::new(""), 0, &mut links)?;
    for link in links {
        let dot_git = link.join(".git");
        let g = if exists(&root.join(&dot_git)) {
            guard(root, &dot_git, GuardKind::Existing, WHY_SUBMODULE)?
        } else {
            guard(root, &link, GuardKind::PlaceholderDir, WHY_SUBMODULE)?
        };
        guards.push(g);
    }
    let out = git(
        root,
        &[
            "config",
            "--null",
            "--show-origin",
            "--get-regexp",
            r"^(core\.hookspath|include\.path|includeif\..+\.path)$",
        ],
    )?;
    // Exit 1: no such key anywhere.
    let text = match out.status.code() {
        Some(0) => out.stdout,
        Some(1) => Vec::new(),
        _ => return Err(git_error(root, "config --get-regexp", &out)),
    };
    for entry in parse_config_paths(&text) {
        let (base, kind, why) = if entry.key == "core.hookspath" {
            (top.clone(), GuardKind::PlaceholderDir, WHY_HOOKS)
        } else {
            let Some(file) = &entry.origin else { continue };
            let file = root.join(file);
            let dir = file.parent().map(Path::to_owned).unwrap_or_default();
            (dir, GuardKind::PlaceholderFile, WHY_INCLUDE)
        };
        let Some(target) = resolve_config_path(&entry.value, &base, home.as_deref()) else {
            continue;
        };
        let Some(rel) = within(root, &canonical_lenient(&target)) else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            return Err(WorkspaceError::WholeRoot {
                root: root.to_owned(),
                key: entry.key,
            });
        }
        guards.push(guard(root, &rel, kind, why)?);
    }
    Ok(dedup(guards))
}

/// A guard for `rel`: [`GuardKind::Existing`] when it exists, else the
/// placeholder `missing`. Refuses symbolic links on the way.
fn guard(root: &Path, rel: &Path, missing: GuardKind, why: &str) -> Result<Guard, WorkspaceError> {
    let mut at = root.to_owned();
    for c in rel.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(WorkspaceError::Symlink {
                    root: root.to_owned(),
                    path: at.strip_prefix(root).unwrap_or(&at).to_owned(),
                });
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let kind = if exists(&root.join(rel)) {
        GuardKind::Existing
    } else {
        missing
    };
    Ok(Guard {
        path: rel.to_owned(),
        kind,
        why: why.to_owned(),
    })
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Drops guards that lie under (or repeat) another guard.
fn dedup(guards: Vec<Guard>) -> Vec<Guard> {
    let mut out: Vec<Guard> = Vec::new();
    for g in guards {
        if out.iter().any(|o| g.path.starts_with(&o.path)) {
            continue;
        }
        out.retain(|o| !o.path.starts_with(&g.path));
        out.push(g);
    }
    out
}

/// Runs `git -C dir ARGS` with fsmonitor off and the operator's
/// `GIT_DIR`-style overrides removed (they would point elsewhere). Only
/// plumbing that reads (`rev-parse`, `ls-files`, `config`) runs here, none
/// of which executes a command from the repository's configuration, so
/// `safe.directory=*` lets the survey read a workspace owned by another
/// user (the agent's uid, say) instead of failing on it.
fn git(dir: &Path, args: &[&str]) -> Result<Output, WorkspaceError> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "core.fsmonitor=false", "-c", "safe.directory=*"])
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PAGER", "cat")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                WorkspaceError::GitMissing(dir.to_owned())
            } else {
                WorkspaceError::Io {
                    action: "running git in",
                    path: dir.to_owned(),
                    source,
                }
            }
        })
}

fn git_error(dir: &Path, args: &str, out: &Output) -> WorkspaceError {
    WorkspaceError::Git {
        root: dir.to_owned(),
        args: args.to_owned(),
        message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    }
}

/// The top of the work tree `root` is in; `None` outside any repository.
/// Without git, `None` only when no `.git` exists at `root` or above.
fn toplevel(root: &Path) -> Result<Option<PathBuf>, WorkspaceError> {
    let out = match git(root, &["rev-parse", "--show-toplevel"]) {
        Ok(out) => out,
        Err(WorkspaceError::GitMissing(_)) => {
            return if root.ancestors().any(|a| exists(&a.join(".git"))) {
                Err(WorkspaceError::GitMissing(root.to_owned()))
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(e),
    };
    if out.status.success() {
        let top = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
        return Ok(Some(PathBuf::from(top)));
    }
    if String::from_utf8_lossy(&out.stderr).contains("not a git repository") {
        return Ok(None);
    }
    Err(git_error(root, "rev-parse --show-toplevel", &out))
}

/// Submodule links under `root/rel`, recursing into checked-out ones.
fn collect_gitlinks(
    root: &Path,
    rel: &Path,
    depth: usize,
    out: &mut Vec<PathBuf>,
) -> Result<(), WorkspaceError> {
    let dir = root.join(rel);
    let listing = git(&dir, &["ls-files", "--stage", "-z"])?;
    if !listing.status.success() {
        return Err(git_error(&dir, "ls-files --stage -z", &listing));
    }
    for link in parse_gitlinks(&listing.stdout) {
        let path = rel.join(&link);
        if out.contains(&path) {
            continue;
        }
        out.push(path.clone());
        if out.len() > MAX_GITLINKS {
            return Err(WorkspaceError::TooManySubmodules(root.to_owned()));
        }
        if depth + 1 < MAX_SUBMODULE_DEPTH && exists(&root.join(&path).join(".git")) {
            collect_gitlinks(root, &path, depth + 1, out)?;
        }
    }
    Ok(())
}

/// The paths of gitlink entries (mode 160000) in `git ls-files --stage
/// -z` output, deduplicated, skipping anything that is not a clean
/// relative path.
pub fn parse_gitlinks(listing: &[u8]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for record in listing.split(|b| *b == 0) {
        let Some(tab) = record.iter().position(|b| *b == b'\t') else {
            continue;
        };
        let (meta, path) = (&record[..tab], &record[tab + 1..]);
        if !meta.starts_with(b"160000 ") {
            continue;
        }
        let path = PathBuf::from(OsStr::from_bytes(path));
        if is_clean_relative(&path) && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

fn is_clean_relative(p: &Path) -> bool {
    !p.as_os_str().is_empty()
        && p.components()
            .all(|c| matches!(c, PathComponent::Normal(_)))
}

/// One `key value` of `git config --null --show-origin --get-regexp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The file it came from (`file:` origins only), as git printed it.
    pub origin: Option<PathBuf>,
    /// Lowercase key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// Parses `git config --null --show-origin --get-regexp` output: records
/// of `origin NUL key LF value NUL`.
pub fn parse_config_paths(out: &[u8]) -> Vec<ConfigEntry> {
    let mut fields = out.split(|b| *b == 0);
    let mut entries = Vec::new();
    while let (Some(origin), Some(kv)) = (fields.next(), fields.next()) {
        let origin = origin
            .strip_prefix(b"file:")
            .map(|p| PathBuf::from(OsStr::from_bytes(p)));
        let kv = String::from_utf8_lossy(kv);
        let (key, value) = kv.split_once('\n').unwrap_or((&kv, ""));
        entries.push(ConfigEntry {
            origin,
            key: key.to_ascii_lowercase(),
            value: value.to_owned(),
        });
    }
    entries
}

/// Resolves a path value of git's configuration as git does: `~/` is the
/// home directory, an absolute path stays, a relative one is relative to
/// `base`; then `.` and `..` are removed lexically. `None` for an empty
/// value, `~user/` or a `~/` without a home.
pub fn resolve_config_path(value: &str, base: &Path, home: Option<&Path>) -> Option<PathBuf> {
    let joined = if value.is_empty() {
        return None;
    } else if value == "~" {
        home?.to_owned()
    } else if let Some(rest) = value.strip_prefix("~/") {
        home?.join(rest)
    } else if value.starts_with('~') {
        return None;
    } else {
        base.join(value)
    };
    Some(normalize(&joined))
}

/// Removes `.` and resolves `..` lexically (`/a/b/../c` → `/a/c`).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            PathComponent::CurDir => {}
            PathComponent::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `p` with symbolic links resolved as far as it exists.
fn canonical_lenient(p: &Path) -> PathBuf {
    let mut rest: Vec<&OsStr> = Vec::new();
    let mut at = p;
    loop {
        if let Ok(c) = std::fs::canonicalize(at) {
            let mut out = c;
            out.extend(rest.iter().rev());
            return out;
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                at = parent;
            }
            _ => return p.to_owned(),
        }
    }
}

/// `p` relative to `root` when it lies in it (empty for `root` itself).
fn within(root: &Path, p: &Path) -> Option<PathBuf> {
    p.strip_prefix(root).ok().map(Path::to_owned)
}

/// The placeholders `guards` need under `root`, parents first: each
/// missing directory above a placeholder, then the placeholder itself.
/// Record them before calling [`create_placeholders`].
pub fn placeholders(root: &Path, guards: &[Guard]) -> Vec<Placeholder> {
    let mut out: Vec<Placeholder> = Vec::new();
    for g in guards {
        let dir = match g.kind {
            GuardKind::Existing => continue,
            GuardKind::PlaceholderDir => true,
            GuardKind::PlaceholderFile => false,
        };
        let mut at = root.to_owned();
        let comps: Vec<_> = g.path.components().collect();
        for (i, c) in comps.iter().enumerate() {
            at.push(c);
            let last = i + 1 == comps.len();
            if !last && exists(&at) {
                continue;
            }
            let p = Placeholder {
                path: at.clone(),
                dir: dir || !last,
            };
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// Creates `list` in order (directories 0755, files empty 0644). A path
/// that appeared meanwhile is an error: nothing is mounted over it.
pub fn create_placeholders(list: &[Placeholder]) -> Result<(), WorkspaceError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    for p in list {
        let res = if p.dir {
            std::fs::create_dir(&p.path)
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&p.path)
                .map(drop)
        };
        res.map_err(|source| WorkspaceError::Io {
            action: "creating the placeholder",
            path: p.path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Removes `list` in reverse order: directories only when empty, files
/// only when still empty regular files; anything else is left in place
/// with a warning (returned), never deleted.
pub fn remove_placeholders(list: &[Placeholder]) -> Vec<String> {
    let mut warnings = Vec::new();
    for p in list.iter().rev() {
        let res = if p.dir {
            std::fs::remove_dir(&p.path)
        } else {
            match std::fs::symlink_metadata(&p.path) {
                Ok(m) if m.is_file() && m.len() == 0 => std::fs::remove_file(&p.path),
                Ok(_) => {
                    warnings.push(format!(
                        "left {} in place: it is no longer the empty placeholder the launcher created",
                        p.path.display()
                    ));
                    continue;
                }
                Err(e) => Err(e),
            }
        };
        match res {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warnings.push(format!(
                "left placeholder {} in place: {e}",
                p.path.display()
            )),
        }
    }
    warnings
}

#[cfg(test)]
mod tests;
