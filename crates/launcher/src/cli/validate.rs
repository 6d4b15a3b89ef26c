//! `launcher validate`: load the manifest (search order in
//! [`launcher::plan::load`]) and print every problem, or a summary per agent.
//!
//! Exit status: 0 valid, 1 invalid (every problem printed), 2 when the
//! manifest could not be found or read.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use launcher::plan::load::{self, LoadError, Loaded, Located};
use manifest::{Agent, ImageSource, ManifestError};
use serde_json::{Value, json};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// Check a manifest and show what it would allow.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The manifest: a YAML/JSON file, a Markdown agent file, or a
    /// directory of Markdown agent files. Default: $CLAUDE_BOTTLE_MANIFEST,
    /// then ./claude-bottle.{yaml,yml,json}, then
    /// ~/.claude-bottle/manifest.{yaml,yml,json}, then the embedded default.
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// What `main` turns into the exit status.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The manifest is valid.
    Valid,
    /// The manifest has problems (already printed).
    Invalid,
}

/// Runs the command, printing to stdout (summary, JSON) and stderr
/// (problems in text mode).
pub fn run(args: &ValidateArgs) -> anyhow::Result<Outcome> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let located = load::locate(
        args.manifest.as_deref(),
        |k| std::env::var(k).ok(),
        &cwd,
        home.as_deref(),
    )?;
    let mut out = std::io::stdout().lock();
    match load::load(located.clone()) {
        Ok(loaded) => {
            match args.format {
                Format::Text => write_text(&mut out, &loaded)?,
                Format::Json => {
                    serde_json::to_writer_pretty(&mut out, &summary_json(&loaded))?;
                    writeln!(out)?;
                }
            }
            Ok(Outcome::Valid)
        }
        Err(LoadError::Invalid(errors)) => {
            match args.format {
                Format::Text => {
                    let mut err = std::io::stderr().lock();
                    writeln!(err, "{errors}")?;
                    let n = errors.diagnostics().len();
                    writeln!(
                        err,
                        "error: manifest {located} is invalid ({n} problem{})",
                        if n == 1 { "" } else { "s" }
                    )?;
                }
                Format::Json => {
                    serde_json::to_writer_pretty(&mut out, &errors_json(&located, &errors))?;
                    writeln!(out)?;
                }
            }
            Ok(Outcome::Invalid)
        }
        Err(other) => Err(other.into()),
    }
}

fn manifest_json(located: &Located) -> Value {
    json!({
        "source": located.source.as_str(),
        "path": located.path.as_ref().map(|p| p.display().to_string()),
    })
}

/// The `--format json` document for an invalid manifest.
pub fn errors_json(located: &Located, errors: &ManifestError) -> Value {
    let errs: Vec<Value> = errors
        .diagnostics()
        .iter()
        .map(|d| {
            json!({
                "file": d.file,
                "path": d.path,
                "line": d.line,
                "column": d.column,
                "message": d.message,
            })
        })
        .collect();
    json!({ "manifest": manifest_json(located), "valid": false, "errors": errs })
}

/// The `--format json` document for a valid manifest.
pub fn summary_json(loaded: &Loaded) -> Value {
    let agents: Vec<Value> = loaded.manifest.agents().iter().map(agent_json).collect();
    json!({ "manifest": manifest_json(&loaded.located), "valid": true, "agents": agents })
}

fn image_json(image: &ImageSource) -> Value {
    match image {
        ImageSource::Default => json!({ "kind": "default" }),
        ImageSource::Image(r) => json!({ "kind": "image", "reference": r }),
        ImageSource::Dockerfile(p) => json!({ "kind": "dockerfile", "path": p }),
    }
}

fn agent_json(a: &Agent) -> Value {
    let b = a.bottle();
    let table = b.effective_routes();
    let routes = table.introspection();
    let slots: Vec<Value> = b
        .token_slots()
        .iter()
        .map(|s| json!({ "token_env": s.token_env, "token_ref": s.token_ref }))
        .collect();
    let remotes: Vec<Value> = b
        .remotes_file()
        .remotes()
        .iter()
        .map(|r| {
            let token_ref = b
                .git()
                .iter()
                .find(|g| g.name() == &r.name)
                .and_then(|g| g.auth())
                .map(|a| a.token_ref().to_owned());
            json!({
                "name": r.name.as_str(),
                "upstream": r.upstream,
                "auth": r.auth.as_ref().map(|x| json!({
                    "username": x.username,
                    "token_env": x.token_env,
                    "token_ref": token_ref,
                })),
                "branches": {
                    "allow": r.branches.allow.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                    "protected": r.branches.protected.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                },
            })
        })
        .collect();
    let git_slots: Vec<Value> = b
        .git_token_slots()
        .iter()
        .map(|s| json!({ "token_env": s.token_env, "token_ref": s.token_ref }))
        .collect();
    json!({
        "name": a.name().as_str(),
        "description": a.description(),
        "has_prompt": a.prompt().is_some(),
        "skills": a.skills(),
        "image": image_json(a.image()),
        "supervise": b.supervise(),
        "pipelock": b.pipelock(),
        "dlp_action": b.egress().dlp_action().as_str(),
        "routes_version": routes["version"],
        "routes": routes["routes"],
        "token_slots": slots,
        "git_remotes": remotes,
        "git_token_slots": git_slots,
        "agent_env": b.agent_env().iter().map(|v| v.name).collect::<Vec<_>>(),
    })
}

fn write_text(out: &mut impl Write, loaded: &Loaded) -> std::io::Result<()> {
    writeln!(out, "manifest: {}", loaded.located)?;
    for a in loaded.manifest.agents() {
        writeln!(out)?;
        write_agent(out, a)?;
    }
    let n = loaded.manifest.agents().len();
    writeln!(out)?;
    writeln!(out, "ok: {n} agent{} valid", if n == 1 { "" } else { "s" })
}

fn write_agent(out: &mut impl Write, a: &Agent) -> std::io::Result<()> {
    let b = a.bottle();
    match a.description() {
        Some(d) => writeln!(out, "agent {}: {d}", a.name())?,
        None => writeln!(out, "agent {}", a.name())?,
    }
    let image = match a.image() {
        ImageSource::Default => "built-in agent image".to_owned(),
        ImageSource::Image(r) => format!("image {r}"),
        ImageSource::Dockerfile(p) => format!("built from {p}"),
    };
    writeln!(out, "  image:     {image}")?;
    writeln!(
        out,
        "  prompt:    {}",
        a.prompt()
            .map_or("none".to_owned(), |p| format!("{} bytes", p.len()))
    )?;
    if !a.skills().is_empty() {
        writeln!(out, "  skills:    {}", a.skills().join(", "))?;
    }
    let table = b.effective_routes();
    writeln!(
        out,
        "  egress:    {} route{} (dlp {}{})",
        table.routes().len(),
        if table.routes().len() == 1 { "" } else { "s" },
        b.egress().dlp_action().as_str(),
        if b.egress().allow_ip_literals() {
            ", IP literals allowed"
        } else {
            ""
        }
    )?;
    for r in table.routes() {
        let mut line = format!("    {}", r.host);
        if !r.path_allowlist.is_empty() {
            let paths: Vec<&str> = r.path_allowlist.iter().map(|p| p.as_str()).collect();
            line.push_str(&format!("  paths {}", paths.join(" ")));
        }
        if let Some(auth) = &r.auth {
            let how = match (auth.scheme, &auth.header) {
                (_, Some(h)) => format!("header {h}"),
                (Some(s), None) => format!("Authorization: {s}"),
                (None, None) => "Authorization".to_owned(),
            };
            line.push_str(&format!("  auth {how} from {}", auth.token_env));
        }
        for role in &r.roles {
            line.push_str(&format!("  role {}", role.as_str()));
        }
        writeln!(out, "{line}")?;
    }
    for s in b.token_slots() {
        writeln!(
            out,
            "  token:     {} <- operator's ${}",
            s.token_env, s.token_ref
        )?;
    }
    for g in b.git() {
        let auth = match g.auth() {
            Some(x) => {
                let slot = b
                    .git_token_slots()
                    .iter()
                    .find(|s| s.token_ref == x.token_ref())
                    .map_or("?", |s| s.token_env.as_str());
                format!(
                    " (user {}, {slot} <- operator's ${})",
                    x.username(),
                    x.token_ref()
                )
            }
            None => " (no auth)".to_owned(),
        };
        writeln!(out, "  git:       {} -> {}{auth}", g.name(), g.upstream())?;
    }
    let env: Vec<&str> = b.agent_env().iter().map(|v| v.name).collect();
    if !env.is_empty() {
        writeln!(out, "  agent env: {}", env.join(", "))?;
    }
    writeln!(
        out,
        "  sidecars:  egress{}{}{}",
        if b.git().is_empty() { "" } else { ", git-gate" },
        if b.supervise() { ", supervise" } else { "" },
        if b.pipelock() { ", pipelock" } else { "" }
    )
}
