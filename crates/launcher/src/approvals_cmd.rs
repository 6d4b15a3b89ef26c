//! `launcher proposals`, `approve`, `reject` and `routes [edit]`: the
//! operator's side of the approval loop (docs/approvals.md).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use launcher::apply::{self, DockerEgress, DockerPipelock};
use launcher::approvals::{self, Located};
use launcher::docker::{DockerError, Engine};
use launcher::identity::{Component, Identity};
use launcher::routes_edit::{self, Edited};
use launcher::state;
use manifest::queue::ProposalRequest;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// JSON.
    Json,
}

/// List pending proposals across bottles.
#[derive(Debug, Args)]
pub struct ProposalsArgs {
    /// Only this bottle's proposals.
    #[arg(long)]
    pub identity: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// State root (default: $CLAUDE_BOTTLE_STATE_DIR or ~/.claude-bottle/state).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
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
    match engine.running(&name).await {
        Ok((true, _)) => Ok(()),
        Ok((false, code)) => Err(format!("its egress container {name} exited ({code:?})")),
        Err(DockerError::InspectContainer {
            source:
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                },
            ..
        }) => Err(format!("no container {name} on this engine")),
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
    if let Err(e) = launcher::queue_ops::backfill_decision_audit(&loc.queue()) {
        eprintln!("warning: back-filling decision audit records: {e}");
    }
}

/// `launcher proposals`.
pub fn proposals(args: &ProposalsArgs) -> anyhow::Result<()> {
    let root = root(args.state_dir.as_deref())?;
    let only = args.identity.as_deref().map(Identity::parse).transpose()?;
    let (mut pending, problems) = approvals::list_pending(&root, only.as_ref())?;
    for p in &problems {
        eprintln!("warning: skipped {p}");
    }
    // Only running bottles wait for decisions; without Docker, list all.
    let running: Option<Vec<String>> = runtime()?.block_on(async {
        let engine = Engine::connect().await.ok()?;
        let mut ids: Vec<String> = pending.iter().map(|p| p.identity.to_string()).collect();
        ids.sort();
        ids.dedup();
        let mut up = Vec::new();
        for id in ids {
            if let Ok(identity) = Identity::parse(&id)
                && running(&engine, &identity).await.is_ok()
            {
                up.push(id);
            }
        }
        Some(up)
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
            "warning: the Docker engine does not answer; listing proposals of every bottle in {}, running or not",
            root.display()
        ),
    }
    let now = jiff::Timestamp::now();
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let items: Vec<serde_json::Value> = pending
                .iter()
                .map(|p| {
                    let mut v = serde_json::to_value(&p.proposal).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert(
                            "age_seconds".into(),
                            (now.as_second() - p.proposal.created_at.as_second()).into(),
                        );
                    }
                    v
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?;
        }
        Format::Text => {
            if pending.is_empty() {
                writeln!(out, "no pending proposals")?;
            }
            for p in &pending {
                writeln!(out, "{}", approvals::describe(p, now))?;
            }
            if !pending.is_empty() {
                writeln!(
                    out,
                    "decide with `launcher approve <id> [--note TEXT]` or `launcher reject <id> --note TEXT`"
                )?;
            }
        }
    }
    Ok(())
}

/// `launcher approve`.
pub fn approve(args: &ApproveArgs) -> anyhow::Result<()> {
    let root = root(args.state_dir.as_deref())?;
    let loc = approvals::locate(&root, &args.id)?;
    backfill(&loc);
    launcher::queue_ops::ensure_undecided(&loc.queue(), &loc.proposal.id)?;
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
        let egress = DockerEgress::new(
            engine.clone(),
            loc.identity.container_name(Component::Egress),
        );
        // pipelock first, when the bottle runs one (seed 002's order).
        let pipelock = DockerPipelock::of_bottle(&engine, &loc.identity).await;
        let a = approvals::approve_egress(
            &loc,
            &egress,
            pipelock.as_ref(),
            &args.note,
            args.without_auth,
            grant.as_ref(),
        )
        .await?;
        if a.changed {
            println!(
                "approved {}: the route is live in bottle {} (routes version {})",
                args.id, loc.identity, a.version
            );
            if let Some(d) = &a.decision.diff {
                print!("{d}");
            }
        } else {
            println!(
                "approved {}: bottle {} already allowed everything it asked for; nothing changed",
                args.id, loc.identity
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
        Ok(())
    })
}

/// `launcher reject`.
pub fn reject(args: &RejectArgs) -> anyhow::Result<()> {
    let root = root(args.state_dir.as_deref())?;
    let loc = approvals::locate(&root, &args.id)?;
    backfill(&loc);
    launcher::queue_ops::ensure_undecided(&loc.queue(), &loc.proposal.id)?;
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
    Ok(DockerEgress::new(
        engine,
        identity.container_name(Component::Egress),
    ))
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

fn edit(identity: &Identity, state_dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    use apply::EgressControl as _;
    // The change is recorded in the bottle's audit log: its state must be here.
    let st = state::BottleState::new(&root(state_dir)?, identity);
    if !st.queue_dir().is_dir() {
        bail!(
            "bottle {identity} has no state in {} (its audit log lives in the queue there); pass the --state-dir it was started with. Nothing was changed",
            st.dir().display()
        );
    }
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
            print!("{diff}");
        }
        Ok(())
    })
}

fn approve_capability(args: &ApproveArgs, loc: &Located) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let engine = Engine::connect().await?;
        ensure_running(&engine, loc).await?;
        let c = launcher::capability::approve_capability(&engine, loc, &args.note).await?;
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
            print!("{d}");
        }
        // Tear down only once supervise has answered the waiting agent
        // (its "decision observed" log line), bounded by a deadline.
        let cap = launcher::capability::ANSWER_TIMEOUT;
        if !launcher::capability::wait_until_answered(&engine, &loc.identity, &args.id, cap).await
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
        launcher::capability::stop_for_resume(&engine, &loc.identity).await?;
        println!("resume it with:\n  launcher resume {}", loc.identity);
        Ok(())
    })
}
