//! `launcher images build`: prepare every image (base, sidecars, agent),
//! rebuilding only what changed.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use launcher::engine::docker::Engine;
use launcher::engine::images::{AgentImage, ClaudeCodeStatus, claude_code};

/// Image commands.
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Build the base, sidecar and default agent images that are missing.
    Build(BuildArgs),
}

/// Options of `images build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Never use the network (Debian mirror, image registry, npm registry):
    /// a missing base image is an error.
    #[arg(long)]
    pub offline: bool,
    /// Directory holding the daemon binaries (default: the launcher's own).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Claude Code for the default agent image: a tarball from `npm pack
    /// @anthropic-ai/claude-code` (the air-gapped way), or `none`. Without
    /// it, the host's npm fetches it; an agent image built earlier without
    /// Claude Code is then rebuilt.
    #[arg(long, env = "CLAUDE_BOTTLE_CLAUDE_CODE", value_name = "PATH.tgz")]
    pub claude_code: Option<PathBuf>,
    /// The Debian image the base is built from when the engine can pull it,
    /// pinned by digest (REPOSITORY:TAG@sha256:…), or `none` for debootstrap
    /// only (default: $CLAUDE_BOTTLE_DEBIAN_IMAGE, then the launcher's pin).
    #[arg(long, value_name = "IMAGE@sha256:DIGEST")]
    pub debian_image: Option<String>,
}

/// Runs `images …`.
pub fn run(cmd: &ImagesCommand) -> anyhow::Result<()> {
    let ImagesCommand::Build(args) = cmd;
    let mut opts = crate::cli::start::image_options(
        args.bin_dir.as_deref(),
        args.offline,
        args.claude_code.as_deref(),
    )?;
    if let Some(image) = args.debian_image.as_deref() {
        opts.debian_image = launcher::engine::images::debian_image(Some(image), |_| None)?;
    }
    opts.retry_claude_code = true;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let engine = Engine::connect().await?;
        let mut progress = |l: &str| eprintln!("{l}");
        let set =
            launcher::engine::images::ensure(&engine, &opts, &AgentImage::Default, &mut progress)
                .await?;
        for (c, tag) in &set.tags {
            println!("{c}\t{tag}");
        }
        match &set.claude_code {
            ClaudeCodeStatus::Installed(v) => eprintln!("Claude Code {v} is in the agent image"),
            ClaudeCodeStatus::Missing | ClaudeCodeStatus::Unknown => eprintln!(
                "the agent image has no Claude Code; {}",
                claude_code::missing_hint()
            ),
        }
        Ok(())
    })
}
