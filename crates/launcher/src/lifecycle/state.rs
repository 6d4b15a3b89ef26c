//! Per-bottle state on the host: `<root>/<identity>/` with `metadata.json`
//! (agent, cwd, started_at, versions), the supervise queue directory and,
//! in protect mode, `placeholders.json` (the empty placeholders the launcher
//! created in the workspace, removed with the bottle or by `cleanup`).
//!
//! The root is `~/.claude-bottle/state` unless overridden
//! (`CLAUDE_BOTTLE_STATE_DIR`, `--state-dir`). A bottle's directory is
//! removed at session end; a `.preserve` marker (written by the approvals
//! flow) keeps it.

use std::path::{Path, PathBuf};

use manifest::TokenSlot;
use serde::{Deserialize, Serialize};

use crate::plan::identity::Identity;
use crate::plan::workspace::Placeholder;

/// Environment variable overriding the state root.
pub const STATE_DIR_ENV: &str = "CLAUDE_BOTTLE_STATE_DIR";
/// File name of the metadata.
pub const METADATA_FILE: &str = "metadata.json";
/// Marker that keeps a bottle's state after it ends.
pub const PRESERVE_MARKER: &str = ".preserve";
/// File name of the launch record (see [`LaunchRecord`]).
pub const LAUNCH_FILE: &str = "launch.json";
/// File name of the token slot record (see [`BottleState::token_slots`]).
pub const TOKEN_SLOTS_FILE: &str = "token-slots.json";
/// File name of the routes that were live when the state was preserved
/// (see [`BottleState::live_routes`]).
pub const LIVE_ROUTES_FILE: &str = "routes.yaml";

/// File name of the workspace placeholder record (see
/// [`BottleState::record_placeholders`]).
pub const PLACEHOLDERS_FILE: &str = "placeholders.json";

/// Why state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No home directory and no override.
    #[error(
        "cannot locate the state directory: HOME is not set; set {STATE_DIR_ENV} to a directory"
    )]
    NoHome,
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `metadata.json` is not valid.
    #[error("{path}: invalid bottle metadata: {source}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// What `metadata.json` records about a bottle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The bottle identity.
    pub identity: String,
    /// The agent name.
    pub agent: String,
    /// The workspace mounted into the agent, if any.
    pub cwd: Option<PathBuf>,
    /// RFC 3339 UTC launch time.
    pub started_at: String,
    /// The launcher version.
    pub launcher_version: String,
    /// Image tags the bottle runs, component → tag.
    pub images: std::collections::BTreeMap<String, String>,
}

/// How `launcher start` launched a bottle, beyond [`Metadata`]: what
/// `launcher resume` needs to start it again the same way. Kept in its own
/// file (`launch.json`, written when the bottle is up) so `metadata.json`
/// and its readers stay as they are. Nothing secret: token values are read
/// from the operator's environment at every launch; an upstream CA is a
/// public certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchRecord {
    /// The manifest file (or directory of agents) used, absolute; `None`
    /// for the embedded default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PathBuf>,
    /// `--bin-dir`, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<PathBuf>,
    /// `--offline`.
    #[serde(default)]
    pub offline: bool,
    /// `--label` pairs (not the launcher's own `dev.claude-bottle.*` ones).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The extra upstream CA (PEM) egress and git-gate trust, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ca: Option<String>,
    /// `--pipelock-image`, if given (a digest-pinned reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipelock_image: Option<String>,
    /// `--workspace`, if given (a resume keeps the mode the bottle had).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<manifest::WorkspaceMode>,
    /// `--claude-code` (or `CLAUDE_BOTTLE_CLAUDE_CODE`), if given: the
    /// tarball (absolute) or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_code: Option<PathBuf>,
}

/// The state root: `override_dir`, else `$CLAUDE_BOTTLE_STATE_DIR`, else
/// `$HOME/.claude-bottle/state`. `env` is the environment lookup.
pub fn root(
    override_dir: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PathBuf, StateError> {
    if let Some(d) = override_dir {
        return Ok(d.to_owned());
    }
    if let Some(d) = env(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let home = env("HOME")
        .filter(|h| !h.is_empty())
        .ok_or(StateError::NoHome)?;
    Ok(Path::new(&home).join(".claude-bottle").join("state"))
}

/// One bottle's state directory.
#[derive(Clone, Debug)]
pub struct BottleState {
    dir: PathBuf,
}

impl BottleState {
    /// `<root>/<identity>`.
    pub fn new(root: &Path, identity: &Identity) -> Self {
        Self {
            dir: root.join(identity.as_str()),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The supervise queue directory (bind-mounted into supervise).
    pub fn queue_dir(&self) -> PathBuf {
        self.dir.join("queue")
    }

    /// Creates the directory (mode 0700: only the operator reads state) and
    /// writes `metadata.json`.
    pub fn create(&self, meta: &Metadata) -> Result<(), StateError> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::create_dir_all(&self.dir).map_err(io("creating", &self.dir))?;
        set_mode(&self.dir, 0o700).map_err(io("restricting", &self.dir))?;
        let queue = self.queue_dir();
        std::fs::create_dir_all(&queue).map_err(io("creating", &queue))?;
        // supervise runs as a non-root user and writes proposals here.
        set_mode(&queue, 0o777).map_err(io("opening for the supervise user", &queue))?;
        let path = self.dir.join(METADATA_FILE);
        let text = serde_json::to_string_pretty(meta).map_err(|source| StateError::Metadata {
            path: path.clone(),
            source,
        })?;
        let tmp = self.dir.join(".metadata.json.tmp");
        std::fs::write(&tmp, text).map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("renaming into place", &path))
    }

    /// Reads `metadata.json`.
    pub fn metadata(&self) -> Result<Metadata, StateError> {
        let path = self.dir.join(METADATA_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| StateError::Io {
            action: "reading",
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| StateError::Metadata { path, source })
    }

    /// Writes `launch.json` (temp file + rename, mode 0600) into the
    /// existing state directory.
    pub fn write_launch(&self, record: &LaunchRecord) -> Result<(), StateError> {
        self.write_json(LAUNCH_FILE, record)
    }

    /// Records which token slots the bottle's egress proxy holds
    /// (`token-slots.json`: names only, never values): the manifest's at
    /// launch, plus each credential an approval grants later.
    pub fn write_token_slots(&self, slots: &[TokenSlot]) -> Result<(), StateError> {
        self.write_json(TOKEN_SLOTS_FILE, &slots)
    }

    /// The recorded token slots; empty when none were recorded.
    pub fn token_slots(&self) -> Result<Vec<TokenSlot>, StateError> {
        let path = self.dir.join(TOKEN_SLOTS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                serde_json::from_str(&text).map_err(|source| StateError::Metadata { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(StateError::Io {
                action: "reading",
                path,
                source,
            }),
        }
    }

    /// Records the bottle's live routes file (`routes.yaml`: slot names,
    /// never token values), so `launcher resume` restores the routes
    /// approved during the session.
    pub fn write_live_routes(&self, routes: &str) -> Result<(), StateError> {
        self.write_bytes(LIVE_ROUTES_FILE, routes.as_bytes())
    }

    /// The recorded live routes file, if any.
    pub fn live_routes(&self) -> Result<Option<String>, StateError> {
        let path = self.dir.join(LIVE_ROUTES_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io {
                action: "reading",
                path,
                source,
            }),
        }
    }

    /// Writes `name` as JSON (temp file + rename, mode 0600) into the
    /// existing state directory.
    fn write_json(&self, name: &str, value: &impl Serialize) -> Result<(), StateError> {
        let text = serde_json::to_string_pretty(value).map_err(|source| StateError::Metadata {
            path: self.dir.join(name),
            source,
        })?;
        self.write_bytes(name, text.as_bytes())
    }

    /// Writes `name` (temp file + rename, mode 0600) into the existing
    /// state directory.
    fn write_bytes(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io {
                action,
                path,
                source,
            }
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("creating", &tmp))?;
        f.write_all(bytes).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io("renaming into place", &path))
    }

    /// Reads `launch.json`; `Ok(None)` when there is none (a bottle started
    /// in-process, or by a launcher that did not record it).
    pub fn launch_record(&self) -> Result<Option<LaunchRecord>, StateError> {
        let path = self.dir.join(LAUNCH_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    action: "reading",
                    path,
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StateError::Metadata { path, source })
    }

    /// Records the placeholders the launcher is about to create in the
    /// workspace (before creating them, so a crash leaves a record that
    /// `cleanup` acts on).
    pub fn record_placeholders(&self, list: &[Placeholder]) -> Result<(), StateError> {
        self.write_json(PLACEHOLDERS_FILE, &list)
    }

    /// Removes the recorded workspace placeholders (only empty ones; see
    /// [`crate::plan::workspace::remove_placeholders`]), then the record: what
    /// is left in place is the operator's now, and each is named in the
    /// returned warnings. Teardown, `stop` and `cleanup` call this first and
    /// print the warnings; removing the state directory calls it too.
    pub fn remove_placeholders(&self) -> Vec<String> {
        let path = self.dir.join(PLACEHOLDERS_FILE);
        let list: Vec<Placeholder> = match std::fs::read_to_string(&path) {
            Ok(text) => match serde_json::from_str(&text) {
                Ok(list) => list,
                Err(e) => return vec![format!("{}: {e}", path.display())],
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => return vec![format!("reading {}: {e}", path.display())],
        };
        let mut warnings = crate::plan::workspace::remove_placeholders(&list);
        if let Err(e) = std::fs::remove_file(&path) {
            warnings.push(format!("removing {}: {e}", path.display()));
        }
        warnings
    }

    /// Whether the approvals flow asked to keep this state.
    pub fn is_preserved(&self) -> bool {
        self.dir.join(PRESERVE_MARKER).exists()
    }

    /// Removes the directory unless preserved; a missing directory is fine.
    /// Returns whether it was removed.
    pub fn remove_unless_preserved(&self) -> Result<bool, StateError> {
        if self.is_preserved() {
            return Ok(false);
        }
        let _ = self.remove_placeholders();
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(source) => Err(StateError::Io {
                action: "removing",
                path: self.dir.clone(),
                source,
            }),
        }
    }
}

/// Identities with a state directory under `root` (for `cleanup`).
pub fn list(root: &Path) -> Result<Vec<Identity>, StateError> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Io {
                action: "listing",
                path: root.to_owned(),
                source,
            });
        }
    };
    let mut out: Vec<Identity> = rd
        .filter_map(Result::ok)
        .filter_map(|e| Identity::parse(&e.file_name().to_string_lossy()).ok())
        .collect();
    out.sort();
    Ok(out)
}

/// The state directories of bottles that are not live, for `cleanup`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Unpreserved state of a bottle that is gone (a crash, a `kill -9`).
    pub stale: Vec<Identity>,
    /// Preserved state (a capability approval) never resumed.
    pub preserved: Vec<Identity>,
}

/// Sorts the state directories under `root` whose identity is not in
/// `live` into stale and preserved ones.
pub fn leftovers(root: &Path, live: &[&str]) -> Result<Leftovers, StateError> {
    let mut out = Leftovers::default();
    for id in list(root)? {
        if live.contains(&id.as_str()) {
            continue;
        }
        if BottleState::new(root, &id).is_preserved() {
            out.preserved.push(id);
        } else {
            out.stale.push(id);
        }
    }
    Ok(out)
}

impl BottleState {
    /// Removes the directory even when preserved (`cleanup --preserved`).
    pub fn remove(&self) -> Result<(), StateError> {
        let _ = self.remove_placeholders();
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io {
                action: "removing",
                path: self.dir.clone(),
                source,
            }),
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests;
