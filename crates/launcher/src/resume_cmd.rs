//! `launcher resume <identity>`: start a bottle again, with the same
//! identity, from the Dockerfile a capability approval left in its state
//! directory, with the agent's transcripts restored; and the teardown that
//! follows a capability approval.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use launcher::capability::{self, DOCKERFILE, TRANSCRIPT};
use launcher::docker::Engine;
use launcher::identity::{Component, Identity};
use launcher::images::AgentImage;
use launcher::lifecycle;
use launcher::plan::{self, AGENT_HOME, AGENT_UID};
use launcher::resume::{self, ResumeFlags};
use launcher::state::{self, BottleState, Metadata, PRESERVE_MARKER};

/// Resume a bottle after a capability approval (rebuild from its new Dockerfile).
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The bottle identity `launcher approve` printed.
    pub identity: String,
    /// The manifest (default: the one `start` used, as recorded in the
    /// state; else the same search order as `start`).
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// Directory holding the sidecar binaries (default: as recorded at
    /// start, else the launcher's own).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Never use the network for images (also on when `start` was offline).
    #[arg(long)]
    pub offline: bool,
    /// Claude Code for the default agent image: a tarball from `npm pack
    /// @anthropic-ai/claude-code`, or `none` (as for `start`).
    #[arg(long, env = "CLAUDE_BOTTLE_CLAUDE_CODE", value_name = "PATH.tgz")]
    pub claude_code: Option<PathBuf>,
    /// State root (default: $CLAUDE_BOTTLE_STATE_DIR or ~/.claude-bottle/state).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Extra label KEY=VALUE on every Docker object (repeatable; added to
    /// the labels recorded at start, a key given here wins).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = crate::start::parse_label)]
    pub labels: Vec<(String, String)>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `launcher resume`.
pub fn resume(args: &ResumeArgs) -> anyhow::Result<std::process::ExitCode> {
    let identity = Identity::parse(&args.identity)?;
    let root = state::root(args.state_dir.as_deref(), |k| std::env::var(k).ok())?;
    let st = BottleState::new(&root, &identity);
    let dockerfile_path = st.dir().join(DOCKERFILE);
    if !st.is_preserved() || !dockerfile_path.is_file() {
        bail!(
            "bottle {identity} has no preserved state to resume in {} (a capability approval leaves a Dockerfile and a .preserve marker there); see `launcher list`",
            st.dir().display()
        );
    }
    let dockerfile = std::fs::read_to_string(&dockerfile_path)
        .with_context(|| format!("reading {}", dockerfile_path.display()))?;
    capability::validate_dockerfile(&dockerfile)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dockerfile_path.display()))?;
    let meta = st.metadata()?;
    // Start it the way `launcher start` did (launch.json), flags winning.
    let recorded = st.launch_record()?;
    if recorded.is_none() {
        eprintln!(
            "note: {} has no launch record (a bottle started by an older launcher or in-process); using this command's flags only",
            st.dir().display()
        );
    }
    let launch = resume::effective(
        recorded.as_ref(),
        &ResumeFlags {
            manifest: args.manifest.clone(),
            bin_dir: args.bin_dir.clone(),
            offline: args.offline,
            labels: args.labels.clone(),
        },
    );
    let rt = runtime()?;
    let signalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    {
        let f = signalled.clone();
        rt.spawn(async move {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            f.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = tx.send(true);
        });
    }
    rt.block_on(async {
        let engine = Engine::connect().await?;
        let cwd_now = std::env::current_dir().context("reading the current directory")?;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let loaded = launcher::load::find_and_load(
            launch.manifest.as_deref(),
            |k| std::env::var(k).ok(),
            &cwd_now,
            home.as_deref(),
        )?;
        let Some(agent) = loaded.manifest.agent(&meta.agent).cloned() else {
            bail!("no agent {:?} in {} any more; cannot resume {identity}", meta.agent, loaded.located);
        };
        let image_opts = crate::start::image_options(
            launch.bin_dir.as_deref(),
            launch.offline,
            args.claude_code.as_deref(),
        )?;
        let skills = launcher::skills::collect(&crate::start::manifest_dir(&loaded), agent.skills())?;
        let mut progress = |l: &str| eprintln!("images: {l}");
        let mut set =
            launcher::images::ensure(&engine, &image_opts, &AgentImage::Default, &mut progress)
                .await?;
        // The proposed Dockerfile, built offline (no pull) with BASE set to
        // the local base image, like every other image.
        let tag = capability::resume_image_tag(&identity, &dockerfile);
        // A Dockerfile derived from the default agent one copies Claude
        // Code from the context (`COPY claude-code/ /`): the tarball given
        // with --claude-code, else an empty overlay.
        let package = launcher::images::tarball_package(&image_opts)?;
        let context = launcher::images::agent_context(&dockerfile, package.as_ref())
            .context("packing the build context")?;
        let build_args =
            HashMap::from([("BASE".to_owned(), launcher::images::base_tag())]);
        eprintln!("building {tag} from {}", dockerfile_path.display());
        engine
            .build_image(context, &tag, build_args, HashMap::new(), &mut |l| {
                eprintln!("build: {l}")
            })
            .await?;
        set.tags.insert(Component::Agent, tag.clone());
        if agent.bottle().pipelock() {
            let image =
                launcher::images::pipelock_image(launch.pipelock_image.as_deref(), |k| {
                    std::env::var(k).ok()
                })?;
            launcher::images::add_pipelock(Some(&engine), &image, &mut set, &mut progress).await?;
        }
        let opts =
            resume::plan_options(&identity, &meta, &launch, &st, &set, skills, std::process::id());
        // supervise compares capability proposals with this Dockerfile.
        let plan = plan::build(&agent, &opts)?.with_current_dockerfile(&dockerfile);
        let metadata = Metadata {
            identity: identity.to_string(),
            agent: meta.agent.clone(),
            cwd: meta.cwd.clone(),
            started_at: jiff::Timestamp::now().to_string(),
            launcher_version: env!("CARGO_PKG_VERSION").to_owned(),
            images: set.tags.iter().map(|(c, t)| (c.to_string(), t.clone())).collect(),
        };
        let env = |k: &str| std::env::var(k).ok();
        let mut progress = |l: &str| eprintln!("{l}");
        let bottle =
            lifecycle::launch(&engine, plan, st.clone(), metadata, &env, &mut progress).await?;
        let restored = restore_transcript(&engine, &bottle.agent_container(), &st).await;
        // The resumed session ends normally: its state goes with it.
        let _ = std::fs::remove_file(st.dir().join(PRESERVE_MARKER));
        match restored {
            Ok(true) => eprintln!("transcripts restored"),
            Ok(false) => eprintln!("no transcript snapshot to restore"),
            Err(e) => eprintln!("warning: restoring the transcripts failed: {e:#}"),
        }
        if !signalled.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!(
                "bottle {identity} resumed from {tag}. Open a shell with\n  docker exec -it {} bash\nCtrl-C or SIGTERM here tears the bottle down.",
                bottle.agent_container()
            );
            let _ = rx.wait_for(|s| *s).await;
        }
        let mut progress = |l: &str| eprintln!("{l}");
        bottle.teardown(&mut progress).await;
        // The image was built for this resume only: the next capability
        // approval brings a different Dockerfile, hence a different tag.
        match capability::remove_resume_image(&engine, &tag).await {
            Ok(()) => eprintln!("removed image {tag}"),
            Err(e) => eprintln!("warning: {e}; `launcher cleanup` removes it later"),
        }
        Ok(std::process::ExitCode::SUCCESS)
    })
}

async fn restore_transcript(
    engine: &Engine,
    agent: &str,
    st: &BottleState,
) -> anyhow::Result<bool> {
    let path = st.dir().join(TRANSCRIPT);
    let Ok(tar) = std::fs::read(&path) else {
        return Ok(false);
    };
    let user = format!("{AGENT_UID}:{AGENT_UID}");
    let dir = format!("{AGENT_HOME}/.claude");
    let out = engine
        .exec(
            agent,
            &user,
            &["mkdir".to_owned(), "-p".to_owned(), dir.clone()],
        )
        .await?;
    if out.code != Some(0) {
        bail!("mkdir -p {dir} in {agent}: {}", out.output.trim());
    }
    let opts = bollard::query_parameters::UploadToContainerOptionsBuilder::default()
        .path(&dir)
        .build();
    engine
        .client()
        .upload_to_container(agent, Some(opts), bollard::body_full(tar.into()))
        .await
        .with_context(|| format!("copying {} into {agent}:{dir}", path.display()))?;
    Ok(true)
}
