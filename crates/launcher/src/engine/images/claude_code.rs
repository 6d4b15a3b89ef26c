//! Claude Code for the default agent image: where it comes from (an
//! operator's `npm pack` tarball, else the npm registry through the host's
//! own `npm`, else nowhere) and how a tarball becomes part of the build
//! context.
//!
//! Is: validating a tarball (a gzip tar with `package/package.json` naming
//! `@anthropic-ai/claude-code` and a `bin.claude` file), unpacking it into
//! an overlay of the agent's root file system (the package under
//! `/usr/local/lib/node_modules`, `/usr/local/bin/claude` linking to its
//! bin) with every file root-owned and 0644/0755, and the labels that tell
//! the preflight which version an image holds.
//!
//! Is not: npm. No registry host is named here; `npm pack` uses whatever
//! registry the operator's npm is configured with. The package is installed
//! without npm (it has no dependencies, only optional image codecs), so the
//! image needs Node.js and nothing else.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Component as PathComponent, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// The npm package.
pub const PACKAGE: &str = "@anthropic-ai/claude-code";
/// The environment variable naming a tarball (or `none`), like `--claude-code`.
pub const ENV: &str = "CLAUDE_BOTTLE_CLAUDE_CODE";
/// The value of `--claude-code` / [`ENV`] that builds without Claude Code
/// and never asks the npm registry.
pub const NONE: &str = "none";
/// Image label: the installed version, or [`NONE`].
pub const LABEL_VERSION: &str = "dev.claude-bottle.claude-code";
/// Image label: the sha256 of the tarball it was installed from.
pub const LABEL_SHA256: &str = "dev.claude-bottle.claude-code-sha256";
/// Where the package is unpacked in the image (npm's global layout).
pub const INSTALL_DIR: &str = "/usr/local/lib/node_modules/@anthropic-ai/claude-code";
/// The `claude` command in the image.
pub const BIN_LINK: &str = "/usr/local/bin/claude";
/// The build-context directory holding the overlay (`COPY claude-code/ /`).
pub const CONTEXT_DIR: &str = "claude-code";

/// Largest tarball read (compressed).
const MAX_TARBALL: u64 = 512 << 20;
/// Largest unpacked size.
const MAX_UNPACKED: u64 = 1 << 30;
/// Most entries in a tarball.
const MAX_ENTRIES: usize = 100_000;
/// How long `npm pack` may take (metadata and the download).
const NPM_TIMEOUT: Duration = Duration::from_secs(300);

/// Where Claude Code comes from for the default agent image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An `npm pack` tarball given by the operator.
    Tarball(PathBuf),
    /// `npm pack` on the host when an image is built (skipped offline).
    Registry,
    /// No Claude Code; nothing is asked of any registry.
    Skip,
}

impl Source {
    /// `--claude-code` when given, else [`ENV`], else [`Source::Registry`];
    /// the value [`NONE`] (either place) is [`Source::Skip`].
    pub fn from_flag_or_env(flag: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Self {
        let value = match flag {
            Some(p) => p.to_owned(),
            None => match env(ENV).filter(|v| !v.trim().is_empty()) {
                Some(v) => PathBuf::from(v),
                None => return Self::Registry,
            },
        };
        if value.as_os_str() == NONE {
            Self::Skip
        } else {
            Self::Tarball(value)
        }
    }
}

/// What is wrong with a tarball.
#[derive(Debug, thiserror::Error)]
#[error(
    "Claude Code tarball {}: {problem}; expected the file `npm pack {PACKAGE}` writes (a .tgz with package/package.json)",
    path.display()
)]
pub struct TarballError {
    /// The tarball.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: Problem,
}

/// One way a tarball can be wrong.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's message documents it
pub enum Problem {
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    #[error("it is larger than {} MiB", MAX_TARBALL >> 20)]
    TooLarge,
    #[error("it is not a gzip-compressed tar archive ({0})")]
    NotTarGz(String),
    #[error("it unpacks to more than {} MiB or {MAX_ENTRIES} entries", MAX_UNPACKED >> 20)]
    TooBig,
    #[error("entry {0:?} is outside package/")]
    OutsidePackage(String),
    #[error("entry {0:?} is not a plain relative path (no `..`, `.`, empty or absolute parts)")]
    BadPath(String),
    #[error("entry {path:?} is a {kind}; only regular files and directories are accepted")]
    BadType { path: String, kind: String },
    #[error("entry {0:?} appears twice (or as both a file and a directory)")]
    Duplicate(String),
    #[error("it has no package/package.json")]
    NoPackageJson,
    #[error("package/package.json is not valid JSON: {0}")]
    PackageJson(String),
    #[error("package/package.json names {0:?}, not {PACKAGE}")]
    WrongName(String),
    #[error(
        "package/package.json has version {0:?}; expected a version like 2.0.14 (letters, digits, `.`, `-`, `+`)"
    )]
    BadVersion(String),
    #[error(
        "package/package.json has no `bin.claude` (the `claude` command); expected e.g. \"bin\": {{\"claude\": \"cli.js\"}}"
    )]
    NoClaudeBin,
    #[error("bin.claude is {0:?}, which is not a file in the package")]
    BinMissing(String),
}

/// A validated Claude Code package, ready to go into a build context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// `version` from its package.json.
    pub version: String,
    /// Hex sha256 of the tarball (part of the agent image's content tag).
    pub sha256: String,
    /// `bin.claude`, relative to the package root, normalised.
    pub bin: String,
    /// Path under the package root → entry.
    entries: BTreeMap<String, Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File { executable: bool, data: Vec<u8> },
}

/// Reads and validates a tarball.
pub fn read(path: &Path) -> Result<Package, TarballError> {
    let err = |problem| TarballError {
        path: path.to_owned(),
        problem,
    };
    let file = std::fs::File::open(path).map_err(|e| err(Problem::Read(e)))?;
    let mut bytes = Vec::new();
    file.take(MAX_TARBALL + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(Problem::Read(e)))?;
    if bytes.len() as u64 > MAX_TARBALL {
        return Err(err(Problem::TooLarge));
    }
    parse(&bytes).map_err(err)
}

/// Validates tarball bytes.
pub fn parse(bytes: &[u8]) -> Result<Package, Problem> {
    let sha256 = format!("{:x}", Sha256::digest(bytes));
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut archive = tar::Archive::new(gz.take(MAX_UNPACKED + 1));
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let not_tar = |e: std::io::Error| Problem::NotTarGz(e.to_string());
    let mut unpacked: u64 = 0;
    for entry in archive.entries().map_err(not_tar)? {
        let mut entry = entry.map_err(not_tar)?;
        if entries.len() >= MAX_ENTRIES {
            return Err(Problem::TooBig);
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let rel = package_relative(&raw)?;
        let new = if kind.is_dir() {
            Entry::Dir
        } else if kind.is_file() || kind.is_contiguous() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(not_tar)?;
            unpacked += data.len() as u64;
            if unpacked > MAX_UNPACKED {
                return Err(Problem::TooBig);
            }
            let mode = entry.header().mode().unwrap_or(0o644);
            Entry::File {
                executable: mode & 0o111 != 0,
                data,
            }
        } else {
            return Err(Problem::BadType {
                path: raw,
                kind: format!("{kind:?}").to_lowercase(),
            });
        };
        let Some(rel) = rel else {
            continue; // `package/` itself
        };
        insert(&mut entries, rel, new)?;
    }
    let Some(Entry::File { data, .. }) = entries.get("package.json") else {
        return Err(Problem::NoPackageJson);
    };
    let json: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| Problem::PackageJson(e.to_string()))?;
    let name = json.get("name").and_then(|n| n.as_str()).unwrap_or("");
    if name != PACKAGE {
        return Err(Problem::WrongName(name.to_owned()));
    }
    let version = json
        .get("version")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_owned();
    let version_ok = !version.is_empty()
        && version.len() <= 64
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-+".contains(&b));
    if !version_ok {
        return Err(Problem::BadVersion(version));
    }
    let bin_raw = json
        .get("bin")
        .and_then(|b| b.get("claude"))
        .and_then(|c| c.as_str())
        .ok_or(Problem::NoClaudeBin)?;
    let bin = normalise(bin_raw.strip_prefix("./").unwrap_or(bin_raw))
        .ok_or_else(|| Problem::BinMissing(bin_raw.to_owned()))?;
    match entries.get_mut(&bin) {
        // npm makes bins executable on install; so do we.
        Some(Entry::File { executable, .. }) => *executable = true,
        _ => return Err(Problem::BinMissing(bin_raw.to_owned())),
    }
    Ok(Package {
        version,
        sha256,
        bin,
        entries,
    })
}

/// `package/<rest>` → `Some(rest)` (normalised), `package/` → `None`.
fn package_relative(raw: &str) -> Result<Option<String>, Problem> {
    let trimmed = raw.trim_end_matches('/');
    if trimmed == "package" {
        return Ok(None);
    }
    let Some(rest) = trimmed.strip_prefix("package/") else {
        return Err(Problem::OutsidePackage(raw.to_owned()));
    };
    normalise(rest)
        .map(Some)
        .ok_or_else(|| Problem::BadPath(raw.to_owned()))
}

/// A `/`-separated relative path whose every part is a plain name.
fn normalise(path: &str) -> Option<String> {
    if path.is_empty() || path.contains('\\') || path.contains('\0') {
        return None;
    }
    let parts: Vec<&str> = path.split('/').collect();
    let plain = parts.iter().all(|p| {
        let mut c = Path::new(p).components();
        matches!((c.next(), c.next()), (Some(PathComponent::Normal(n)), None) if n == *p)
    });
    plain.then(|| parts.join("/"))
}

fn insert(entries: &mut BTreeMap<String, Entry>, rel: String, new: Entry) -> Result<(), Problem> {
    // Every ancestor is (or becomes) a directory.
    let mut prefix = String::new();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        match entries.get(&prefix) {
            Some(Entry::File { .. }) => return Err(Problem::Duplicate(prefix)),
            Some(Entry::Dir) => {}
            None => {
                entries.insert(prefix.clone(), Entry::Dir);
            }
        }
    }
    match (entries.get(&rel), &new) {
        (None, _) | (Some(Entry::Dir), Entry::Dir) => {
            entries.insert(rel, new);
            Ok(())
        }
        _ => Err(Problem::Duplicate(rel)),
    }
}

impl Package {
    /// The number of files (not directories) in the package.
    pub fn file_count(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e, Entry::File { .. }))
            .count()
    }

    /// Appends the overlay to a build context: [`CONTEXT_DIR`]`/` holding
    /// the package at [`INSTALL_DIR`] and the [`BIN_LINK`] symlink, every
    /// entry root-owned, directories and executables 0755, files 0644.
    pub fn append_to(&self, b: &mut tar::Builder<Vec<u8>>) -> std::io::Result<()> {
        let root = format!("{CONTEXT_DIR}{INSTALL_DIR}");
        let mut dirs = vec![CONTEXT_DIR.to_owned()];
        let mut at = CONTEXT_DIR.to_owned();
        for part in INSTALL_DIR.trim_start_matches('/').split('/') {
            at = format!("{at}/{part}");
            dirs.push(at.clone());
        }
        at = CONTEXT_DIR.to_owned();
        for part in ["usr", "local", "bin"] {
            at = format!("{at}/{part}");
            if !dirs.contains(&at) {
                dirs.push(at.clone());
            }
        }
        dirs.sort();
        for d in &dirs {
            append_dir(b, d)?;
        }
        for (rel, e) in &self.entries {
            let path = format!("{root}/{rel}");
            match e {
                Entry::Dir => append_dir(b, &path)?,
                Entry::File { executable, data } => {
                    let mode = if *executable { 0o755 } else { 0o644 };
                    let mut h = header(tar::EntryType::Regular, mode);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, &path, data.as_slice())?;
                }
            }
        }
        let mut h = header(tar::EntryType::Symlink, 0o777);
        let target = format!("{INSTALL_DIR}/{}", self.bin);
        b.append_link(&mut h, format!("{CONTEXT_DIR}{BIN_LINK}"), target)
    }
}

/// An empty overlay (no Claude Code): just the [`CONTEXT_DIR`] directory,
/// so the Dockerfile's `COPY` has a source.
pub fn append_empty(b: &mut tar::Builder<Vec<u8>>) -> std::io::Result<()> {
    append_dir(b, CONTEXT_DIR)
}

fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h
}

fn append_dir(b: &mut tar::Builder<Vec<u8>>, path: &str) -> std::io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755);
    b.append_data(&mut h, format!("{path}/"), std::io::empty())
}

/// What an operator does when the image has no Claude Code: get the
/// tarball on a connected machine and pass it here.
pub fn missing_hint() -> String {
    format!(
        "to add it, run `npm pack {PACKAGE}` on a machine with internet access, copy the .tgz it writes here, and pass it with --claude-code PATH.tgz (or {ENV}=PATH.tgz) to `launcher images build`, `start`, `run` or `resume`"
    )
}

/// Runs the host's `npm pack` for [`PACKAGE`] in `dir` (npm's own
/// registry configuration, proxy and credentials apply) and returns the
/// tarball it wrote. Bounded in time; `npm` missing is an error.
pub async fn npm_pack(dir: &Path) -> Result<PathBuf, String> {
    let child = tokio::process::Command::new("npm")
        .args([
            "pack",
            PACKAGE,
            "--ignore-scripts",
            "--fetch-retries=1",
            "--update-notifier=false",
            "--fund=false",
            "--loglevel=error",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("npm cannot be run here ({e})"))?;
    let out = tokio::time::timeout(NPM_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("`npm pack {PACKAGE}` took longer than {NPM_TIMEOUT:?}"))?
        .map_err(|e| format!("waiting for npm: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(4).collect();
        return Err(format!(
            "`npm pack {PACKAGE}` exited with {}: {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    let tgz = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"));
    tgz.ok_or_else(|| format!("`npm pack {PACKAGE}` succeeded but wrote no .tgz"))
}

#[cfg(test)]
mod tests;
