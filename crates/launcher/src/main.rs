//! `launcher`: the operator's command line for claude-bottle.
//!
//! Is: the command tree and the dispatch, with one module per command in
//! `cli/`; each command loads what
//! it needs through the `launcher` library and prints for humans (or JSON
//! with `--format json`).
//!
//! Is not: where bottles are planned or Docker is driven; that lives in the
//! library so it can be unit-tested.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

use cli::{approvals, bottles, images, kubernetes, resume, start, validate};

/// Run Claude Code in a bottle whose only exits are sidecars you control.
#[derive(Debug, Parser)]
#[command(name = "launcher", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Where the bottle runs: the local Docker engine, or the cluster of
    /// the current kubeconfig context (start, stop, approve).
    #[arg(long, global = true, value_enum, default_value_t = kubernetes::Target::Docker)]
    target: kubernetes::Target,
    #[command(flatten)]
    kube: kubernetes::KubeOptions,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a manifest: print every problem (exit 1) or a summary per agent.
    Validate(validate::ValidateArgs),
    /// Start a bottle for an agent (preflight, then run until Ctrl-C/SIGTERM).
    Start(start::StartArgs),
    /// Start a bottle, run one command in the agent, tear down, exit with its status.
    Run(start::RunArgs),
    /// List bottles on this Docker engine.
    List(bottles::ListArgs),
    /// Stop a bottle: remove its containers, networks and state.
    Stop(bottles::StopArgs),
    /// Show the logs of one container of a bottle.
    Logs(bottles::LogsArgs),
    /// Remove orphaned bottles, stray networks and stale state.
    Cleanup(bottles::CleanupArgs),
    /// Prepare images (base, sidecars, agent).
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// List pending proposals with what approval changes (`proposals show ID`: one whole).
    Proposals(approvals::ProposalsArgs),
    /// Approve a proposal; an egress route is live before the agent hears.
    Approve(approvals::ApproveArgs),
    /// Reject a proposal; the note reaches the agent.
    Reject(approvals::RejectArgs),
    /// Show a bottle's live routes (`routes ID`) or edit them (`routes edit ID`).
    Routes(approvals::RoutesArgs),
    /// Edit a bottle's pipelock config (`pipelock edit ID`), validated before it is loaded.
    #[command(subcommand_required = true)]
    Pipelock(approvals::PipelockArgs),
    /// Terminal UI: bottles, pending proposals with a diff preview, decide, timeline.
    Dashboard(approvals::DashboardArgs),
    /// Rebuild and restart a bottle after a capability approval, transcripts restored.
    Resume(resume::ResumeArgs),
    /// Print a bottle's objects for another engine without touching it (`render kubernetes AGENT`).
    #[command(subcommand)]
    Render(kubernetes::RenderCommand),
}

/// `--target kubernetes`: the commands that run on a cluster, or an error
/// naming the ones that do.
fn on_kubernetes(cli: &Cli) -> anyhow::Result<ExitCode> {
    let k = &cli.kube;
    match &cli.command {
        Command::Start(args) => kubernetes::start(args, k),
        Command::Stop(args) => kubernetes::stop(args).map(|()| ExitCode::SUCCESS),
        Command::Approve(args) => kubernetes::approve(args, k).map(|()| ExitCode::SUCCESS),
        Command::Render(cmd) => kubernetes::render(cmd, k).map(|()| ExitCode::SUCCESS),
        Command::Validate(_) => Err(kubernetes::unsupported("validate")),
        Command::Run(_) => Err(kubernetes::unsupported("run")),
        Command::List(args) => kubernetes::list(args).map(|()| ExitCode::SUCCESS),
        Command::Logs(_) => Err(kubernetes::unsupported("logs")),
        Command::Cleanup(_) => Err(kubernetes::unsupported("cleanup")),
        Command::Images(_) => Err(kubernetes::unsupported("images")),
        Command::Proposals(args) => kubernetes::proposals(args, k).map(|()| ExitCode::SUCCESS),
        Command::Reject(args) => kubernetes::reject(args, k).map(|()| ExitCode::SUCCESS),
        Command::Routes(_) => Err(kubernetes::unsupported("routes")),
        Command::Pipelock(_) => Err(kubernetes::unsupported("pipelock")),
        Command::Dashboard(_) => Err(kubernetes::unsupported("dashboard")),
        Command::Resume(_) => Err(kubernetes::unsupported("resume")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        _ if cli.target == kubernetes::Target::Kubernetes => on_kubernetes(&cli),
        Command::Render(cmd) => kubernetes::render(cmd, &cli.kube).map(|()| ExitCode::SUCCESS),
        Command::Validate(args) => validate::run(args).map(|o| match o {
            validate::Outcome::Valid => ExitCode::SUCCESS,
            validate::Outcome::Invalid => ExitCode::from(1),
        }),
        Command::Start(args) => start::start(args),
        Command::Run(args) => start::run(args),
        Command::List(args) => bottles::list(args).map(|()| ExitCode::SUCCESS),
        Command::Stop(args) => bottles::stop(args).map(|()| ExitCode::SUCCESS),
        Command::Logs(args) => bottles::logs(args).map(|()| ExitCode::SUCCESS),
        Command::Cleanup(args) => bottles::cleanup(args).map(|()| ExitCode::SUCCESS),
        Command::Images(cmd) => images::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Proposals(args) => approvals::proposals(args).map(|()| ExitCode::SUCCESS),
        Command::Approve(args) => approvals::approve(args).map(|()| ExitCode::SUCCESS),
        Command::Reject(args) => approvals::reject(args).map(|()| ExitCode::SUCCESS),
        Command::Routes(args) => approvals::routes(args).map(|()| ExitCode::SUCCESS),
        Command::Pipelock(args) => approvals::pipelock(args).map(|()| ExitCode::SUCCESS),
        Command::Dashboard(args) => approvals::dashboard(args).map(|()| ExitCode::SUCCESS),
        Command::Resume(args) => resume::resume(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
