//! `launcher resume <identity>`: give the session back after a capability
//! approval. The same identity, the Dockerfile the approval left in the
//! state directory (built with no network), the routes that were live
//! (approvals included), the preflight, then the agent with its
//! transcripts restored and this terminal attached to `claude --continue`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use std::io::IsTerminal as _;

use anyhow::{Context as _, bail};
use clap::Args;
use launcher::approvals::capability::{self, DOCKERFILE, TRANSCRIPT};
use launcher::engine::docker::Engine;
use launcher::engine::images::{AgentImage, claude_code};
use launcher::lifecycle;
use launcher::lifecycle::resume::{self, ResumeFlags};
use launcher::lifecycle::state::{self, BottleState, LIVE_ROUTES_FILE, Metadata, PRESERVE_MARKER};
use launcher::plan::identity::{Component, Identity};
use launcher::plan::{self, AGENT_HOME, AGENT_UID};
use manifest::RouteTable;

use crate::cli::start::Session;

/// Resume a bottle after a capability approval: rebuild from its new
/// Dockerfile, restore routes and transcripts, attach to `claude --continue`.
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
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = crate::cli::start::parse_label)]
    pub labels: Vec<(String, String)>,
    /// Skip the y/N preflight question.
    #[arg(long)]
    pub yes: bool,
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
            claude_code: args.claude_code.clone(),
        },
    );
    // The routes live when the state was preserved, with the slots they name.
    let restored = match st.live_routes()? {
        Some(text) => {
            let origin = st.dir().join(LIVE_ROUTES_FILE);
            let table = RouteTable::parse(&text, &origin.display().to_string())?;
            Some((table, st.token_slots()?))
        }
        None => None,
    };
    let rt = crate::cli::start::runtime()?;
    let (signalled, mut rx) = crate::cli::start::watch_signals(&rt);
    rt.block_on(async {
        let engine = Engine::connect().await?;
        let cwd_now = std::env::current_dir().context("reading the current directory")?;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let loaded = launcher::plan::load::find_and_load(
            launch.manifest.as_deref(),
            |k| std::env::var(k).ok(),
            &cwd_now,
            home.as_deref(),
        )?;
        let Some(agent) = loaded.manifest.agent(&meta.agent).cloned() else {
            bail!("no agent {:?} in {} any more; cannot resume {identity}", meta.agent, loaded.located);
        };
        let image_opts = crate::cli::start::image_options(
            launch.bin_dir.as_deref(),
            launch.offline,
            launch.claude_code.as_deref(),
        )?;
        let skills = launcher::plan::skills::collect(&crate::cli::start::manifest_dir(&loaded), agent.skills())?;
        let mut progress = |l: &str| eprintln!("images: {l}");
        let mut set =
            launcher::engine::images::ensure(&engine, &image_opts, &AgentImage::Default, &mut progress)
                .await?;
        // The agent runs the approved Dockerfile, built below once the
        // operator has seen the preflight.
        let tag = launcher::lifecycle::resume::resume_image_tag(&identity, &dockerfile);
        set.tags.insert(Component::Agent, tag.clone());
        if agent.bottle().pipelock() {
            let image =
                launcher::engine::images::pipelock_image(launch.pipelock_image.as_deref(), |k| {
                    std::env::var(k).ok()
                })?;
            launcher::engine::images::add_pipelock(Some(&engine), &image, &mut set, &mut progress).await?;
        }
        let opts =
            resume::plan_options(&identity, &meta, &launch, &st, &set, skills, std::process::id());
        // supervise and the agent read this Dockerfile as the current one.
        let mut plan = plan::build(&agent, &opts)?.with_current_dockerfile(&dockerfile);
        if let Some((table, slots)) = &restored {
            plan = plan.with_restored_routes(&agent, table, slots)?;
        }
        eprint!("{}", launcher::plan::preflight::render(&plan));
        eprintln!(
            "resuming {identity}: agent image {tag} from {}\n{}\nroutes: {}\ntranscripts: {}",
            dockerfile_path.display(),
            resume::build::BUILD_NETWORK_NOTICE,
            if restored.is_some() {
                "as they were live when the state was preserved (approvals included)"
            } else {
                "the manifest's (no live routes were recorded)"
            },
            if st.dir().join(TRANSCRIPT).is_file() {
                "restored before the session opens"
            } else {
                "none saved"
            },
        );
        if !args.yes && !crate::cli::start::confirm("resume this bottle?")? {
            eprintln!("not resumed; the state stays preserved");
            return Ok(std::process::ExitCode::from(1));
        }
        eprintln!("building {tag} from {} (no network)", dockerfile_path.display());
        // The approved Dockerfile starts from the default agent's, whose
        // `COPY claude-code/` takes the same Claude Code as `start` had.
        let package = match &image_opts.claude_code {
            claude_code::Source::Tarball(path) => Some(claude_code::read(path)?),
            _ => {
                eprintln!(
                    "note: no Claude Code tarball for the approved image (`start` had no --claude-code); pass --claude-code PATH.tgz to resume to put Claude Code in it"
                );
                None
            }
        };
        resume::build::build_proposed(
            &engine,
            &identity,
            &dockerfile,
            &launcher::engine::images::base_tag(),
            package.as_ref(),
            &mut |l| eprintln!("build: {l}"),
        )
        .await?;
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
        let bottle = match lifecycle::launch_until(
            &engine,
            plan,
            st.clone(),
            metadata,
            &env,
            &mut progress,
            Some(rx.clone()),
        )
        .await
        {
            Ok(b) => b,
            Err(e) => {
                let e = anyhow::Error::from(e);
                if crate::cli::start::interrupted(&e) {
                    eprintln!("{e}");
                    return Ok(std::process::ExitCode::from(130));
                }
                return Err(e);
            }
        };
        match restore_transcript(&engine, &bottle.agent_container(), &st).await {
            Ok(true) => eprintln!("transcripts restored"),
            Ok(false) => eprintln!("no transcript snapshot to restore"),
            Err(e) => eprintln!("warning: restoring the transcripts failed: {e:#}"),
        }
        // The resumed session ends normally: its state goes with it (a new
        // capability approval during it preserves it again).
        let _ = std::fs::remove_file(st.dir().join(PRESERVE_MARKER));
        if let Err(e) = st.write_launch(&launch) {
            eprintln!("warning: recording the launch options for `launcher resume`: {e}");
        }
        let mut status = std::process::ExitCode::SUCCESS;
        if !signalled.load(Ordering::SeqCst) {
            if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
                status = crate::cli::start::attach(&bottle, &mut rx, Session::Continue).await;
            } else {
                eprintln!(
                    "bottle {identity} resumed from {tag} (no terminal to attach); continue the session with\n  docker exec -it {} claude --continue\nCtrl-C or SIGTERM here tears the bottle down.",
                    bottle.agent_container()
                );
                let _ = rx.wait_for(|s| *s).await;
            }
        }
        let mut progress = |l: &str| eprintln!("{l}");
        bottle.teardown(&mut progress).await;
        // The image was built for this resume only: the next capability
        // approval brings a different Dockerfile, hence a different tag.
        match capability::remove_resume_image(&engine, &tag).await {
            Ok(()) => eprintln!("removed image {tag}"),
            Err(e) => eprintln!("warning: {e}; `launcher cleanup` removes it later"),
        }
        crate::cli::start::print_resume_hint(&st, &identity);
        Ok(status)
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
