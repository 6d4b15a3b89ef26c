//! Finding and reading the operator's manifest: the search order every
//! command uses, then the bytes handed to `manifest` for validation.
//!
//! Search order (the first that applies wins; a later one is never
//! consulted as a fallback for a broken earlier one):
//!
//! 1. `--manifest PATH` (a file or a directory of Markdown agent files);
//! 2. `$CLAUDE_BOTTLE_MANIFEST` when set and non-empty (same forms);
//! 3. `./claude-bottle.yaml`, `./claude-bottle.yml` or `./claude-bottle.json`
//!    in the current directory (more than one is an error);
//! 4. `~/.claude-bottle/manifest.yaml`, `.yml` or `.json` (likewise);
//! 5. the embedded default ([`manifest::defaults`]).
//!
//! A path named by 1 or 2 that does not exist is an error, never a silent
//! fall-through to the next step. Files ending in `.md` are Markdown agent
//! files; a directory loads every `*.md` file in it (not recursive).
//!
//! Is not: validation (that is `manifest`) or presentation (the commands).

use std::fmt;
use std::path::{Path, PathBuf};

use manifest::yaml::MAX_DOCUMENT_BYTES;
use manifest::{Agent, Manifest, ManifestError, parse_markdown_agent};

/// The environment variable naming a manifest (step 2).
pub const MANIFEST_ENV: &str = "CLAUDE_BOTTLE_MANIFEST";

/// File names looked for in the current directory (step 3).
pub const CWD_NAMES: &[&str] = &[
    "claude-bottle.yaml",
    "claude-bottle.yml",
    "claude-bottle.json",
];

/// Directory under the home directory (step 4).
pub const HOME_DIR: &str = ".claude-bottle";

/// File names looked for in `~/.claude-bottle` (step 4).
pub const HOME_NAMES: &[&str] = &["manifest.yaml", "manifest.yml", "manifest.json"];

/// The Python predecessor's manifest in the home directory: never read
/// (another format, outside the search order), only pointed at.
pub const PREDECESSOR_MANIFEST: &str = "claude-bottle.json";

/// When the search found nothing (the embedded default runs) but the
/// predecessor's `~/claude-bottle.json` exists: what to tell the operator.
pub fn predecessor_hint(located: &Located, home: Option<&Path>) -> Option<String> {
    if located.source != Source::Embedded {
        return None;
    }
    let old = home?.join(PREDECESSOR_MANIFEST);
    old.is_file().then(|| {
        format!(
            "note: {old} (the Python claude-bottle's manifest) is not read, so the embedded default runs; \
             to use it, move it to ~/{HOME_DIR}/manifest.json (or pass --manifest {old}) and run \
             `launcher validate` to see what to change (docs/manifest.md, \"Migrating\")",
            old = old.display()
        )
    })
}

/// Which step of the search order found the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--manifest`.
    Flag,
    /// `$CLAUDE_BOTTLE_MANIFEST`.
    Env,
    /// The current directory.
    CurrentDir,
    /// `~/.claude-bottle/`.
    Home,
    /// The embedded default.
    Embedded,
}

impl Source {
    /// A stable machine name (`--format json`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flag => "flag",
            Self::Env => "env",
            Self::CurrentDir => "current-dir",
            Self::Home => "home",
            Self::Embedded => "embedded",
        }
    }

    /// How a human reads it: "from --manifest", ….
    pub fn describe(self) -> &'static str {
        match self {
            Self::Flag => "given with --manifest",
            Self::Env => "named by $CLAUDE_BOTTLE_MANIFEST",
            Self::CurrentDir => "found in the current directory",
            Self::Home => "found in ~/.claude-bottle",
            Self::Embedded => "no manifest found; using the embedded default",
        }
    }
}

/// Where the manifest is, before reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// Which step found it.
    pub source: Source,
    /// The file or directory; `None` for the embedded default.
    pub path: Option<PathBuf>,
}

/// Why no manifest could be read. Validation problems are
/// [`LoadError::Invalid`]; everything else is about the file system.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `--manifest` or `$CLAUDE_BOTTLE_MANIFEST` names a missing path.
    #[error("manifest {path} ({from}) does not exist; expected a YAML/JSON manifest, a Markdown agent file or a directory of them", path = .path.display(), from = .from.describe())]
    Missing {
        /// The path.
        path: PathBuf,
        /// Which step named it.
        from: Source,
    },
    /// More than one candidate in one directory.
    #[error("both {} and {} exist; keep one manifest (or choose with --manifest)", .0.display(), .1.display())]
    Ambiguous(PathBuf, PathBuf),
    /// Reading failed.
    #[error("reading manifest {}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not UTF-8 text.
    #[error("manifest {} is not UTF-8 text", .0.display())]
    NotUtf8(PathBuf),
    /// Larger than any manifest should be.
    #[error("manifest {path} is {size} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes", path = .0.display(), size = .1)]
    TooLarge(PathBuf, u64),
    /// A directory without `*.md` files.
    #[error("directory {} has no Markdown agent files (*.md); expected one file per agent", .0.display())]
    EmptyDir(PathBuf),
    /// The manifest was read but is invalid; every problem is listed.
    #[error("{0}")]
    Invalid(ManifestError),
}

/// A loaded, validated manifest and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Where it was found.
    pub located: Located,
    /// The manifest.
    pub manifest: Manifest,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{} ({})", p.display(), self.source.describe()),
            None => write!(
                f,
                "{} ({})",
                manifest::DEFAULT_MANIFEST_ORIGIN,
                self.source.describe()
            ),
        }
    }
}

/// Applies the search order. `env` reads environment variables (tests pass
/// a map); `home` is the operator's home directory if known.
pub fn locate(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
    cwd: &Path,
    home: Option<&Path>,
) -> Result<Located, LoadError> {
    if let Some(p) = flag {
        return must_exist(p.to_path_buf(), Source::Flag);
    }
    if let Some(p) = env(MANIFEST_ENV).filter(|s| !s.trim().is_empty()) {
        let p = PathBuf::from(p);
        let p = if p.is_relative() { cwd.join(p) } else { p };
        return must_exist(p, Source::Env);
    }
    if let Some(p) = first_of(cwd, CWD_NAMES)? {
        return Ok(Located {
            source: Source::CurrentDir,
            path: Some(p),
        });
    }
    if let Some(home) = home
        && let Some(p) = first_of(&home.join(HOME_DIR), HOME_NAMES)?
    {
        return Ok(Located {
            source: Source::Home,
            path: Some(p),
        });
    }
    Ok(Located {
        source: Source::Embedded,
        path: None,
    })
}

fn must_exist(path: PathBuf, source: Source) -> Result<Located, LoadError> {
    if path.exists() {
        Ok(Located {
            source,
            path: Some(path),
        })
    } else {
        Err(LoadError::Missing { path, from: source })
    }
}

fn first_of(dir: &Path, names: &[&str]) -> Result<Option<PathBuf>, LoadError> {
    let found: Vec<PathBuf> = names
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        [a, b, ..] => Err(LoadError::Ambiguous(a.clone(), b.clone())),
    }
}

/// Reads and validates the located manifest.
pub fn load(located: Located) -> Result<Loaded, LoadError> {
    let manifest = match &located.path {
        None => manifest::default_manifest().map_err(LoadError::Invalid)?,
        Some(p) if p.is_dir() => load_dir(p)?,
        Some(p) if is_markdown(p) => {
            let text = read(p)?;
            let origin = p.display().to_string();
            let agent =
                parse_markdown_agent(&text, &origin, &stem(p)).map_err(LoadError::Invalid)?;
            Manifest::from_agents(&origin, vec![(origin.clone(), agent)])
                .map_err(LoadError::Invalid)?
        }
        Some(p) => {
            let text = read(p)?;
            Manifest::parse(&text, &p.display().to_string()).map_err(LoadError::Invalid)?
        }
    };
    Ok(Loaded { located, manifest })
}

/// [`locate`] then [`load`].
pub fn find_and_load(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
    cwd: &Path,
    home: Option<&Path>,
) -> Result<Loaded, LoadError> {
    load(locate(flag, env, cwd, home)?)
}

fn is_markdown(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("md"))
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read(p: &Path) -> Result<String, LoadError> {
    let io = |source| LoadError::Io {
        path: p.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(p).map_err(io)?.len();
    if len > MAX_DOCUMENT_BYTES as u64 {
        return Err(LoadError::TooLarge(p.to_path_buf(), len));
    }
    let bytes = std::fs::read(p).map_err(io)?;
    String::from_utf8(bytes).map_err(|_| LoadError::NotUtf8(p.to_path_buf()))
}

/// Every `*.md` file of `dir`, in name order, one agent each. All files'
/// problems are collected before failing.
fn load_dir(dir: &Path) -> Result<Manifest, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_markdown(p))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LoadError::EmptyDir(dir.to_path_buf()));
    }
    let mut agents: Vec<(String, Agent)> = Vec::new();
    let mut errors: Option<ManifestError> = None;
    for f in &files {
        let origin = f.display().to_string();
        let parsed = read(f).and_then(|text| {
            parse_markdown_agent(&text, &origin, &stem(f)).map_err(LoadError::Invalid)
        });
        match parsed {
            Ok(a) => agents.push((origin, a)),
            Err(LoadError::Invalid(e)) => match &mut errors {
                Some(all) => all.extend(e),
                None => errors = Some(e),
            },
            Err(other) => return Err(other),
        }
    }
    if let Some(e) = errors {
        return Err(LoadError::Invalid(e));
    }
    Manifest::from_agents(&dir.display().to_string(), agents).map_err(LoadError::Invalid)
}

#[cfg(test)]
mod tests;
