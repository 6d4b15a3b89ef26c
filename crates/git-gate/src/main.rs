//! git-gate: the bottle's only git write path (see the library docs and the
//! crate README for the interface).
//!
//! Modes: the daemon (default), `scan PATH…|-` (exit 1 on findings) and
//! `pre-receive` (run by the mirror's hook; not for humans).
//!
//! Signals: SIGTERM / SIGINT stop accepting connections, let in-flight
//! requests (a push being forwarded) finish for up to 30 s, then exit.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use git_gate::config::{self, Config};
use manifest::remotes::RemotesFile;
use secret_scan::RuleSet;
use tokio_util::sync::CancellationToken;

/// The bottle's git gateway: serves git smart HTTP from a mirror of each
/// remote and secret-scans every push before forwarding it upstream.
#[derive(Debug, Parser)]
#[command(
    name = "git-gate",
    version,
    about,
    long_about = None,
    after_help = "Each remote is served at http://<listen>/<name>.git. Tokens come from the environment \
variables the remotes file names (auth.token_env, GIT_GATE_TOKEN_<n>).\n\
Signals: SIGTERM/SIGINT stop accepting, let in-flight requests finish (up to 30 s), exit.\n\
Example: GIT_GATE_TOKEN_1=... git-gate --listen 0.0.0.0:8080 --remotes /etc/git-gate/remotes.yaml --data /var/lib/git-gate"
)]
struct Cli {
    /// Address to listen on (daemon mode), e.g. 0.0.0.0:8080.
    #[arg(long, env = "GIT_GATE_LISTEN")]
    listen: Option<SocketAddr>,
    /// The remotes file (YAML, rendered by the launcher).
    #[arg(long, env = "GIT_GATE_REMOTES")]
    remotes: Option<PathBuf>,
    /// Directory for the bare mirrors (`<DIR>/<name>.git`).
    #[arg(long, env = "GIT_GATE_DATA")]
    data: Option<PathBuf>,
    /// gitleaks-format rule file; replaces the built-in rules (use
    /// `[extend] useDefault = true` in it to add to them).
    #[arg(long, env = "GIT_GATE_RULES", global = true)]
    rules: Option<PathBuf>,
    /// Extra CA bundle (PEM) trusted for upstream HTTPS.
    #[arg(long, env = "GIT_GATE_UPSTREAM_CA")]
    upstream_ca: Option<PathBuf>,
    /// Minimum seconds between two upstream refreshes of one mirror.
    #[arg(long, env = "GIT_GATE_REFRESH_SECS", default_value_t = config::DEFAULT_REFRESH_INTERVAL.as_secs())]
    refresh_secs: u64,
    /// Cap on an upload-pack request and on a push's command list (400 above).
    #[arg(long, env = "GIT_GATE_MAX_REQUEST_BYTES", default_value_t = config::DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: u64,
    /// Cap on a whole push request, pack included (on the wire and gzip-decoded).
    #[arg(long, env = "GIT_GATE_MAX_PUSH_BYTES", default_value_t = config::DEFAULT_MAX_PUSH_BYTES)]
    max_push_bytes: u64,
    /// Cap on one pushed object once inflated (a delta counts at its result's size).
    #[arg(long, env = "GIT_GATE_MAX_OBJECT_BYTES", default_value_t = config::DEFAULT_MAX_OBJECT_BYTES)]
    max_object_bytes: u64,
    /// Cap on all objects of one push once inflated.
    #[arg(long, env = "GIT_GATE_MAX_PUSH_INFLATED_BYTES", default_value_t = config::DEFAULT_MAX_INFLATED_BYTES)]
    max_push_inflated_bytes: u64,
    /// Seconds a client has to send a request's headers (also an idle keep-alive connection).
    #[arg(long, env = "GIT_GATE_HEADER_TIMEOUT_SECS", default_value_t = config::DEFAULT_HEADER_TIMEOUT.as_secs())]
    header_timeout_secs: u64,
    /// Longest pause, in seconds, inside a request body before it is cut off.
    #[arg(long, env = "GIT_GATE_IDLE_TIMEOUT_SECS", default_value_t = config::DEFAULT_IDLE_TIMEOUT.as_secs())]
    idle_timeout_secs: u64,
    /// Open client connections; one more is answered 503 and closed.
    #[arg(long, env = "GIT_GATE_MAX_CONNECTIONS", default_value_t = config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Log format: text or json.
    #[arg(long, env = "GIT_GATE_LOG_FORMAT", default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scan files, directories or stdin (`-`) for secrets; exit 1 on findings.
    Scan {
        /// Paths to scan; `-` reads stdin.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// pre-receive hook mode, run by the mirror's hook (reads ref updates on stdin).
    #[command(hide = true)]
    PreReceive,
}

fn main() -> ExitCode {
    // `git-gate probe …`: the readiness check of an image without curl.
    if let Some(code) = http_probe::run_if_probe("git-gate") {
        return ExitCode::from(code);
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Scan { ref paths }) => scan(cli.rules.as_deref(), paths),
        Some(Command::PreReceive) => {
            let code = git_gate::hook::run(std::io::stdin().lock(), &mut std::io::stderr(), |k| {
                std::env::var(k).ok()
            });
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        None => match daemon(cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("git-gate: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn scan(rules: Option<&std::path::Path>, paths: &[String]) -> ExitCode {
    let rules = match rules.map(RuleSet::load).transpose() {
        Ok(r) => r.unwrap_or_else(RuleSet::default_rules),
        Err(e) => {
            eprintln!("git-gate: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    match git_gate::scan::scan_paths(&rules, paths, &mut out) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!("git-gate: {n} finding(s)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("git-gate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn daemon(cli: Cli) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match cli.log_format.as_str() {
        "json" => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        "text" => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        other => bail!("--log-format {other:?} is not valid; expected text or json"),
    }
    let listen = cli
        .listen
        .context("--listen (or GIT_GATE_LISTEN) is required, e.g. --listen 0.0.0.0:8080")?;
    let remotes_path = cli
        .remotes
        .context("--remotes (or GIT_GATE_REMOTES) is required: the remotes file")?;
    let data = cli
        .data
        .context("--data (or GIT_GATE_DATA) is required: the directory for mirrors")?;
    let text = std::fs::read_to_string(&remotes_path)
        .with_context(|| format!("reading remotes file {}", remotes_path.display()))?;
    let remotes = RemotesFile::parse(&text, &remotes_path.display().to_string())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(r) = &cli.rules {
        RuleSet::load(r).context("loading --rules")?;
    }
    if let Some(ca) = &cli.upstream_ca {
        std::fs::metadata(ca).with_context(|| format!("--upstream-ca {}", ca.display()))?;
    }
    for (flag, value) in [
        ("--max-object-bytes", cli.max_object_bytes),
        ("--max-push-inflated-bytes", cli.max_push_inflated_bytes),
        ("--header-timeout-secs", cli.header_timeout_secs),
        ("--idle-timeout-secs", cli.idle_timeout_secs),
        ("--max-connections", cli.max_connections as u64),
    ] {
        if value == 0 {
            bail!("{flag} 0 is not valid; expected a positive number");
        }
    }
    let remotes_path = remotes_path
        .canonicalize()
        .with_context(|| format!("resolving {}", remotes_path.display()))?;
    // Non-UTF-8 variables are never among the ones git children get.
    let vars = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let child_env = config::child_env(vars, &remotes);
    let cfg = Config {
        remotes,
        remotes_path,
        data_dir: data,
        rules_path: cli.rules.map(|r| r.canonicalize().unwrap_or(r)),
        upstream_ca: cli.upstream_ca.map(|r| r.canonicalize().unwrap_or(r)),
        refresh_interval: Duration::from_secs(cli.refresh_secs),
        max_request_bytes: cli.max_request_bytes,
        max_push_bytes: cli.max_push_bytes,
        max_object_bytes: cli.max_object_bytes,
        max_inflated_bytes: cli.max_push_inflated_bytes,
        header_timeout: Duration::from_secs(cli.header_timeout_secs),
        idle_timeout: Duration::from_secs(cli.idle_timeout_secs),
        max_connections: cli.max_connections,
        hook_exe: std::env::current_exe()
            .context("locating the git-gate executable for the hook")?,
        child_env,
    };
    cfg.upstreams().map_err(|e| anyhow::anyhow!(e))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let bound = listener.local_addr().unwrap_or(listen);
        tracing::info!(listen = %bound, "listening");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(git_gate::run(listener, cfg, shutdown.clone()));
        wait_for_signal().await?;
        tracing::info!("shutting down; draining in-flight requests");
        shutdown.cancel();
        match tokio::time::timeout(git_gate::server::SHUTDOWN_GRACE, server).await {
            Ok(Ok(r)) => r.context("serving"),
            Ok(Err(e)) => Err(anyhow::anyhow!("server task failed: {e}")),
            Err(_) => {
                tracing::warn!("grace period over; exiting with requests in flight");
                Ok(())
            }
        }
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT"),
        _ = term.recv() => Ok(()),
    }
}
