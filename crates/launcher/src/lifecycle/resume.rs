//! What `launcher resume` needs to start a bottle again the way `launcher
//! start` started it: the launch options recorded at start
//! ([`crate::lifecycle::state::LaunchRecord`], `launch.json` in the state directory)
//! combined with the flags given to `resume`, and the [`PlanOptions`] of the
//! resumed bottle.
//!
//! Is: pure functions (no Docker, no environment), so the parity between
//! start and resume is unit-tested; and [`build`], the no-network build of
//! the agent-proposed Dockerfile.
//!
//! Is not: the rebuild or the launch (the `resume` command does those), or
//! a place for secrets: token values are read from the operator's
//! environment at every launch and never recorded.

use std::path::PathBuf;

use crate::engine::images::ImageSet;
use crate::lifecycle::LABEL_LAUNCHER_PID;
use crate::lifecycle::state::{BottleState, LaunchRecord, Metadata};
use crate::plan::PlanOptions;
use crate::plan::SkillFile;
use crate::plan::identity::Identity;

/// The flags given to `launcher resume` that can override the record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResumeFlags {
    /// `--manifest`.
    pub manifest: Option<PathBuf>,
    /// `--bin-dir`.
    pub bin_dir: Option<PathBuf>,
    /// `--offline` (can only turn offline on).
    pub offline: bool,
    /// `--label K=V` (a key given here wins over the recorded one).
    pub labels: Vec<(String, String)>,
    /// `--claude-code` (or its environment variable).
    pub claude_code: Option<PathBuf>,
}

/// The launch options of a resume: each flag given wins over what was
/// recorded at start; without a record (a bottle started by an older
/// launcher, or in-process), the flags alone.
pub fn effective(record: Option<&LaunchRecord>, flags: &ResumeFlags) -> LaunchRecord {
    let mut out = record.cloned().unwrap_or_default();
    if let Some(m) = &flags.manifest {
        out.manifest = Some(m.clone());
    }
    if let Some(b) = &flags.bin_dir {
        out.bin_dir = Some(b.clone());
    }
    out.offline |= flags.offline;
    if let Some(c) = &flags.claude_code {
        out.claude_code = Some(c.clone());
    }
    for (k, v) in &flags.labels {
        out.labels.insert(k.clone(), v.clone());
    }
    out
}

/// The plan options of the resumed bottle: the same identity, workspace
/// and queue, the recorded labels and upstream CA, the images built for
/// the resume (`images`, with the agent's tag replaced), and this process
/// as the launcher to signal.
pub fn plan_options(
    identity: &Identity,
    meta: &Metadata,
    launch: &LaunchRecord,
    state: &BottleState,
    images: &ImageSet,
    skills: Vec<SkillFile>,
    launcher_pid: u32,
) -> PlanOptions {
    let mut extra_labels = launch.labels.clone();
    extra_labels.insert(LABEL_LAUNCHER_PID.to_owned(), launcher_pid.to_string());
    PlanOptions {
        identity: identity.clone(),
        cwd: meta.cwd.clone(),
        queue_dir: state.queue_dir(),
        images: images.tags.clone(),
        unavailable: images.unavailable.clone(),
        extra_labels,
        skills,
        upstream_ca: launch.upstream_ca.clone(),
        workspace_mode: launch.workspace,
    }
}

/// Repository of the images `launcher resume` builds.
pub const RESUME_IMAGE_REPO: &str = "claude-bottle/agent-resume";

/// The tag `launcher resume` builds for `identity` from `dockerfile`:
/// `claude-bottle/agent-resume:<identity>-<12 hex of its SHA-256>`.
pub fn resume_image_tag(identity: &Identity, dockerfile: &str) -> String {
    use sha2::Digest as _;
    let hash: String = sha2::Sha256::digest(dockerfile.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{RESUME_IMAGE_REPO}:{identity}-{hash}")
}

/// The bottle a resume image tag was built for, if `tag` is one
/// ([`resume_image_tag`]'s shape).
pub fn identity_of_resume_tag(tag: &str) -> Option<Identity> {
    let rest = tag.strip_prefix(RESUME_IMAGE_REPO)?.strip_prefix(':')?;
    let (identity, hash) = rest.rsplit_once('-')?;
    if hash.len() != 12 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Identity::parse(identity).ok()
}

/// The resume images of `tags` that no bottle needs: their bottle is not
/// in `live` (a running resumed bottle uses its image) and has no
/// preserved state in `preserved` (whose next resume builds a new one
/// anyway, but the operator may want to inspect it until then).
pub fn unneeded_resume_images(
    tags: &[String],
    live: &[&str],
    preserved: &[Identity],
) -> Vec<String> {
    tags.iter()
        .filter(|t| {
            identity_of_resume_tag(t)
                .is_some_and(|id| !live.contains(&id.as_str()) && !preserved.contains(&id))
        })
        .cloned()
        .collect()
}

pub mod build;

#[cfg(test)]
mod tests;
