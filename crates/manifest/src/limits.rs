//! `bottle.limits` and `bottle.workspace`: how much the agent container may
//! use (memory, processes), and how the operator's working directory
//! reaches it.
//!
//! Is: the validated values with their defaults, and the one parser of a
//! memory size (`8g`, `512m`), shared by the manifest and the launcher's
//! flags.
//!
//! Is not: enforcement. The launcher turns these into Docker's memory and
//! pids limits and into mounts or a copy.

use std::fmt;

use crate::yaml::{Checker, KeyPath, Node, Value};

/// Default memory limit of the agent container: 8 GiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 8 * GIB;
/// Default process (pids) limit of the agent container.
pub const DEFAULT_PIDS: u32 = 4096;
/// The smallest memory limit accepted: 64 MiB.
pub const MIN_MEMORY_BYTES: u64 = 64 * MIB;
/// The largest memory limit accepted: 1024 GiB.
pub const MAX_MEMORY_BYTES: u64 = 1024 * GIB;
/// The smallest pids limit accepted.
pub const MIN_PIDS: u32 = 64;
/// The largest pids limit accepted (the kernel's `pid_max` ceiling).
pub const MAX_PIDS: u32 = 4_194_304;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// A memory size in bytes, written as Docker writes it: a whole number
/// with an optional binary unit `b`, `k`, `m` or `g` (`1g` = 1024 MiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemorySize(u64);

/// Why a memory size or pids limit is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Not `<digits>[unit]`.
    #[error(
        "invalid memory size {0:?}; expected a whole number with an optional unit b, k, m or g (binary, like Docker: 1g = 1024m), e.g. 8g or 512m"
    )]
    MemorySyntax(String),
    /// Outside [`MIN_MEMORY_BYTES`, `MAX_MEMORY_BYTES`].
    #[error("memory size {0:?} is out of range; expected between 64m and 1024g")]
    MemoryRange(String),
    /// Outside [`MIN_PIDS`, `MAX_PIDS`].
    #[error("pids limit {0} is out of range; expected a whole number between 64 and 4194304")]
    PidsRange(i128),
}

impl MemorySize {
    /// Parses `8g`, `512m`, `1048576k`, `67108864` (bytes); units are
    /// case-insensitive. The result lies between 64 MiB and 1024 GiB.
    pub fn parse(text: &str) -> Result<Self, LimitError> {
        let syntax = || LimitError::MemorySyntax(text.to_owned());
        let s = text.trim();
        let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => s.split_at(i),
            None => (s, ""),
        };
        if digits.is_empty() {
            return Err(syntax());
        }
        let scale = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" => KIB,
            "m" => MIB,
            "g" => GIB,
            _ => return Err(syntax()),
        };
        let range = || LimitError::MemoryRange(text.to_owned());
        let n: u64 = digits.parse().map_err(|_| range())?;
        let bytes = n.checked_mul(scale).ok_or_else(range)?;
        Self::from_bytes(bytes).ok_or_else(range)
    }

    /// `bytes`, if within the accepted range.
    pub fn from_bytes(bytes: u64) -> Option<Self> {
        (MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES)
            .contains(&bytes)
            .then_some(Self(bytes))
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MemorySize {
    /// The largest unit that divides the size exactly: `8g`, `1536m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, scale) in [("g", GIB), ("m", MIB), ("k", KIB)] {
            if b.is_multiple_of(scale) {
                return write!(f, "{}{unit}", b / scale);
            }
        }
        write!(f, "{b}b")
    }
}

/// `bottle.limits`: the agent container's memory and process limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    memory: MemorySize,
    pids: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: MemorySize(DEFAULT_MEMORY_BYTES),
            pids: DEFAULT_PIDS,
        }
    }
}

impl Limits {
    /// Memory limit (swap adds nothing on top).
    pub fn memory(&self) -> MemorySize {
        self.memory
    }
    /// Maximum number of processes and threads.
    pub fn pids(&self) -> u32 {
        self.pids
    }
}

/// How the operator's working directory (`--cwd`) reaches the agent.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceMode {
    /// Bind-mounted read-write, with what the host later executes or
    /// trusts (`.git`, the manifest in the directory, submodule links,
    /// hook directories) mounted read-only over it.
    #[default]
    Protect,
    /// Copied into the bottle; nothing is written back to the host.
    Copy,
}

impl WorkspaceMode {
    /// The spelling used in manifests and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Protect => "protect",
            Self::Copy => "copy",
        }
    }

    /// Parses `protect` or `copy`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "protect" => Ok(Self::Protect),
            "copy" => Ok(Self::Copy),
            other => Err(format!(
                "unknown workspace mode {other:?}; expected protect (bind mount, .git and the manifest read-only) or copy (copied in, nothing written back)"
            )),
        }
    }
}

impl fmt::Display for WorkspaceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const LIMITS_KEYS: &[&str] = &["memory", "pids"];

/// Parses `bottle.limits`; `None` when invalid (recorded in `c`).
pub(crate) fn parse_limits(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<Limits> {
    if matches!(node.value, Value::Null) {
        return Some(Limits::default());
    }
    let before = c.count();
    let m = c.map(path, node, LIMITS_KEYS, &[])?;
    let mut out = Limits::default();
    if let Some(n) = m.get("memory") {
        let p = path.key("memory");
        let parsed = match &n.value {
            Value::Str(s) => MemorySize::parse(s),
            Value::Int(i) => u64::try_from(*i)
                .ok()
                .and_then(MemorySize::from_bytes)
                .ok_or_else(|| LimitError::MemoryRange(i.to_string())),
            other => {
                c.error(
                    &p,
                    n,
                    format!(
                        "expected a memory size such as 8g or 512m, found {}",
                        other.kind()
                    ),
                );
                return None;
            }
        };
        match parsed {
            Ok(v) => out.memory = v,
            Err(e) => c.error(&p, n, e.to_string()),
        }
    }
    if let Some(n) = m.get("pids") {
        let p = path.key("pids");
        match &n.value {
            Value::Int(i) => match u32::try_from(*i)
                .ok()
                .filter(|v| (MIN_PIDS..=MAX_PIDS).contains(v))
            {
                Some(v) => out.pids = v,
                None => c.error(&p, n, LimitError::PidsRange(*i).to_string()),
            },
            other => c.error(
                &p,
                n,
                format!(
                    "expected a whole number of processes such as 4096, found {}",
                    other.kind()
                ),
            ),
        }
    }
    (c.count() == before).then_some(out)
}

/// Parses `bottle.workspace`; `None` when invalid (recorded in `c`).
pub(crate) fn parse_workspace(
    c: &mut Checker,
    path: &KeyPath,
    node: &Node,
) -> Option<WorkspaceMode> {
    let s = c.string(path, node, "a workspace mode (protect or copy)")?;
    WorkspaceMode::parse(s)
        .map_err(|e| c.error(path, node, e))
        .ok()
}

#[cfg(test)]
mod tests;
