//! Applying a `capability-block` approval: the agent's proposed Dockerfile
//! becomes the bottle's image at the next `launcher resume`.
//!
//! Is: validating the proposed Dockerfile again, writing it into the
//! bottle's state directory (`Dockerfile`), recording the live routes
//! (`routes.yaml`, approvals included), snapshotting the agent's
//! Claude Code transcripts (`~/.claude/projects` → `transcript.tar`),
//! marking the state preserved, and only then writing the `approved`
//! decision with the Dockerfile diff. Tearing the bottle down is the
//! caller's next step; the preserved state survives it.
//!
//! Is not: the rebuild (`launcher resume`).

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use manifest::merge::unified_diff;
use manifest::queue::{Decision, Outcome, ProposalRequest, QUEUE_FORMAT_VERSION};

use crate::approvals::preview::Baseline;
use crate::approvals::queue;
use crate::approvals::{self, ApprovalError, Located};
use crate::engine::BottleEngine;
use crate::engine::docker::Engine;
use crate::lifecycle::resume::{RESUME_IMAGE_REPO, identity_of_resume_tag};
use crate::lifecycle::state::PRESERVE_MARKER;
use crate::plan::AGENT_HOME;
use crate::plan::identity::{Component, Identity};

/// The proposed Dockerfile in the state directory.
pub const DOCKERFILE: &str = "Dockerfile";
/// The transcript snapshot in the state directory (a tar of `projects/`).
pub const TRANSCRIPT: &str = "transcript.tar";
/// Largest Dockerfile accepted (as supervise enforces).
pub const MAX_DOCKERFILE: usize = 256 * 1024;

/// The agent's Claude Code transcript directory.
pub fn transcript_dir() -> String {
    format!("{AGENT_HOME}/.claude/projects")
}

/// Checks a proposed Dockerfile: not empty, at most 256 KiB, with a
/// `FROM` instruction.
pub fn validate_dockerfile(text: &str) -> Result<(), String> {
    if text.len() > MAX_DOCKERFILE {
        return Err(format!(
            "the Dockerfile is {} bytes; at most {MAX_DOCKERFILE} are accepted",
            text.len()
        ));
    }
    let has_from = text.lines().any(|l| {
        l.trim_start()
            .get(..5)
            .is_some_and(|w| w.eq_ignore_ascii_case("from "))
    });
    if !has_from {
        return Err("the Dockerfile has no FROM instruction".into());
    }
    Ok(())
}

/// What a capability approval did.
#[derive(Clone, Debug)]
pub struct CapabilityApproved {
    /// The decision written.
    pub decision: Decision,
    /// Whether a transcript was saved (the agent may not have one yet).
    pub transcript_saved: bool,
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ApprovalError> {
    let io = |action: &'static str| {
        let path = path.to_owned();
        move |source| ApprovalError::Io {
            action,
            path,
            source,
        }
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io("writing"))?;
    std::fs::rename(&tmp, path).map_err(io("renaming into place"))
}

/// The Dockerfile supervise serves as the bottle's current one
/// (`plan::CURRENT_DOCKERFILE`), or `None` when it has none or cannot be read.
pub async fn current_dockerfile(engine: &impl BottleEngine, identity: &Identity) -> Option<String> {
    let path = crate::plan::CURRENT_DOCKERFILE;
    let limit = (2 * MAX_DOCKERFILE) as u64;
    let bytes = engine
        .read_from(identity, Component::Supervise, path, limit)
        .await
        .ok()??;
    String::from_utf8(bytes).ok()
}

/// The Dockerfile a capability proposal is compared with (the previews
/// and the approved decision's diff use the same one): the one the
/// running bottle was built from (supervise's copy, when `engine` is
/// given and answers), else the one an earlier approval saved in the
/// state directory `dir`, else nothing (an image given by reference has
/// no Dockerfile).
pub async fn baseline_dockerfile(
    engine: Option<&Engine>,
    identity: &Identity,
    dir: &Path,
) -> (String, Baseline) {
    if let Some(engine) = engine
        && let Some(text) = current_dockerfile(engine, identity).await
    {
        return (text, Baseline::Running);
    }
    match std::fs::read_to_string(dir.join(DOCKERFILE)) {
        Ok(text) => (text, Baseline::Saved),
        Err(_) => (String::new(), Baseline::Unknown),
    }
}

/// The text of the first regular file in a tar archive.
/// Downloads the transcript directory of `agent` as a tar; `None` when
/// the agent has none yet.
pub async fn snapshot_transcript(engine: &Engine, agent: &str) -> Result<Option<Vec<u8>>, String> {
    let opts = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default()
        .path(&transcript_dir())
        .build();
    let mut stream = engine.client().download_from_container(agent, Some(opts));
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => tar.extend_from_slice(&b),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(format!("copying {} out of {agent}: {e}", transcript_dir())),
        }
    }
    Ok(Some(tar))
}

/// Approves a `capability-block`: Dockerfile and transcript into the state
/// directory, preserve marker, then the decision. On any error nothing is
/// decided.
pub async fn approve_capability(
    engine: &Engine,
    loc: &Located,
    note: &str,
) -> Result<CapabilityApproved, ApprovalError> {
    let id = loc.proposal.id.to_string();
    let ProposalRequest::Capability { dockerfile } = &loc.proposal.request else {
        return Err(ApprovalError::Unsupported(format!(
            "proposal {id} is a {} proposal, not capability-block",
            loc.proposal.request.tool()
        )));
    };
    validate_dockerfile(dockerfile).map_err(|reason| ApprovalError::InvalidProposal {
        id: id.clone(),
        reason,
    })?;
    let _lock = approvals::lock(&loc.state)?;
    queue::ensure_undecided(&loc.queue(), &loc.proposal.id)?;
    let dir = loc.state.dir();
    let (previous, _) = baseline_dockerfile(Some(engine), &loc.identity, dir).await;
    let agent = loc.identity.container_name(Component::Agent);
    let transcript = snapshot_transcript(engine, &agent)
        .await
        .map_err(|e| ApprovalError::Unsupported(format!("{e}; nothing was decided")))?;
    // The routes approved during the session come back with the resume.
    let egress = crate::approvals::apply::DockerEgress::new(engine.clone(), loc.identity.clone());
    let (routes, _) = crate::approvals::apply::live_table(loc.identity.as_str(), &egress)
        .await
        .map_err(|e| ApprovalError::Unsupported(format!("{e}; nothing was decided")))?;
    loc.state
        .write_live_routes(&routes.render())
        .map_err(|e| ApprovalError::Unsupported(format!("{e}; nothing was decided")))?;
    write_file(&dir.join(DOCKERFILE), dockerfile.as_bytes())?;
    if let Some(tar) = &transcript {
        write_file(&dir.join(TRANSCRIPT), tar)?;
    }
    write_file(&dir.join(PRESERVE_MARKER), b"capability-block\n")?;
    let decision = Decision {
        version: QUEUE_FORMAT_VERSION,
        id: loc.proposal.id.clone(),
        outcome: Outcome::Approved,
        note: note.trim().to_owned(),
        decided_at: jiff::Timestamp::now(),
        diff: Some(unified_diff(&previous, dockerfile)),
    };
    queue::write_decision(&loc.queue(), &decision)?;
    Ok(CapabilityApproved {
        decision,
        transcript_saved: transcript.is_some(),
    })
}

/// Tears a bottle down after a capability approval: asks the `launcher`
/// process that started it to stop (SIGTERM; its teardown keeps the
/// preserved state), waits, then removes whatever is left by label.
pub async fn stop_for_resume(
    engine: &Engine,
    identity: &crate::plan::identity::Identity,
) -> Result<(), crate::engine::docker::DockerError> {
    let found = engine.bottles().await?;
    let pid = found
        .iter()
        .find(|f| f.identity == identity.as_str())
        .and_then(|f| f.launcher_pid)
        .filter(|pid| *pid != std::process::id());
    // Only a process that is a launcher is signalled (never, say, a test
    // harness that started the bottle in-process).
    if let Some(pid) = pid
        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() == "launcher")
    {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    engine.remove_bottle(identity.as_str()).await?;
    Ok(())
}

/// Removes a resume image (not forced: an image a container still uses
/// stays, with the error saying so).
pub async fn remove_resume_image(engine: &Engine, tag: &str) -> Result<(), String> {
    engine
        .client()
        .remove_image(
            tag,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("removing image {tag}: {e}"))
}

/// Every resume image tag on the engine.
pub async fn resume_images(engine: &Engine) -> Result<Vec<String>, String> {
    let filters = std::collections::HashMap::from([(
        "reference".to_owned(),
        vec![format!("{RESUME_IMAGE_REPO}:*")],
    )]);
    let opts = bollard::query_parameters::ListImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let images = engine
        .client()
        .list_images(Some(opts))
        .await
        .map_err(|e| format!("listing {RESUME_IMAGE_REPO} images: {e}"))?;
    let mut tags: Vec<String> = images
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .filter(|t| identity_of_resume_tag(t).is_some())
        .collect();
    tags.sort();
    tags.dedup();
    Ok(tags)
}

/// How long [`wait_until_answered`] waits for supervise by default: it
/// polls decisions every 250 ms, so a waiting call answers well within.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether supervise's log shows that it answered proposal `id` (its
/// `decision observed` line, text or JSON format).
pub fn log_shows_answer(log: &str, id: &str) -> bool {
    log.lines()
        .any(|l| l.contains("decision observed") && l.contains(id))
}

/// Waits (bounded by `timeout`) until the bottle's supervise logged that it
/// answered proposal `id`, so the waiting agent has heard "approved"
/// before the bottle is torn down. `false` when it did not within the
/// deadline — e.g. the agent's call had already returned "pending" and
/// nobody waits — or supervise's log cannot be read.
pub async fn wait_until_answered(
    engine: &Engine,
    identity: &crate::plan::identity::Identity,
    id: &str,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(log) = engine.logs_of(identity, Component::Supervise, 400).await
            && log_shows_answer(&log, id)
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests;
