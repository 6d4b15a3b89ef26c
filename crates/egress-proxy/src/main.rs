//! `egress-proxy`: the binary. Parses flags (each also an environment
//! variable), loads and validates every file before binding, installs the
//! log subscriber, and wires signals: SIGHUP reloads the routes file,
//! SIGTERM/SIGINT stop accepting and drain with a grace period.
//!
//! Is not: the proxy itself (see the library, `egress_proxy::run`).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use egress_proxy::{
    Config, DlpAction, DlpSettings, Limits, ProcessEnv, Proxy, Settings, SystemResolver, journal,
    parse_duration,
};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

/// TLS-intercepting egress proxy for one bottle.
///
/// Every request is decided against the routes file: git push over HTTPS is
/// refused for every host, then the host must match a route, then the
/// normalised path must be under the route's path_allowlist, then the
/// route's credential is injected (from the EGRESS_TOKEN_<n> variable the
/// route names). Refusals are readable 403 answers with an
/// `x-egress-decision` header. GET http://_egress.local/allowlist and
/// /status answer introspection.
///
/// With --dlp-action warn or block, the URL, headers and body of every
/// request to a non-exempt host are scanned for secrets (the git-gate
/// scanner's rules) as they stream out; block answers 403 before the
/// secret leaves.
///
/// Signals: SIGHUP re-reads the routes file (an invalid file keeps the old
/// table; /status shows the error); SIGTERM/SIGINT stop accepting, let open
/// connections finish for the grace period, and exit 0. With
/// --watch-routes, a change of the file's contents reloads it the same way
/// without a signal (a Kubernetes ConfigMap volume).
#[derive(Debug, Parser)]
#[command(name = "egress-proxy", version, about, long_about)]
struct Args {
    /// Address to listen on, e.g. 0.0.0.0:9099.
    #[arg(long, env = "EGRESS_LISTEN", value_name = "ADDR")]
    listen: SocketAddr,
    /// The routes file (YAML, `version: 1`), as written by the launcher.
    #[arg(long, env = "EGRESS_ROUTES", value_name = "FILE")]
    routes: PathBuf,
    /// PEM certificate of the bottle's interception CA.
    #[arg(long, env = "EGRESS_CA_CERT", value_name = "FILE")]
    ca_cert: PathBuf,
    /// PKCS#8 PEM private key of the interception CA.
    #[arg(long, env = "EGRESS_CA_KEY", value_name = "FILE")]
    ca_key: PathBuf,
    /// Extra CA certificates (PEM) trusted upstream, in addition to the
    /// system roots (e.g. the parent proxy's interception CA).
    #[arg(long, env = "EGRESS_UPSTREAM_CA", value_name = "FILE")]
    upstream_ca: Option<PathBuf>,
    /// Parent proxy reached with CONNECT for every upstream connection
    /// (http://host:port). Falls back to `https_proxy` when HTTPS_PROXY is unset.
    #[arg(long, env = "HTTPS_PROXY", value_name = "URL", hide_env_values = true)]
    upstream_proxy: Option<String>,
    /// Log format: one JSON object per line, or human-readable text.
    #[arg(long, env = "EGRESS_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Bytes of log lines buffered in memory for the writer thread (stderr).
    /// When the reader of stderr falls this far behind, new lines are
    /// dropped and counted (a later line reports how many), so logging
    /// never slows or blocks a request.
    #[arg(long, env = "EGRESS_LOG_BUFFER_BYTES", default_value_t = journal::DEFAULT_CAPACITY)]
    log_buffer_bytes: usize,
    /// Largest accepted request head in bytes (minimum 8192); larger gets 431.
    #[arg(long, env = "EGRESS_MAX_HEADER_BYTES", default_value_t = Limits::default().max_header_bytes)]
    max_header_bytes: usize,
    /// Time a client has to send a complete request head.
    #[arg(long, env = "EGRESS_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// Close a connection or tunnel when no byte moved for this long.
    #[arg(long, env = "EGRESS_IDLE_TIMEOUT", default_value = "300s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Time a client has to finish the TLS handshake inside a CONNECT.
    #[arg(long, env = "EGRESS_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    tls_handshake_timeout: Duration,
    /// Time allowed for each step of reaching an upstream (TCP, CONNECT, TLS).
    #[arg(long, env = "EGRESS_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Time an upstream has to start its response (status and headers);
    /// after it the client gets a 502.
    #[arg(long, env = "EGRESS_RESPONSE_TIMEOUT", default_value = "180s", value_parser = parse_duration)]
    response_timeout: Duration,
    /// Largest WebSocket message (and frame) the agent may send: each is
    /// held and scanned whole before it is forwarded; larger ones close
    /// the socket (1009).
    #[arg(long, env = "EGRESS_WS_MAX_MESSAGE_BYTES", default_value_t = Limits::default().ws_max_message_bytes)]
    ws_max_message_bytes: usize,
    /// Concurrent client connections; more are answered 503 and closed.
    #[arg(long, env = "EGRESS_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// How long SIGTERM/SIGINT waits for open connections before exiting.
    #[arg(long, env = "EGRESS_GRACE_PERIOD", default_value = "10s", value_parser = parse_duration)]
    grace_period: Duration,
    /// Runtime worker threads: 1 (the default) runs everything on one
    /// thread, the lowest CPU per request for one bottle's traffic; 0 uses
    /// one per CPU core (more TLS handshakes per second when many clients
    /// share one proxy), N uses N.
    #[arg(long, env = "EGRESS_WORKER_THREADS", default_value_t = 1)]
    worker_threads: usize,
    /// A directory of token files named like the slot variables
    /// (EGRESS_TOKEN_<n>): a file there overrides the variable and is
    /// re-read on every SIGHUP, so a credential can be added without a
    /// restart.
    #[arg(long, env = "EGRESS_TOKENS_DIR", value_name = "DIR")]
    tokens_dir: Option<PathBuf>,
    /// Data-loss prevention on outgoing requests: off, warn (log each
    /// finding, forward) or block (403 before the secret leaves).
    #[arg(
        long,
        env = "EGRESS_DLP_ACTION",
        default_value = "off",
        value_name = "ACTION"
    )]
    dlp_action: DlpAction,
    /// gitleaks-format TOML rules for DLP instead of the built-in set
    /// (`[extend] useDefault = true` keeps the built-in rules too).
    #[arg(long, env = "EGRESS_DLP_RULES", value_name = "FILE")]
    dlp_rules: Option<PathBuf>,
    /// A host never scanned, e.g. the LLM API whose bodies are conversation
    /// text (repeatable; `*.example.com` covers the apex and subdomains).
    /// The environment variable takes a comma-separated list.
    #[arg(
        long = "dlp-exempt-host",
        env = "EGRESS_DLP_EXEMPT_HOSTS",
        value_name = "HOST",
        value_delimiter = ','
    )]
    dlp_exempt_hosts: Vec<String>,
    /// An opt-in checksummed detector with its own action, as ID=ACTION:
    /// payment-card, iban, crypto-private-key or bip39-mnemonic = off, warn
    /// or block
    /// (repeatable; the environment variable takes a comma-separated list).
    #[arg(
        long = "dlp-detector",
        env = "EGRESS_DLP_DETECTORS",
        value_name = "ID=ACTION",
        value_delimiter = ',',
        value_parser = egress_proxy::parse_detector
    )]
    dlp_detectors: Vec<(egress_proxy::dlp::Detector, DlpAction)>,
    /// Prompt-injection scanning of text responses from hosts DLP does not
    /// exempt: off, warn (log), annotate (log and add an
    /// x-egress-inspection header) or block (403, or cut a streamed body).
    #[arg(
        long,
        env = "EGRESS_INJECTION_ACTION",
        default_value = "warn",
        value_name = "ACTION"
    )]
    injection_action: egress_proxy::InboundAction,
    /// Resolve NAME to IP instead of asking DNS (repeatable; like curl
    /// --resolve). The environment variable takes a comma-separated list.
    #[arg(
        long = "resolve",
        env = "EGRESS_RESOLVE",
        value_name = "NAME=IP",
        value_delimiter = ','
    )]
    resolve: Vec<String>,
    /// Every SECONDS, read the routes file and reload it (exactly as SIGHUP
    /// does) when its contents changed since the last load: for a file
    /// that is replaced without a signal, e.g. a Kubernetes ConfigMap
    /// volume. 0 (the default) watches nothing.
    #[arg(
        long,
        env = "EGRESS_WATCH_ROUTES",
        value_name = "SECONDS",
        default_value_t = 0
    )]
    watch_routes: u64,
}

fn main() -> std::process::ExitCode {
    // `egress-proxy probe …`: the readiness check of an image without curl.
    if let Some(code) = http_probe::run_if_probe("egress-proxy") {
        return std::process::ExitCode::from(code);
    }
    let args = Args::parse();
    init_tracing(args.log_format, args.log_buffer_bytes);
    let result = real_main(args);
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "egress-proxy failed");
    }
    // Every buffered line is written before the process exits.
    if let Some(j) = journal::global() {
        j.shutdown();
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("egress-proxy: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat, buffer: usize) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match journal::Journal::start(buffer, Box::new(std::io::stderr())) {
        Ok(j) => {
            journal::install(j);
            journal::set_json_decisions(matches!(format, LogFormat::Json));
        }
        Err(e) => eprintln!("egress-proxy: no log writer thread ({e}); logging to stderr directly"),
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(journal::JournalWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

fn parse_resolve(entries: &[String]) -> anyhow::Result<HashMap<String, IpAddr>> {
    let mut out = HashMap::new();
    for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let Some((name, ip)) = e.split_once('=') else {
            bail!("--resolve {e:?}: expected NAME=IP, e.g. api.example.com=127.0.0.1");
        };
        let ip: IpAddr = ip
            .trim()
            .parse()
            .with_context(|| format!("--resolve {e:?}: {ip:?} is not an IP address"))?;
        out.insert(name.trim().to_owned(), ip);
    }
    Ok(out)
}

fn real_main(args: Args) -> anyhow::Result<()> {
    let upstream_proxy = args
        .upstream_proxy
        .clone()
        .or_else(|| std::env::var("https_proxy").ok())
        .filter(|s| !s.trim().is_empty());
    let settings = Settings {
        routes: args.routes.clone(),
        ca_cert: args.ca_cert.clone(),
        ca_key: args.ca_key.clone(),
        upstream_ca: args.upstream_ca.clone(),
        upstream_proxy,
        system_roots: true,
        limits: Limits {
            max_header_bytes: args.max_header_bytes,
            header_read_timeout: args.header_read_timeout,
            idle_timeout: args.idle_timeout,
            tls_handshake_timeout: args.tls_handshake_timeout,
            max_connections: args.max_connections,
            connect_timeout: args.connect_timeout,
            response_timeout: args.response_timeout,
            ws_max_message_bytes: args.ws_max_message_bytes,
        },
        dlp: DlpSettings {
            action: args.dlp_action,
            rules: args.dlp_rules.clone(),
            exempt: args.dlp_exempt_hosts.clone(),
            detectors: args.dlp_detectors.clone(),
        },
        inbound: args.injection_action,
        tokens_dir: args.tokens_dir.clone(),
    };
    let resolver = Arc::new(SystemResolver::with_overrides(parse_resolve(
        &args.resolve,
    )?));
    let config =
        Config::load(&settings, Arc::new(ProcessEnv), resolver).context("loading configuration")?;
    let runtime = match args.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("starting the async runtime")?;
    runtime.block_on(serve(args, config))
}

async fn serve(args: Args, config: Config) -> anyhow::Result<()> {
    let table = config.allowlist.current();
    tracing::info!(
        routes = table.table().routes().len(),
        version = table.version(),
        missing_token_env = ?table.missing_tokens(),
        upstream_proxy = ?config.upstream_proxy.as_ref().map(ToString::to_string),
        "routes loaded"
    );
    tracing::info!(dlp = %config.dlp.status_json(), "data-loss prevention");
    tracing::info!(inbound = %config.inbound.status_json(), "response inspection");
    for name in table.missing_tokens() {
        tracing::warn!(token_env = %name, "token variable is unset; requests on its routes will be refused with 502");
    }
    drop(table);
    let proxy = Proxy::new(config);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    tracing::info!(listen = %local, "egress-proxy listening");

    let shutdown = CancellationToken::new();
    spawn_signals(proxy.clone(), shutdown.clone())?;
    if args.watch_routes > 0 {
        spawn_routes_watch(
            proxy.clone(),
            args.routes.clone(),
            Duration::from_secs(args.watch_routes),
        );
    }
    let server = tokio::spawn(egress_proxy::run(listener, proxy, shutdown.clone()));
    shutdown.cancelled().await;
    tracing::info!(
        grace_secs = args.grace_period.as_secs_f64(),
        "shutting down: draining connections"
    );
    match tokio::time::timeout(args.grace_period, server).await {
        Ok(Ok(Ok(()))) => tracing::info!("drained; exiting"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
        Err(_) => tracing::warn!("grace period over; exiting with connections still open"),
    }
    Ok(())
}

fn spawn_signals(proxy: Arc<Proxy>, shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading routes");
                    // Reading the file is blocking I/O; keep it off the workers.
                    let p = proxy.clone();
                    let _ = tokio::task::spawn_blocking(move || p.reload()).await;
                }
                _ = term.recv() => { tracing::info!("SIGTERM"); shutdown.cancel(); break; }
                _ = int.recv() => { tracing::info!("SIGINT"); shutdown.cancel(); break; }
            }
        }
    });
    Ok(())
}

/// Polls the routes file every `every` and reloads through the same path
/// as SIGHUP ([`Proxy::reload`]: validate, then swap) when its bytes
/// differ from those last seen. Polling instead of inotify: a ConfigMap
/// volume replaces the `..data` symlink of its directory, which inotify on
/// the file itself never reports (docs/decisions.md). A file that cannot
/// be read (mid-update, removed) is skipped until it can; an invalid file
/// is tried once per change and leaves the old table live, with the
/// error in /status.
fn spawn_routes_watch(proxy: Arc<Proxy>, path: PathBuf, every: Duration) {
    let mut seen = std::fs::read(&path).ok();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let p = path.clone();
            let Ok(Ok(now)) = tokio::task::spawn_blocking(move || std::fs::read(&p)).await else {
                continue;
            };
            if seen.as_ref() == Some(&now) {
                continue;
            }
            seen = Some(now);
            tracing::info!(routes = %path.display(), "routes file changed: reloading");
            let p = proxy.clone();
            let _ = tokio::task::spawn_blocking(move || p.reload()).await;
        }
    });
}
