//! `launcher start` and `launcher run`: plan a bottle, show the preflight,
//! start it, then keep it until a signal (`start`) or run one command in
//! the agent (`run`), and tear everything down on every exit path.

use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use launcher::engine::docker::Engine;
use launcher::engine::images::{AgentImage, ImageOptions, ImageSet};
use launcher::engine::{BottleEngine as _, Running};
use launcher::lifecycle::state::{self, BottleState, LaunchRecord, Metadata};
use launcher::lifecycle::{self, Bottle, LABEL_LAUNCHER_PID};
use launcher::plan::identity::{Component, Identity};
use launcher::plan::load::{self, Loaded};
use launcher::plan::{self, Plan, PlanOptions};
use manifest::{Agent, ImageSource, WorkspaceMode};

/// Output format of `--dry-run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The preflight summary.
    Text,
    /// The whole plan as JSON.
    Json,
}

/// Options shared by `start` and `run`.
#[derive(Debug, Args)]
pub struct BottleArgs {
    /// The agent to run (see `launcher validate`).
    pub agent: String,

    /// The manifest (default: $CLAUDE_BOTTLE_MANIFEST, ./claude-bottle.yaml,
    /// ~/.claude-bottle/manifest.yaml, then the embedded default).
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,

    /// Directory the agent works in, at /workspace (see --workspace).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,

    /// How --cwd reaches the agent: `protect` (bind-mounted read-write,
    /// with .git, the claude-bottle.* manifest names, submodule links and
    /// git hook paths read-only) or `copy` (copied in, nothing written
    /// back; results leave by git push through git-gate). Default: the
    /// manifest's bottle.workspace, else protect.
    #[arg(long, value_name = "MODE", value_parser = parse_workspace_mode)]
    pub workspace: Option<WorkspaceMode>,

    /// Directory holding the egress-proxy, git-gate and supervise binaries
    /// the sidecar images are built from (default: the launcher's own).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Never use the network for images (Debian mirror, image registry,
    /// npm registry): a missing base image is an error.
    #[arg(long)]
    pub offline: bool,

    /// Claude Code for the default agent image: a tarball from `npm pack
    /// @anthropic-ai/claude-code` (the air-gapped way), or `none`. Without
    /// it, the host's npm fetches it when the image is built.
    #[arg(long, env = "CLAUDE_BOTTLE_CLAUDE_CODE", value_name = "PATH.tgz")]
    pub claude_code: Option<PathBuf>,

    /// State root (default: $CLAUDE_BOTTLE_STATE_DIR or ~/.claude-bottle/state).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Extra label KEY=VALUE on every Docker object of the bottle
    /// (repeatable; tests label their runs with it).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// pipelock image, pinned by digest (REPOSITORY@sha256:…), for agents
    /// with `bottle.pipelock: true` (default: $CLAUDE_BOTTLE_PIPELOCK_IMAGE,
    /// then the launcher's pinned release).
    #[arg(long, value_name = "IMAGE@sha256:DIGEST")]
    pub pipelock_image: Option<String>,

    /// A PEM file of extra CA certificates egress-proxy and git-gate trust
    /// for upstream servers, besides the system roots (a corporate TLS
    /// proxy). Recorded in the state, so `launcher resume` uses it too.
    #[arg(long, value_name = "PEM")]
    pub upstream_ca: Option<PathBuf>,
}

/// Reads an `--upstream-ca` file: it must hold at least one PEM
/// certificate.
pub(crate) fn read_upstream_ca(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--upstream-ca {}: cannot read it", path.display()))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        bail!(
            "--upstream-ca {}: no PEM certificate in it; expected one or more `-----BEGIN CERTIFICATE-----` blocks",
            path.display()
        );
    }
    Ok(text)
}

fn parse_workspace_mode(s: &str) -> Result<WorkspaceMode, String> {
    WorkspaceMode::parse(s)
}

pub(crate) fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v))
            if !k.is_empty() && !k.starts_with("dev.claude-bottle.")
                || k == "dev.claude-bottle.test-run" =>
        {
            Ok((k.to_owned(), v.to_owned()))
        }
        Some((k, _)) if !k.is_empty() => Err(format!(
            "label {k:?} is reserved (dev.claude-bottle.* is set by the launcher); choose another key"
        )),
        _ => Err(format!(
            "invalid label {s:?}; expected KEY=VALUE, e.g. team=web"
        )),
    }
}

/// Start a bottle and keep it until Ctrl-C / SIGTERM.
#[derive(Debug, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub bottle: BottleArgs,

    /// Skip the y/N preflight question.
    #[arg(long)]
    pub yes: bool,

    /// Print the plan and create nothing (no containers, no state); the
    /// engine's version is read when an engine answers, so the protections
    /// in force and a refusal show here too.
    #[arg(long)]
    pub dry_run: bool,

    /// Format of --dry-run output.
    #[arg(long, value_enum, default_value_t = Format::Text, requires = "dry_run")]
    pub format: Format,
}

/// Start a bottle, run one command in the agent, tear down, exit with its status.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub bottle: BottleArgs,

    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

pub fn bin_dir(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(d) = flag {
        return Ok(d.to_owned());
    }
    let exe = std::env::current_exe().context("locating the launcher executable")?;
    Ok(exe.parent().map(Path::to_owned).unwrap_or_default())
}

pub fn image_options(
    bin: Option<&Path>,
    offline: bool,
    claude_code: Option<&Path>,
) -> anyhow::Result<ImageOptions> {
    Ok(ImageOptions::new(
        bin_dir(bin)?,
        offline,
        claude_code,
        |k| std::env::var(k).ok(),
    )?)
}

/// The agent image the manifest asks for, with a Dockerfile path resolved
/// against the manifest's directory.
pub fn agent_image(agent: &Agent, loaded: &Loaded) -> AgentImage {
    match agent.image() {
        ImageSource::Default => AgentImage::Default,
        ImageSource::Image(r) => AgentImage::Existing(r.clone()),
        ImageSource::Dockerfile(p) => AgentImage::Dockerfile(manifest_dir(loaded).join(p)),
    }
}

/// The directory relative paths in the manifest are resolved against: the
/// manifest's own directory (the directory itself for a directory of
/// Markdown agents; the current directory for the embedded default).
pub(crate) fn manifest_dir(loaded: &Loaded) -> PathBuf {
    match loaded.located.path.as_deref() {
        Some(m) if m.is_dir() => m.to_owned(),
        Some(m) => m.parent().map(Path::to_owned).unwrap_or_default(),
        None => PathBuf::from("."),
    }
}

struct Prepared {
    identity: Identity,
    state: BottleState,
    plan: Plan,
    metadata: Metadata,
    launch: LaunchRecord,
}

/// Loads the manifest and builds the plan. With an engine, images are
/// made to exist (built when missing); without, their tags are computed
/// only (`--dry-run`).
/// The manifest (search order, predecessor hint) and `args`' agent in it,
/// or an error naming the agents there.
pub(crate) fn load_agent(args: &BottleArgs) -> anyhow::Result<(Loaded, Agent)> {
    let cwd_now = std::env::current_dir().context("reading the current directory")?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let loaded = load::find_and_load(
        args.manifest.as_deref(),
        |k| std::env::var(k).ok(),
        &cwd_now,
        home.as_deref(),
    )?;
    if let Some(hint) = load::predecessor_hint(&loaded.located, home.as_deref()) {
        eprintln!("{hint}");
    }
    let Some(agent) = loaded.manifest.agent(&args.agent).cloned() else {
        let names: Vec<&str> = loaded
            .manifest
            .agents()
            .iter()
            .map(|a| a.name().as_str())
            .collect();
        bail!(
            "no agent {:?} in {}; agents there: {}",
            args.agent,
            loaded.located,
            names.join(", ")
        );
    };
    Ok((loaded, agent))
}

async fn prepare(args: &BottleArgs, engine: Option<&Engine>) -> anyhow::Result<Prepared> {
    // An engine that cannot be protected is refused before anything is
    // built or read.
    let report = match engine {
        Some(engine) => Some(assess_engine(engine).await?),
        None => None,
    };
    let (loaded, agent) = load_agent(args)?;
    let cwd = match &args.cwd {
        Some(d) => Some(
            std::fs::canonicalize(d)
                .with_context(|| format!("--cwd {}: not an existing directory", d.display()))?,
        ),
        None => None,
    };
    let skills = launcher::plan::skills::collect(&manifest_dir(&loaded), agent.skills())?;
    let upstream_ca = args
        .upstream_ca
        .as_deref()
        .map(read_upstream_ca)
        .transpose()?;
    let identity = Identity::mint(agent.name())?;
    let root = state::root(args.state_dir.as_deref(), |k| std::env::var(k).ok())?;
    let state = BottleState::new(&root, &identity);
    let image_opts = image_options(
        args.bin_dir.as_deref(),
        args.offline,
        args.claude_code.as_deref(),
    )?;
    let agent_image = agent_image(&agent, &loaded);
    let mut progress = |l: &str| eprintln!("images: {l}");
    let mut set: ImageSet = match engine {
        Some(engine) => {
            launcher::engine::images::ensure(engine, &image_opts, &agent_image, &mut progress)
                .await?
        }
        None => launcher::engine::images::planned(&image_opts, &agent_image).await?,
    };
    if agent.bottle().pipelock() {
        let image =
            launcher::engine::images::pipelock_image(args.pipelock_image.as_deref(), |k| {
                std::env::var(k).ok()
            })?;
        launcher::engine::images::add_pipelock(engine, &image, &mut set, &mut progress).await?;
    }
    let opts = PlanOptions {
        identity: identity.clone(),
        cwd: cwd.clone(),
        queue_dir: state.queue_dir(),
        images: set.tags.clone(),
        unavailable: set.unavailable.clone(),
        extra_labels: args
            .labels
            .iter()
            .cloned()
            .chain([(
                LABEL_LAUNCHER_PID.to_owned(),
                std::process::id().to_string(),
            )])
            .collect::<BTreeMap<_, _>>(),
        upstream_ca: upstream_ca.clone(),
        skills,
        workspace_mode: args.workspace,
    };
    let mut plan = plan::build(&agent, &opts)?;
    if let Some(dockerfile) = launcher::engine::images::agent_dockerfile(&agent_image)? {
        plan = plan.with_current_dockerfile(&dockerfile);
    }
    // What protect mode will guard, as on disk now (the launch surveys
    // again right before the agent is created).
    if let Some(w) = plan
        .workspace
        .as_ref()
        .filter(|w| w.mode == WorkspaceMode::Protect)
    {
        let guards = launcher::plan::workspace::survey(&w.host)?;
        plan = plan.with_guards(guards);
    }
    if let Some(report) = report {
        plan = plan.with_engine(report);
    }
    let metadata = Metadata {
        identity: identity.to_string(),
        agent: agent.name().to_string(),
        cwd,
        started_at: jiff::Timestamp::now().to_string(),
        launcher_version: env!("CARGO_PKG_VERSION").to_owned(),
        images: set
            .tags
            .iter()
            .map(|(c, t)| (c.to_string(), t.clone()))
            .collect(),
    };
    // What `launcher resume` needs to start this bottle the same way.
    let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let launch = LaunchRecord {
        manifest: loaded.located.path.as_deref().map(absolute),
        bin_dir: args.bin_dir.as_deref().map(absolute),
        offline: args.offline,
        labels: args.labels.iter().cloned().collect(),
        upstream_ca,
        pipelock_image: args.pipelock_image.clone(),
        workspace: args.workspace,
        claude_code: args.claude_code.as_deref().map(|p| {
            if p.as_os_str() == launcher::engine::images::claude_code::NONE {
                p.to_owned()
            } else {
                absolute(p)
            }
        }),
    };
    Ok(Prepared {
        identity,
        state,
        plan,
        metadata,
        launch,
    })
}

/// The engine's protections, or its refusal (an engine that cannot be
/// protected never runs a bottle).
async fn assess_engine(
    engine: &Engine,
) -> anyhow::Result<launcher::plan::preflight::engine::EngineReport> {
    let info = engine.info().await?;
    Ok(launcher::plan::preflight::engine::assess(&info)?)
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Set when SIGINT or SIGTERM arrives; a second signal does not kill the
/// teardown.
pub(crate) fn watch_signals(
    rt: &tokio::runtime::Runtime,
) -> (Arc<AtomicBool>, tokio::sync::watch::Receiver<bool>) {
    let flag = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let f = flag.clone();
    rt.spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        f.store(true, Ordering::SeqCst);
        let _ = tx.send(true);
    });
    (flag, rx)
}

/// Whether `e` is a launch abandoned because of SIGINT/SIGTERM (already
/// torn down).
pub(crate) fn interrupted(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<lifecycle::LaunchError>(),
        Some(lifecycle::LaunchError::Interrupted)
    )
}

async fn launch(
    engine: &Engine,
    p: Prepared,
    cancel: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Bottle> {
    let mut progress = |l: &str| eprintln!("{l}");
    let Prepared {
        plan,
        state,
        metadata,
        launch,
        ..
    } = p;
    let env = |k: &str| std::env::var(k).ok();
    let bottle = lifecycle::launch_until(
        engine,
        plan,
        state.clone(),
        metadata,
        &env,
        &mut progress,
        Some(cancel),
    )
    .await?;
    if let Err(e) = state.write_launch(&launch) {
        eprintln!("warning: recording the launch options for `launcher resume`: {e}");
    }
    Ok(bottle)
}

pub(crate) fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question} needs an answer but stdin is not a terminal; pass --yes");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// `launcher start`.
pub fn start(args: &StartArgs) -> anyhow::Result<std::process::ExitCode> {
    let rt = runtime()?;
    if args.dry_run {
        let p = rt.block_on(async {
            let mut p = prepare(&args.bottle, None).await?;
            // Read-only: the engine's version and what protects the bottle
            // there. Without an engine the plan says so.
            let probe = tokio::time::timeout(std::time::Duration::from_secs(10), Engine::connect());
            if let Ok(Ok(engine)) = probe.await {
                p.plan = p.plan.with_engine(assess_engine(&engine).await?);
            }
            anyhow::Ok(p)
        })?;
        let text = match args.format {
            Format::Text => launcher::plan::preflight::render(&p.plan),
            Format::Json => format!("{}\n", serde_json::to_string_pretty(&p.plan)?),
        };
        // A closed pipe (`| head`) is not an error.
        match std::io::stdout().lock().write_all(text.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
            _ => {}
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let (signalled, mut rx) = watch_signals(&rt);
    rt.block_on(async {
        let engine = Engine::connect().await?;
        let p = prepare(&args.bottle, Some(&engine)).await?;
        eprint!("{}", launcher::plan::preflight::render(&p.plan));
        if p.plan.container(launcher::plan::identity::Component::Supervise).is_some() {
            eprintln!("{}", launcher::lifecycle::resume::build::BUILD_NETWORK_NOTICE);
        }
        if !args.yes && !confirm("start this bottle?")? {
            eprintln!("not started");
            return Ok(std::process::ExitCode::from(1));
        }
        let identity = p.identity.clone();
        let state = p.state.clone();
        // A signal during the launch stops it at the next step (or while
        // a sidecar is waiting to be ready) and tears down what exists.
        let bottle = match launch(&engine, p, rx.clone()).await {
            Ok(b) => b,
            Err(e) if interrupted(&e) => {
                eprintln!("{e}");
                return Ok(std::process::ExitCode::from(130));
            }
            Err(e) => return Err(e),
        };
        let mut status = std::process::ExitCode::SUCCESS;
        if !signalled.load(Ordering::SeqCst) {
            if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
                status = attach(&bottle, &mut rx, Session::New).await;
            } else {
                eprintln!(
                    "bottle {identity} is running (no terminal to attach); open a shell with\n  docker exec -it {} bash\nCtrl-C or SIGTERM here tears the bottle down.",
                    bottle.agent_container()
                );
                let _ = rx.wait_for(|s| *s).await;
            }
        }
        let mut progress = |l: &str| eprintln!("{l}");
        bottle.teardown(&mut progress).await;
        print_resume_hint(&state, &identity);
        // A capability approval ends the session by design (SIGTERM from
        // `launcher approve`): a hand-over to `resume`, not an interruption.
        if state.is_preserved() {
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Ok(status)
    })
}

/// After a teardown: when a capability approval preserved the state, the
/// exact command that gives the session back.
pub(crate) fn print_resume_hint(state: &BottleState, identity: &Identity) {
    if state.is_preserved() {
        eprintln!(
            "the bottle's state is preserved (an approved Dockerfile); resume the session with\n  launcher resume {identity}"
        );
    }
}

/// Which session [`attach`] opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Session {
    /// `launcher start`: a new conversation.
    New,
    /// `launcher resume`: the previous conversation (`claude --continue`).
    Continue,
}

/// The command `attach` runs, and what to tell the operator first: Claude
/// Code when the image has it (`claude`, or `claude --continue` for a
/// resume), else a login shell with why and how to fix it.
pub(crate) fn session_command(has_claude: bool, session: Session) -> (Vec<String>, Option<String>) {
    match (has_claude, session) {
        (true, Session::New) => (vec!["claude".into()], None),
        (true, Session::Continue) => (vec!["claude".into(), "--continue".into()], None),
        (false, _) => (vec!["bash".into(), "-l".into()], Some(no_claude())),
    }
}

/// What `start` and `resume` say when the agent image has no `claude`:
/// why, and how to add it.
pub(crate) fn no_claude() -> String {
    format!(
        "Claude Code is not installed in this agent image (no `claude` on its PATH); opening bash instead.\n{}",
        launcher::engine::images::claude_code::missing_hint()
    )
}

/// Attaches this terminal to Claude Code in the agent (or bash when the
/// image has no `claude`) until it exits or a signal arrives.
pub(crate) async fn attach(
    bottle: &Bottle,
    rx: &mut tokio::sync::watch::Receiver<bool>,
    session: Session,
) -> std::process::ExitCode {
    let has_claude = bottle
        .exec_in_agent(&["sh".into(), "-c".into(), "command -v claude".into()])
        .await
        .is_ok_and(|o| o.code == Some(0));
    let (cmd, notice) = session_command(has_claude, session);
    if let Some(n) = notice {
        eprintln!("{n}");
    }
    let user = bottle
        .plan()
        .container(launcher::plan::identity::Component::Agent)
        .map(|c| c.user.clone())
        .unwrap_or_default();
    let container = bottle.agent_container();
    tokio::select! {
        r = launcher::engine::attach::interactive(bottle.engine(), &container, &user, &cmd) => match r {
            Ok(Some(code)) => std::process::ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
            Ok(None) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(2)
            }
        },
        _ = rx.wait_for(|s| *s) => {
            eprintln!("\r\nsignal received; tearing down");
            std::process::ExitCode::from(130)
        }
    }
}

/// `launcher run`.
pub fn run(args: &RunArgs) -> anyhow::Result<std::process::ExitCode> {
    let rt = runtime()?;
    let (signalled, mut rx) = watch_signals(&rt);
    rt.block_on(async {
        let engine = Engine::connect().await?;
        let p = prepare(&args.bottle, Some(&engine)).await?;
        let (identity, state) = (p.identity.clone(), p.state.clone());
        let bottle = match launch(&engine, p, rx.clone()).await {
            Ok(b) => b,
            Err(e) if interrupted(&e) => {
                eprintln!("{e}");
                return Ok(std::process::ExitCode::from(130));
            }
            Err(e) => return Err(e),
        };
        let mut status: Option<i64> = None;
        let mut failure: Option<anyhow::Error> = None;
        if !signalled.load(Ordering::SeqCst) {
            let mut out = |is_err: bool, chunk: &[u8]| {
                let _ = if is_err {
                    std::io::stderr().write_all(chunk)
                } else {
                    std::io::stdout().write_all(chunk)
                };
            };
            tokio::select! {
                r = bottle.exec_in_agent_streaming(&args.cmd, &mut out) => match r {
                    Ok(code) => status = code,
                    Err(e) => failure = Some(e.into()),
                },
                _ = rx.wait_for(|s| *s) => eprintln!("signal received; tearing down"),
            }
        }
        let _ = std::io::stdout().flush();
        // The agent removed under the command (a `launcher stop` that could
        // not signal this process): a stop, not a failure.
        let stopped = failure.is_some()
            && !matches!(
                bottle.engine().state_of(&identity, Component::Agent).await,
                Ok(Running::Yes | Running::Exited(_))
            );
        let mut progress = |l: &str| eprintln!("{l}");
        bottle.teardown(&mut progress).await;
        print_resume_hint(&state, &identity);
        if stopped {
            eprintln!(
                "the bottle was stopped from outside (`launcher stop`) while the command ran"
            );
            return Ok(std::process::ExitCode::from(130));
        }
        if let Some(e) = failure {
            return Err(e);
        }
        // The command's status; 130 when interrupted; 1 when Docker gave none.
        let code = match status {
            Some(c) => u8::try_from(c.clamp(0, 255)).unwrap_or(1),
            None if signalled.load(Ordering::SeqCst) => 130,
            None => 1,
        };
        Ok(std::process::ExitCode::from(code))
    })
}
