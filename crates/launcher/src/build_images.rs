//! `launcher images build`: prepare every image (base, sidecars, agent),
//! rebuilding only what changed.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use launcher::docker::Engine;
use launcher::images::AgentImage;

/// Image commands.
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Build the base, sidecar and default agent images that are missing.
    Build(BuildArgs),
}

/// Options of `images build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Never contact the Debian mirror: a missing base image is an error.
    #[arg(long)]
    pub offline: bool,
    /// Directory holding the daemon binaries (default: the launcher's own).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}

/// Runs `images …`.
pub fn run(cmd: &ImagesCommand) -> anyhow::Result<()> {
    let ImagesCommand::Build(args) = cmd;
    let opts = crate::start::image_options(args.bin_dir.as_deref(), args.offline)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let engine = Engine::connect().await?;
        let mut progress = |l: &str| eprintln!("{l}");
        let set =
            launcher::images::ensure(&engine, &opts, &AgentImage::Default, &mut progress).await?;
        for (c, tag) in &set.tags {
            println!("{c}\t{tag}");
        }
        Ok(())
    })
}
