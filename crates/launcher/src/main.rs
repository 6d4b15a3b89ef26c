//! `launcher`: the operator's command line for claude-bottle.
//!
//! Is: argument parsing and one module per command; each command loads what
//! it needs through the `launcher` library and prints for humans (or JSON
//! with `--format json`).
//!
//! Is not: where bottles are planned or Docker is driven; that lives in the
//! library so it can be unit-tested.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod approvals_cmd;
mod bottles;
mod build_images;
#[path = "kubernetes/cli.rs"]
mod kubernetes_cli;
mod resume_cmd;
mod start;
mod validate;

/// Run Claude Code in a bottle whose only exits are sidecars you control.
#[derive(Debug, Parser)]
#[command(name = "launcher", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Where the bottle runs: the local Docker engine, or the cluster of
    /// the current kubeconfig context (start, stop, approve).
    #[arg(long, global = true, value_enum, default_value_t = kubernetes_cli::Target::Docker)]
    target: kubernetes_cli::Target,
    #[command(flatten)]
    kube: kubernetes_cli::KubeOptions,
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
    Images(build_images::ImagesCommand),
    /// List pending proposals with what approval changes (`proposals show ID`: one whole).
    Proposals(approvals_cmd::ProposalsArgs),
    /// Approve a proposal; an egress route is live before the agent hears.
    Approve(approvals_cmd::ApproveArgs),
    /// Reject a proposal; the note reaches the agent.
    Reject(approvals_cmd::RejectArgs),
    /// Show a bottle's live routes (`routes ID`) or edit them (`routes edit ID`).
    Routes(approvals_cmd::RoutesArgs),
    /// Edit a bottle's pipelock config (`pipelock edit ID`), validated before it is loaded.
    #[command(subcommand_required = true)]
    Pipelock(approvals_cmd::PipelockArgs),
    /// Terminal UI: bottles, pending proposals with a diff preview, decide, timeline.
    Dashboard(approvals_cmd::DashboardArgs),
    /// Rebuild and restart a bottle after a capability approval, transcripts restored.
    Resume(resume_cmd::ResumeArgs),
    /// Print a bottle's objects for another engine without touching it (`render kubernetes AGENT`).
    #[command(subcommand)]
    Render(kubernetes_cli::RenderCommand),
}

/// `--target kubernetes`: the commands that run on a cluster, or an error
/// naming the ones that do.
fn on_kubernetes(cli: &Cli) -> anyhow::Result<ExitCode> {
    let k = &cli.kube;
    match &cli.command {
        Command::Start(args) => kubernetes_cli::start(args, k),
        Command::Stop(args) => kubernetes_cli::stop(args).map(|()| ExitCode::SUCCESS),
        Command::Approve(args) => kubernetes_cli::approve(args, k).map(|()| ExitCode::SUCCESS),
        Command::Render(cmd) => kubernetes_cli::render(cmd, k).map(|()| ExitCode::SUCCESS),
        Command::Validate(_) => Err(kubernetes_cli::unsupported("validate")),
        Command::Run(_) => Err(kubernetes_cli::unsupported("run")),
        Command::List(_) => Err(kubernetes_cli::unsupported("list")),
        Command::Logs(_) => Err(kubernetes_cli::unsupported("logs")),
        Command::Cleanup(_) => Err(kubernetes_cli::unsupported("cleanup")),
        Command::Images(_) => Err(kubernetes_cli::unsupported("images")),
        Command::Proposals(_) => Err(kubernetes_cli::unsupported("proposals")),
        Command::Reject(_) => Err(kubernetes_cli::unsupported("reject")),
        Command::Routes(_) => Err(kubernetes_cli::unsupported("routes")),
        Command::Pipelock(_) => Err(kubernetes_cli::unsupported("pipelock")),
        Command::Dashboard(_) => Err(kubernetes_cli::unsupported("dashboard")),
        Command::Resume(_) => Err(kubernetes_cli::unsupported("resume")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        _ if cli.target == kubernetes_cli::Target::Kubernetes => on_kubernetes(&cli),
        Command::Render(cmd) => kubernetes_cli::render(cmd, &cli.kube).map(|()| ExitCode::SUCCESS),
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
        Command::Images(cmd) => build_images::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Proposals(args) => approvals_cmd::proposals(args).map(|()| ExitCode::SUCCESS),
        Command::Approve(args) => approvals_cmd::approve(args).map(|()| ExitCode::SUCCESS),
        Command::Reject(args) => approvals_cmd::reject(args).map(|()| ExitCode::SUCCESS),
        Command::Routes(args) => approvals_cmd::routes(args).map(|()| ExitCode::SUCCESS),
        Command::Pipelock(args) => approvals_cmd::pipelock(args).map(|()| ExitCode::SUCCESS),
        Command::Dashboard(args) => approvals_cmd::dashboard(args).map(|()| ExitCode::SUCCESS),
        Command::Resume(args) => resume_cmd::resume(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
