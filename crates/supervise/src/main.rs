//! supervise binary: flags and environment → [`supervise::Config`] → bind →
//! [`supervise::run`] until SIGTERM/SIGINT.
//!
//! Is: argument parsing, logging setup and signal handling. Is not: any
//! behaviour of its own; everything is in the library.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// How long in-flight connections get to finish after SIGTERM/SIGINT.
const GRACE: Duration = Duration::from_secs(10);

/// MCP server through which the bottled agent asks the operator for more
/// access. Serves MCP (streamable HTTP) at http://ADDR/mcp and writes
/// proposals into the queue directory the operator's launcher decides on.
///
/// `supervise queue list|show|decide|audit`: the operator's side of the
/// queue, for an operator who can only exec into this container (see
/// docs/queue-protocol.md).
///
/// Signals: SIGTERM or SIGINT stop accepting connections, answer waiting
/// calls "pending" (their proposals stay queued) and exit within 10 s.
#[derive(Debug, Parser)]
#[command(name = "supervise", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SUPERVISE_LISTEN", default_value = "0.0.0.0:9100")]
    listen: SocketAddr,

    /// Queue directory shared with the operator side (pending/, decisions/,
    /// audit.jsonl; see docs/queue-protocol.md). Created if missing.
    #[arg(long, env = "SUPERVISE_QUEUE")]
    queue: PathBuf,

    /// Bottle identity recorded in every proposal, e.g. dev-k3x9a.
    #[arg(long, env = "SUPERVISE_BOTTLE")]
    bottle: String,

    /// Egress proxy URL used by list-egress-routes, e.g. http://egress:9099.
    /// Without it, list-egress-routes answers with an error.
    #[arg(long, env = "SUPERVISE_EGRESS_PROXY")]
    egress_proxy: Option<String>,

    /// The bottle's current Dockerfile (read-only); capability-block refuses
    /// a proposal identical to it.
    #[arg(long, env = "SUPERVISE_DOCKERFILE")]
    dockerfile: Option<PathBuf>,

    /// Pipelock is on: list the pipelock-block tool.
    #[arg(long, env = "SUPERVISE_PIPELOCK")]
    pipelock: bool,

    /// Seconds a proposing call waits for the decision before answering
    /// "pending" (1-3600; keep it below the MCP client's tool timeout).
    #[arg(long, env = "SUPERVISE_DECISION_TIMEOUT", default_value_t = 300)]
    decision_timeout: u64,

    /// Accepted Host header values (DNS-rebinding guard); a name without a
    /// port matches any port. Repeat the flag or separate with commas.
    #[arg(
        long = "allowed-host",
        env = "SUPERVISE_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_values_t = supervise::DEFAULT_ALLOWED_HOSTS.iter().map(|s| s.to_string())
    )]
    allowed_hosts: Vec<String>,

    /// Log format.
    #[arg(long, env = "SUPERVISE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUPERVISE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: container logs are files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `supervise probe …`: the readiness check of an image without curl.
    if let Some(code) = http_probe::run_if_probe("supervise") {
        std::process::exit(i32::from(code));
    }
    // `supervise queue …`: the operator's side of the queue, for `exec`.
    if let Some(code) = queue_command() {
        std::process::exit(i32::from(code));
    }
    let args = Args::parse();
    init_tracing(args.log_format);
    let config = supervise::Config::new(
        args.queue,
        &args.bottle,
        args.egress_proxy.as_deref(),
        args.dockerfile,
        args.pipelock,
        args.decision_timeout,
        args.allowed_hosts,
    )
    .context("invalid settings")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;

    let shutdown = CancellationToken::new();
    let server = tokio::spawn(supervise::run(listener, config, shutdown.clone()));
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => return r.context("server task")?.context("serving MCP"),
        s = shutdown_signal() => s?,
    }
    tracing::info!(grace_s = GRACE.as_secs(), "signal received; shutting down");
    shutdown.cancel();
    match tokio::time::timeout(GRACE, &mut server).await {
        Ok(r) => r.context("server task")?.context("serving MCP"),
        Err(_) => {
            tracing::warn!("connections still open after the grace period; exiting anyway");
            Ok(())
        }
    }
}

/// Runs `supervise queue …` when that is the command (see
/// `bottle_queue::cli`): the queue is `--queue`, else `$SUPERVISE_QUEUE`
/// (the container's environment), else where the bottle mounts it.
fn queue_command() -> Option<u8> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("queue") {
        return None;
    }
    let default = std::env::var_os("SUPERVISE_QUEUE")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || PathBuf::from(bottle_queue::cli::CONTAINER_QUEUE),
            PathBuf::from,
        );
    let out = bottle_queue::cli::run(&args[1..], &mut std::io::stdin().lock(), &default);
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    Some(out.code)
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
