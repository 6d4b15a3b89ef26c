//! Building the Dockerfile a `capability-block` approval left in a
//! bottle's state: the agent wrote it, so its `RUN` steps are the agent's
//! code running on the operator's engine, outside the bottle.
//!
//! Is: the build of that image with **no network** (`--network none`):
//! a `RUN` step reaches no host, no sidecar, no registry and no resolver,
//! on every engine version (a user-defined network would leave DNS
//! forwarding open on engines before 25.0.5, CVE-2024-29018, and build
//! containers cannot be given a DNS sink). Everything a proposed image
//! needs comes from its base image and build context (see
//! `docs/decisions.md`, 2026-11-30).
//!
//! Is not: the build of the operator's own images (the base, sidecars,
//! the default agent or a manifest's `dockerfile:`), which `images` does.

use std::collections::HashMap;

use crate::engine::docker::{DockerError, Engine};
use crate::plan::identity::Identity;

/// The network mode of every agent-proposed build.
pub const BUILD_NETWORK: &str = "none";

/// How the preflight and `launcher resume` describe the build network.
pub const BUILD_NETWORK_NOTICE: &str = "agent-proposed Dockerfile: built with no network (--network none); its RUN steps reach nothing, packages must come from the base image";

/// Why the proposed image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The build context could not be packed.
    #[error("packing the build context of {tag}: {source}")]
    Context {
        /// The image being built.
        tag: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Docker refused or the build failed (Docker's message kept).
    #[error(
        "{source}\nnote: agent-proposed Dockerfiles build with no network (--network none), so a RUN step that downloads anything fails; approve a Dockerfile that uses only what the base image has, or put the change in the manifest's own `dockerfile:` (the operator's, built with the engine's network)"
    )]
    Docker {
        /// Docker's error.
        source: DockerError,
    },
}

/// Builds `dockerfile` for `identity` as
/// [`super::resume_image_tag`] with no network, `BASE` set to
/// `base` (the local base image; nothing is pulled). Its build context is
/// the Dockerfile and the Claude Code overlay of the default agent image
/// (`package`, empty without one) — nothing of the operator's files.
/// Returns the tag.
pub async fn build_proposed(
    engine: &Engine,
    identity: &Identity,
    dockerfile: &str,
    base: &str,
    package: Option<&crate::engine::images::claude_code::Package>,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<String, BuildError> {
    let tag = super::resume_image_tag(identity, dockerfile);
    let context = crate::engine::images::agent_context(dockerfile, package).map_err(|source| {
        BuildError::Context {
            tag: tag.clone(),
            source,
        }
    })?;
    let build_args = HashMap::from([("BASE".to_owned(), base.to_owned())]);
    engine
        .build_image_on(
            context,
            &tag,
            build_args,
            HashMap::new(),
            Some(BUILD_NETWORK),
            progress,
        )
        .await
        .map_err(|source| BuildError::Docker { source })?;
    Ok(tag)
}
