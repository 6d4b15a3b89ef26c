//! The engines a bottle runs on, and the one seam the rest of the
//! launcher calls them through.
//!
//! Is: [`BottleEngine`], what the lifecycle, the approval loop, resume and
//! the dashboard ask of a running bottle in the bottle's own terms (its
//! identity and its components, never a container or pod name): whether a
//! component runs, copy files in, read a file, run a command (a sidecar's
//! status probe), signal it (a reload), its log, every bottle on the engine
//! by label, and removing one. Docker implements it over
//! [`docker::Engine`] (`engine/docker/bottle.rs`). Also here: image
//! preparation with a content-hash cache ([`images`], with the host's
//! Debian mirror from [`apt`]), tar archives with explicit modes, the only
//! way files are copied into a bottle ([`archive`]), and an interactive
//! session in the agent ([`attach`]).
//!
//! Is not: the plan (that is [`crate::plan`], which never imports this
//! module) or the launch order (that is [`crate::lifecycle`], which creates
//! a bottle's objects from a plan on Docker). The approval loop's egress
//! seam is [`crate::approvals::apply::EgressControl`]; its engine-generic
//! implementation ([`crate::approvals::apply::SidecarEgress`]) is written
//! over this trait.

pub mod apt;
pub mod archive;
pub mod attach;
pub mod docker;
pub mod images;
pub mod kubernetes;

use std::collections::BTreeMap;

use crate::plan::identity::{Component, Identity};
use archive::FileEntry;

/// What a command run in a component printed and how it exited.
pub use docker::ExecOutput;

/// A bottle found on an engine by label (for `list`, `cleanup`, the
/// dashboard and resume).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    /// The identity.
    pub identity: String,
    /// The agent.
    pub agent: String,
    /// Its objects that run (containers, pods) and their state (`running`,
    /// `exited`, …), by name.
    pub containers: BTreeMap<String, String>,
    /// The pid of the launcher that started it, if labelled.
    pub launcher_pid: Option<u32>,
}

impl Found {
    /// Whether the launcher that started this bottle is gone (same host:
    /// no process with that pid), i.e. nothing will tear it down.
    pub fn is_orphan(&self) -> bool {
        match self.launcher_pid {
            Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            None => true,
        }
    }
}

/// Whether a component runs, and if not, what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Running {
    /// It runs.
    Yes,
    /// It exists but stopped (with its exit code when the engine says).
    Exited(Option<i64>),
    /// There is no such component on this engine.
    Missing,
}

/// The seam between a running bottle and the engine it runs on. Every
/// method names the bottle and the component; the engine maps them to its
/// objects (on Docker, `claude-bottle-<component>-<identity>` containers
/// and the `dev.claude-bottle.*` labels).
#[allow(async_fn_in_trait)] // used with concrete types only
pub trait BottleEngine {
    /// The engine's error; its message names the operation and the object
    /// and keeps the engine's own text.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Whether `component` of `bottle` runs.
    async fn state_of(
        &self,
        bottle: &Identity,
        component: Component,
    ) -> Result<Running, Self::Error>;

    /// Copies `files` into `component`, each with the mode and owner it
    /// states (nothing is inherited from the host).
    async fn copy_in(
        &self,
        bottle: &Identity,
        component: Component,
        files: &[FileEntry],
    ) -> Result<(), Self::Error>;

    /// Reads one regular file from `component`; `None` when it does not
    /// exist or is larger than `limit` bytes.
    async fn read_from(
        &self,
        bottle: &Identity,
        component: Component,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Runs `cmd` in `component` as `user` (`uid:gid`): its output and
    /// exit code. A sidecar's status probe is one.
    async fn exec_in(
        &self,
        bottle: &Identity,
        component: Component,
        user: &str,
        cmd: &[String],
    ) -> Result<ExecOutput, Self::Error>;

    /// Sends `signal` (`SIGHUP`: reload) to `component`'s main process.
    async fn signal(
        &self,
        bottle: &Identity,
        component: Component,
        signal: &str,
    ) -> Result<(), Self::Error>;

    /// The last `lines` lines of `component`'s log.
    async fn logs_of(
        &self,
        bottle: &Identity,
        component: Component,
        lines: usize,
    ) -> Result<String, Self::Error>;

    /// Every bottle with an object on the engine, found by label (never by
    /// name pattern).
    async fn bottles(&self) -> Result<Vec<Found>, Self::Error>;

    /// Removes every object labelled with `identity` (as the label says it:
    /// an orphan's label is not trusted to parse), agent first; the names
    /// removed.
    async fn remove_bottle(&self, identity: &str) -> Result<Vec<String>, Self::Error>;
}
