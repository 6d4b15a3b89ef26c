//! `launcher proposals [show]`, `approve`, `reject`, `routes [edit]` and
//! `pipelock edit`: the operator's side of the approval loop
//! (docs/approvals.md).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use launcher::approvals::apply::{self, DockerEgress, DockerPipelock};
use launcher::approvals::preview::{self, Changes, Layout};
use launcher::approvals::routes_edit::{self, Edited};
use launcher::approvals::{self, Located};
use launcher::engine::docker::Engine;
use launcher::engine::{BottleEngine as _, Running};
use launcher::lifecycle::state;
use launcher::plan::identity::{Component, Identity};
use manifest::queue::ProposalRequest;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// JSON.
    Json,
}

/// List pending proposals across bottles, or show one whole.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ProposalsArgs {
    /// Only this bottle's proposals.
    #[arg(long)]
    pub identity: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    pub format: Format,
    /// State root (default: $CLAUDE_BOTTLE_STATE_DIR or ~/.claude-bottle/state).
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<ProposalsCommand>,
}

/// `proposals` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProposalsCommand {
    /// One proposal whole: what is asked, the whole diff, the whole justification.
    Show {
        /// The proposal id.
        id: String,
    },
}

/// Approve a proposal (for egress-block: the route is live before the agent hears).
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The proposal id (see `launcher proposals`).
    pub id: String,
    /// Words for the agent.
    #[arg(long, default_value = "")]
    pub note: String,
    /// Approve an egress-block for a new host without the credential it asks
    /// for.
    #[arg(long)]
    pub without_auth: bool,
    /// Grant the credential an egress-block asks for: NAME must be the
    /// proposal's token_ref; its value is read from this environment and
    /// written only into the bottle's egress container.
    #[arg(long, value_name = "NAME", conflicts_with = "without_auth")]
    pub grant: Option<String>,
    /// Also let the approved host's route reach private, loopback and
    /// link-local addresses (`allow_private: true`): an operator decision
    /// an agent's proposal can never make.
    #[arg(long)]
    pub allow_private: bool,
    /// State root (default: $CLAUDE_BOTTLE_STATE_DIR or ~/.claude-bottle/state).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Reject a proposal; the note reaches the agent.
#[derive(Debug, Args)]
pub struct RejectArgs {
    /// The proposal id (see `launcher proposals`).
    pub id: String,
    /// Why (required; the agent reads it).
    #[arg(long)]
    pub note: String,
    /// State root (default: $CLAUDE_BOTTLE_STATE_DIR or ~/.claude-bottle/state).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Show a bottle's live routes, or edit them.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RoutesArgs {
    /// The bottle identity: show its live routes table.
    pub identity: Option<String>,
    /// Output format of the table.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// State root, where `routes edit` records the change in the bottle's
    /// audit log (default: $CLAUDE_BOTTLE_STATE_DIR or ~/.claude-bottle/state).
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<RoutesCommand>,
}

/// `routes` subcommands.
#[derive(Debug, Subcommand)]
pub enum RoutesCommand {
    /// Edit the live routes in $VISUAL/$EDITOR; validated before anything is applied.
    Edit {
        /// The bottle identity.
        identity: String,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn root(flag: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    Ok(state::root(flag, |k| std::env::var(k).ok())?)
}

/// Whether `identity`'s egress container runs: `Err` says what was found.
async fn running(engine: &Engine, identity: &Identity) -> Result<(), String> {
    let name = identity.container_name(Component::Egress);
    match engine.state_of(identity, Component::Egress).await {
        Ok(Running::Yes) => Ok(()),
        Ok(Running::Exited(code)) => Err(format!("its egress container {name} exited ({code:?})")),
        Ok(Running::Missing) => Err(format!("no container {name} on this engine")),
        Err(e) => Err(e.to_string()),
    }
}

async fn ensure_running(engine: &Engine, loc: &Located) -> anyhow::Result<()> {
    running(engine, &loc.identity).await.map_err(|why| {
        approvals::ApprovalError::Stopped {
            identity: loc.identity.to_string(),
            id: loc.proposal.id.to_string(),
            why,
            state: loc.state.dir().to_owned(),
        }
        .into()
    })
}

/// Crash recovery (queue protocol): a decision file written without its
/// audit line gets the line now.
fn backfill(loc: &Located) {
    if let Err(e) = launcher::approvals::queue::backfill_decision_audit(&loc.queue()) {
        eprintln!("warning: back-filling decision audit records: {e}");
    }
}

/// Columns the text output fits agent text into: the terminal's width,
/// else 100.
fn text_width() -> usize {
    if std::io::stdout().is_terminal()
        && let Ok((cols, _)) = crossterm::terminal::size()
    {
        return usize::from(cols).clamp(40, 240);
    }
    100
}

/// `launcher proposals [show ID]`.
pub fn proposals(args: &ProposalsArgs) -> anyhow::Result<()> {
    let root = root(args.state_dir.as_deref())?;
    if let Some(ProposalsCommand::Show { id }) = &args.command {
        return show_proposal(&root, id, args.format);
    }
    let only = args.identity.as_deref().map(Identity::parse).transpose()?;
    let (mut pending, problems) = approvals::list_pending(&root, only.as_ref())?;
    for p in &problems {
        eprintln!("warning: skipped {p}");
    }
    let rt = runtime()?;
    // Only running bottles wait for decisions; without Docker, list all.
    let engine = rt.block_on(Engine::connect()).ok();
    let running: Option<Vec<String>> = engine.as_ref().map(|engine| {
        rt.block_on(async {
            let mut ids: Vec<String> = pending.iter().map(|p| p.identity.to_string()).collect();
            ids.sort();
            ids.dedup();
            let mut up = Vec::new();
            for id in ids {
                if let Ok(identity) = Identity::parse(&id)
                    && running(engine, &identity).await.is_ok()
                {
                    up.push(id);
                }
            }
            up
        })
    });
    match &running {
        Some(up) => {
            let before = pending.len();
            pending.retain(|p| up.iter().any(|u| u == p.identity.as_str()));
            if pending.len() < before {
                eprintln!(
                    "note: {} proposal(s) of bottles that are not running are not shown (nothing waits for them)",
                    before - pending.len()
                );
            }
        }
        None => eprintln!(
            "warning: the Docker engine does not answer; listing proposals of every bottle in {}, running or not (what approval changes cannot be read)",
            root.display()
        ),
    }
    let changes: Vec<Changes> = rt.block_on(async {
        let mut out = Vec::new();
        for p in &pending {
            let st = state::BottleState::new(&root, &p.identity);
            out.push(preview::changes(engine.as_ref(), &st, p, running.is_some()).await);
        }
        out
    });
    let now = jiff::Timestamp::now();
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let items: Vec<serde_json::Value> = pending
                .iter()
                .zip(&changes)
                .map(|(p, c)| proposal_json(p, c, now))
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?;
        }
        Format::Text => {
            if pending.is_empty() {
                writeln!(out, "no pending proposals")?;
            }
            let layout = Layout {
                width: text_width(),
                full: false,
            };
            for (p, c) in pending.iter().zip(&changes) {
                writeln!(out, "{}", preview::render(p, c, now, layout))?;
            }
            if !pending.is_empty() {
                writeln!(
                    out,
                    "decide with `launcher approve <id> [--note TEXT]` or `launcher reject <id> --note TEXT`; `launcher proposals show <id>` shows one whole"
                )?;
            }
        }
    }
    Ok(())
}

fn proposal_json(p: &approvals::Pending, c: &Changes, now: jiff::Timestamp) -> serde_json::Value {
    let mut v = serde_json::to_value(&p.proposal).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "age_seconds".into(),
            (now.as_second() - p.proposal.created_at.as_second()).into(),
        );
        o.insert("changes".into(), preview::changes_json(c));
    }
    v
}

/// `launcher proposals show ID`: everything, nothing cut.
fn show_proposal(root: &std::path::Path, id: &str, format: Format) -> anyhow::Result<()> {
    let loc = approvals::locate(root, id)?;
    let decided =
        launcher::approvals::queue::ensure_undecided(&loc.queue(), &loc.proposal.id).err();
    let rt = runtime()?;
    let changes = rt.block_on(async {
        let engine = Engine::connect().await.ok();
        let up = match &engine {
            Some(e) => running(e, &loc.identity).await.is_ok(),
            None => false,
        };
        let p = approvals::Pending {
            identity: loc.identity.clone(),
            proposal: loc.proposal.clone(),
        };
        preview::changes(engine.as_ref(), &loc.state, &p, up).await
    });
    let p = approvals::Pending {
        identity: loc.identity.clone(),
        proposal: loc.proposal.clone(),
    };
    let now = jiff::Timestamp::now();
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&proposal_json(&p, &changes, now))?
        ),
        Format::Text => {
            if let Some(d) = &decided {
                println!("note: {d}");
            }
            let layout = Layout {
                width: text_width(),
                full: true,
            };
            print!("{}", preview::render(&p, &changes, now, layout));
        }
    }
    Ok(())
}

/// Prints what an approval of `loc` asks for, before anything is done.
fn print_asked(loc: &Located) {
    println!(
        "approving {} ({} from bottle {}):",
        loc.proposal.id,
        loc.proposal.request.tool(),
        loc.identity
    );
    for (k, v) in preview::asked(&loc.proposal.request) {
        println!("{}", preview::field(k, &v, text_width()));
    }
}

/// `launcher approve`.
pub fn approve(args: &ApproveArgs) -> anyhow::Result<()> {
    let root = root(args.state_dir.as_deref())?;
    let loc = approvals::locate(&root, &args.id)?;
    backfill(&loc);
    launcher::approvals::queue::ensure_undecided(&loc.queue(), &loc.proposal.id)?;
    print_asked(&loc);
    match &loc.proposal.request {
        ProposalRequest::Egress(_) => {}
        ProposalRequest::Capability { .. } => return approve_capability(args, &loc),
        ProposalRequest::Pipelock { .. } => return approve_pipelock(args, &loc),
    }
    // Read before touching Docker: a missing variable changes nothing.
    let grant = args
        .grant
        .as_deref()
        .map(|name| approvals::Grant::from_env(name, |k| std::env::var(k).ok()))
        .transpose()?;
    runtime()?.block_on(async {
        let engine = Engine::connect().await?;
        ensure_running(&engine, &loc).await?;
        let egress = DockerEgress::new(engine.clone(), loc.identity.clone());
        // pipelock first, when the bottle runs one (seed 002's order).
        let pipelock = DockerPipelock::of_bottle(&engine, &loc.identity).await;
        let a = approvals::approve_egress(
            &loc,
            &egress,
            pipelock.as_ref(),
            &args.note,
            args.without_auth,
            grant.as_ref(),
            args.allow_private,
        )
        .await?;
        report_approved(&args.id, &loc.identity, &a, |g| {
            if g.new_slot {
                format!("written into the egress container as {}", g.token_env)
            } else {
                format!("egress already held it as {}", g.token_env)
            }
        });
        Ok(())
    })
}

/// What an egress approval changed, on stdout (warnings on stderr);
/// `where_token` says where a granted credential went on this engine.
pub(crate) fn report_approved(
    id: &str,
    identity: &Identity,
    a: &approvals::EgressApproved,
    where_token: impl Fn(&preview::Attachment) -> String,
) {
    if a.changed {
        println!(
            "approved {id}: the route is live in bottle {identity} (routes version {})",
            a.version
        );
        if let Some(d) = &a.decision.diff {
            print!("{}", approvals::sanitize(d));
        }
    } else {
        println!(
            "approved {id}: bottle {identity} already allowed everything it asked for; nothing changed"
        );
    }
    for g in &a.granted {
        println!(
            "granted: your ${} now goes to {} ({})",
            g.name(),
            g.host,
            where_token(g)
        );
    }
    if let Some(w) = &a.audit_warning {
        eprintln!("warning: {w}");
    }
    if !a.missing_token_env.is_empty() {
        eprintln!(
            "warning: routes name token variables the egress container lacks: {}",
            a.missing_token_env.join(", ")
        );
    }
}

/// `launcher reject`.
pub fn reject(args: &RejectArgs) -> anyhow::Result<()> {
    let root = root(args.state_dir.as_deref())?;
    let loc = approvals::locate(&root, &args.id)?;
    backfill(&loc);
    launcher::approvals::queue::ensure_undecided(&loc.queue(), &loc.proposal.id)?;
    if args.note.trim().is_empty() {
        return Err(approvals::ApprovalError::EmptyNote.into());
    }
    runtime()?.block_on(async {
        let engine = Engine::connect().await?;
        ensure_running(&engine, &loc).await
    })?;
    approvals::reject(&loc, &args.note)?;
    println!("rejected {} (bottle {})", args.id, loc.identity);
    Ok(())
}

/// `launcher routes [edit]`.
pub fn routes(args: &RoutesArgs) -> anyhow::Result<()> {
    match (&args.command, &args.identity) {
        (Some(RoutesCommand::Edit { identity }), _) => {
            edit(&Identity::parse(identity)?, args.state_dir.as_deref())
        }
        (None, Some(identity)) => show(&Identity::parse(identity)?, args.format),
        (None, None) => bail!(
            "name a bottle: `launcher routes <identity>` or `launcher routes edit <identity>` (see `launcher list`)"
        ),
    }
}

async fn egress_of(identity: &Identity) -> anyhow::Result<DockerEgress> {
    let engine = Engine::connect().await?;
    running(&engine, identity)
        .await
        .map_err(|why| anyhow::anyhow!("bottle {identity} is not running: {why}"))?;
    Ok(DockerEgress::new(engine, identity.clone()))
}

fn show(identity: &Identity, format: Format) -> anyhow::Result<()> {
    use apply::EgressControl as _;
    runtime()?.block_on(async {
        let egress = egress_of(identity).await?;
        let status = egress.status().await.map_err(anyhow::Error::msg)?;
        let text = egress.read_routes().await.map_err(anyhow::Error::msg)?;
        let table = manifest::routes::RouteTable::parse(&text, apply::EGRESS_ROUTES_PATH).ok();
        let in_sync = table.as_ref().map(|t| t.version_hash()) == Some(status.version.clone());
        match format {
            Format::Json => {
                let v = serde_json::json!({
                    "bottle": identity.as_str(),
                    "version": status.version,
                    "file_matches_live_table": in_sync,
                    "last_reload_error": status.last_reload_error,
                    "missing_token_env": status.missing_token_env,
                    "routes": table.map(|t| t.introspection()),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            Format::Text => {
                println!(
                    "# bottle {identity}, live routes version {}",
                    status.version
                );
                if !in_sync {
                    println!(
                        "# WARNING: the file below is not the live table (last reload error: {})",
                        status.last_reload_error.as_deref().unwrap_or("none")
                    );
                }
                if !status.missing_token_env.is_empty() {
                    println!(
                        "# WARNING: unset token variables: {}",
                        status.missing_token_env.join(", ")
                    );
                }
                print!("{text}");
            }
        }
        Ok(())
    })
}

/// The state of a bottle whose change an edit records in its audit log
/// (the queue): it must be under the state root.
fn audited_state(
    identity: &Identity,
    state_dir: Option<&std::path::Path>,
) -> anyhow::Result<state::BottleState> {
    let st = state::BottleState::new(&root(state_dir)?, identity);
    if !st.queue_dir().is_dir() {
        bail!(
            "bottle {identity} has no state in {} (its audit log lives in the queue there); pass the --state-dir it was started with. Nothing was changed",
            st.dir().display()
        );
    }
    Ok(st)
}

fn edit(identity: &Identity, state_dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    use apply::EgressControl as _;
    let st = audited_state(identity, state_dir)?;
    let rt = runtime()?;
    let egress = rt.block_on(egress_of(identity))?;
    let current = rt
        .block_on(egress.read_routes())
        .map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let file = dir.path().join(format!("{identity}-routes.yaml"));
    let cmd = routes_edit::editor_command(|k| std::env::var(k).ok());
    let interactive = std::io::stdin().is_terminal();
    let edited = routes_edit::edit(identity.as_str(), &current, &file, interactive, &mut |p| {
        routes_edit::run_editor(&cmd, p)
    })?;
    let table = match edited {
        Edited::Unchanged => {
            println!("no change; nothing applied");
            return Ok(());
        }
        Edited::Changed(t) => t,
    };
    let applied = rt.block_on(async {
        let pipelock = match Engine::connect().await {
            Ok(engine) => DockerPipelock::of_bottle(&engine, identity).await,
            Err(_) => None,
        };
        approvals::apply_edit(identity, &st, &egress, pipelock.as_ref(), &current, &table).await
    })?;
    println!(
        "applied: bottle {identity} now runs routes version {} (was {})",
        applied.status.version, applied.before_version
    );
    print!("{}", applied.diff);
    if let Some(w) = &applied.audit_warning {
        eprintln!("warning: {w}");
    }
    if !applied.status.missing_token_env.is_empty() {
        eprintln!(
            "warning: routes name token variables the egress container lacks (requests on them get 502): {}",
            applied.status.missing_token_env.join(", ")
        );
    }
    Ok(())
}

/// The terminal UI over bottles, proposals and the timeline.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// State root (default: $CLAUDE_BOTTLE_STATE_DIR or ~/.claude-bottle/state).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// `launcher dashboard`.
pub fn dashboard(args: &DashboardArgs) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!(
            "the dashboard needs an interactive terminal; without one use `launcher proposals`, `approve`, `reject`"
        );
    }
    let root = root(args.state_dir.as_deref())?;
    launcher::dashboard::run(root).context("running the dashboard")
}

fn approve_pipelock(args: &ApproveArgs, loc: &Located) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let engine = Engine::connect().await?;
        ensure_running(&engine, loc).await?;
        let Some(pipelock) = DockerPipelock::of_bottle(&engine, &loc.identity).await else {
            bail!(
                "proposal {} is a pipelock-block, but bottle {} runs no pipelock; nothing was applied. Reject it: `launcher reject {} --note TEXT`",
                args.id,
                loc.identity,
                args.id
            );
        };
        let d = approvals::approve_pipelock(loc, &pipelock, &args.note).await?;
        println!(
            "approved {}: pipelock in bottle {} now allows it (restarted with the new allowlist)",
            args.id, loc.identity
        );
        if let Some(diff) = &d.diff {
            print!("{}", approvals::sanitize(diff));
        }
        Ok(())
    })
}

fn approve_capability(args: &ApproveArgs, loc: &Located) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let engine = Engine::connect().await?;
        ensure_running(&engine, loc).await?;
        let c = launcher::approvals::capability::approve_capability(&engine, loc, &args.note).await?;
        println!(
            "approved {}: the new Dockerfile{} are kept in {}",
            args.id,
            if c.transcript_saved {
                " and the agent's transcripts"
            } else {
                " (the agent had no transcript yet)"
            },
            loc.state.dir().display()
        );
        if let Some(d) = &c.decision.diff {
            // The Dockerfile is the agent's text.
            print!("{}", approvals::sanitize(d));
        }
        // Tear down only once supervise has answered the waiting agent
        // (its "decision observed" log line), bounded by a deadline.
        let cap = launcher::approvals::capability::ANSWER_TIMEOUT;
        if !launcher::approvals::capability::wait_until_answered(&engine, &loc.identity, &args.id, cap).await
        {
            eprintln!(
                "note: supervise did not report answering {} within {} s (the agent's call may already have returned \"pending\"; after the resume it can ask proposal-status)",
                args.id,
                cap.as_secs()
            );
        }
        eprintln!(
            "tearing bottle {} down (its state is preserved)",
            loc.identity
        );
        launcher::approvals::capability::stop_for_resume(&engine, &loc.identity).await?;
        println!("resume it with:\n  launcher resume {}", loc.identity);
        Ok(())
    })
}

/// Edit a bottle's pipelock config.
#[derive(Debug, Args)]
pub struct PipelockArgs {
    /// State root, where the edit is recorded in the bottle's audit log
    /// (default: $CLAUDE_BOTTLE_STATE_DIR or ~/.claude-bottle/state).
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: PipelockCommand,
}

/// `pipelock` subcommands.
#[derive(Debug, Subcommand)]
pub enum PipelockCommand {
    /// Edit the running pipelock's config in $VISUAL/$EDITOR; validated,
    /// then loaded with a restart and a health check (rolled back if it fails).
    Edit {
        /// The bottle identity.
        identity: String,
    },
}

/// `launcher pipelock edit`.
pub fn pipelock(args: &PipelockArgs) -> anyhow::Result<()> {
    use apply::PipelockConfig as _;
    let PipelockCommand::Edit { identity } = &args.command;
    let identity = Identity::parse(identity)?;
    let st = audited_state(&identity, args.state_dir.as_deref())?;
    let rt = runtime()?;
    let Some(pipelock) = rt.block_on(async {
        let engine = Engine::connect().await.ok()?;
        DockerPipelock::of_bottle(&engine, &identity).await
    }) else {
        bail!(
            "bottle {identity} has no running pipelock (it runs only with `pipelock: true` in the manifest, and only while the bottle runs; see `launcher list`). Nothing was changed"
        );
    };
    let current = rt
        .block_on(pipelock.read_config())
        .map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let file = dir.path().join(format!("{identity}-pipelock.yaml"));
    let cmd = routes_edit::editor_command(|k| std::env::var(k).ok());
    let interactive = std::io::stdin().is_terminal();
    let edited = routes_edit::edit_checked(
        &format!(
            "pipelock config of bottle {identity} (restarted with it; rolled back if unhealthy)"
        ),
        &current,
        &file,
        interactive,
        &mut |p| routes_edit::run_editor(&cmd, p),
        &apply::check_pipelock_config,
        &|c: &apply::PipelockConfigText| c.text().trim_end() == current.trim_end(),
    )?;
    let config = match edited {
        Edited::Unchanged => {
            println!("no change; nothing applied");
            return Ok(());
        }
        Edited::Changed(c) => c,
    };
    let done = rt.block_on(approvals::apply_pipelock_edit(
        &identity, &st, &pipelock, &current, &config,
    ))?;
    println!("applied: pipelock in bottle {identity} restarted with the new config and is healthy");
    print!("{}", done.diff);
    if !done.added.is_empty() {
        println!(
            "note: pipelock now also allows {}; egress-proxy still refuses a host no route allows",
            done.added.join(", ")
        );
    }
    if !done.removed.is_empty() {
        println!(
            "note: pipelock no longer allows {}; requests egress lets through to them now fail at pipelock",
            done.removed.join(", ")
        );
    }
    if let Some(w) = &done.audit_warning {
        eprintln!("warning: {w}");
    }
    Ok(())
}
