//! `launcher list`, `stop`, `logs` and `cleanup`: bottles found on the
//! engine by label, never by name pattern.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use futures_util::StreamExt as _;
use launcher::engine::docker::Engine;
use launcher::engine::{BottleEngine as _, Found};
use launcher::lifecycle::state::{self, BottleState};
use launcher::plan::identity::{Component, Identity, LABEL_IDENTITY, LABEL_MANAGED};

/// Output format of `list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table.
    Text,
    /// JSON.
    Json,
}

/// List bottles on this Docker engine, and preserved states to resume.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// State root (default: $CLAUDE_BOTTLE_STATE_DIR or ~/.claude-bottle/state).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// A preserved state (a capability approval) no running bottle uses.
#[derive(Debug, serde::Serialize)]
struct Preserved {
    identity: String,
    agent: Option<String>,
    state_dir: PathBuf,
    resume: String,
}

/// Stop a bottle: remove its containers, networks and state.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// The bottle identity (see `launcher list`), e.g. dev-k3x9a.
    pub identity: String,
    /// State root (default: $CLAUDE_BOTTLE_STATE_DIR or ~/.claude-bottle/state).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Show a bottle component's logs.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The bottle identity.
    pub identity: String,
    /// Which container.
    #[arg(long, default_value = "agent", value_parser = ["egress", "git-gate", "supervise", "agent", "pipelock"])]
    pub component: String,
    /// Keep streaming new lines.
    #[arg(long)]
    pub follow: bool,
}

/// Remove orphaned bottles (their launcher is gone) and stale state.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Remove without asking.
    #[arg(long)]
    pub yes: bool,
    /// Also remove preserved states (capability approvals never resumed);
    /// without it they are only listed.
    #[arg(long)]
    pub preserved: bool,
    /// Also remove superseded images: older content-hash builds of the base
    /// and component images that no container uses (the newest of each is
    /// kept, so the next start needs no rebuild).
    #[arg(long)]
    pub images: bool,
    /// State root (default: $CLAUDE_BOTTLE_STATE_DIR or ~/.claude-bottle/state).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `launcher list`.
pub fn list(args: &ListArgs) -> anyhow::Result<()> {
    let root = state::root(args.state_dir.as_deref(), |k| std::env::var(k).ok())?;
    runtime()?.block_on(async {
        let engine = Engine::connect().await?;
        let found = engine.bottles().await?;
        let live: Vec<&str> = found.iter().map(|f| f.identity.as_str()).collect();
        let preserved: Vec<Preserved> = state::leftovers(&root, &live)?
            .preserved
            .into_iter()
            .map(|id| {
                let st = BottleState::new(&root, &id);
                Preserved {
                    agent: st.metadata().ok().map(|m| m.agent),
                    state_dir: st.dir().to_owned(),
                    resume: format!("launcher resume {id}"),
                    identity: id.to_string(),
                }
            })
            .collect();
        let mut out = std::io::stdout().lock();
        match args.format {
            Format::Json => writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({ "bottles": found, "preserved": preserved })
                )?
            )?,
            Format::Text => {
                if found.is_empty() {
                    writeln!(out, "no bottles")?;
                }
                for f in &found {
                    let orphan = if f.is_orphan() {
                        "  (orphaned: run `launcher cleanup`)"
                    } else {
                        ""
                    };
                    writeln!(out, "{}  agent {}{orphan}", f.identity, f.agent)?;
                    for (name, st) in &f.containers {
                        writeln!(out, "    {name}  {st}")?;
                    }
                }
                for p in &preserved {
                    writeln!(
                        out,
                        "{}  agent {}  preserved (an approved Dockerfile): `{}`\n    {}",
                        p.identity,
                        p.agent.as_deref().unwrap_or("?"),
                        p.resume,
                        p.state_dir.display()
                    )?;
                }
            }
        }
        Ok(())
    })
}

/// `launcher stop`.
pub fn stop(args: &StopArgs) -> anyhow::Result<()> {
    let identity = Identity::parse(&args.identity)?;
    runtime()?.block_on(async {
        let engine = Engine::connect().await?;
        let before: Vec<String> = engine.bottles()
            .await?
            .into_iter()
            .filter(|f| f.identity == identity.as_str())
            .flat_map(|f| f.containers.into_keys())
            .collect();
        // The launcher that runs the bottle (a `start` or a waiting `run`)
        // is asked to stop first, so it tears down its own bottle and exits
        // cleanly instead of failing on containers removed under it; what
        // it leaves is removed by label.
        launcher::approvals::capability::stop_for_resume(&engine, &identity).await?;
        let root = state::root(args.state_dir.as_deref(), |k| std::env::var(k).ok())?;
        let st = BottleState::new(&root, &identity);
        let had_state = st.dir().exists();
        for w in st.remove_placeholders() {
            eprintln!("warning: {w}");
        }
        st.remove_unless_preserved()?;
        if before.is_empty() && !had_state {
            bail!(
                "no bottle {identity} on this engine or in {}; see `launcher list`",
                root.display()
            );
        }
        for r in before {
            println!("removed {r}");
        }
        if st.is_preserved() {
            println!(
                "state kept (preserved): {}; `launcher resume {identity}` or `launcher cleanup --preserved`",
                st.dir().display()
            );
        }
        Ok(())
    })
}

/// `launcher logs`.
pub fn logs(args: &LogsArgs) -> anyhow::Result<()> {
    let identity = Identity::parse(&args.identity)?;
    let component = Component::parse(&args.component).map_err(anyhow::Error::msg)?;
    runtime()?.block_on(async {
        let engine = Engine::connect().await?;
        let name = identity.container_name(component);
        let mut stream = Box::pin(engine.logs(&name, args.follow));
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?)?;
        }
        Ok(())
    })
}

/// `launcher cleanup`.
pub fn cleanup(args: &CleanupArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let engine = Engine::connect().await?;
        let found = engine.bottles().await?;
        let orphans: Vec<&Found> = found.iter().filter(|f| f.is_orphan()).collect();
        let live: Vec<&str> = found
            .iter()
            .filter(|f| !f.is_orphan())
            .map(|f| f.identity.as_str())
            .collect();
        // Networks of bottles that have no container left.
        let mut stray_networks = Vec::new();
        for n in engine
            .networks_with_labels(&[(LABEL_MANAGED, "true")])
            .await?
        {
            let id = n
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_IDENTITY))
                .cloned()
                .unwrap_or_default();
            if !found.iter().any(|f| f.identity == id) {
                stray_networks.push(n.name.unwrap_or_default());
            }
        }
        // Volumes of bottles that have no container left.
        let mut stray_volumes = Vec::new();
        for v in engine
            .volumes_with_labels(&[(LABEL_MANAGED, "true")])
            .await?
        {
            let id = v.labels.get(LABEL_IDENTITY).cloned().unwrap_or_default();
            if !found.iter().any(|f| f.identity == id) {
                stray_volumes.push(v.name);
            }
        }
        let root = state::root(args.state_dir.as_deref(), |k| std::env::var(k).ok())?;
        let left = state::leftovers(&root, &live)?;
        let stale = left.stale;
        let preserved = left.preserved;
        // Images `launcher resume` built for bottles that no longer need them.
        let images = match launcher::approvals::capability::resume_images(&engine).await {
            Ok(tags) => {
                launcher::lifecycle::resume::unneeded_resume_images(&tags, &live, &preserved)
            }
            Err(e) => {
                eprintln!("warning: {e}");
                Vec::new()
            }
        };
        let superseded = if args.images {
            match launcher::engine::images::find_superseded_images(&engine).await {
                Ok(tags) => tags,
                Err(e) => {
                    eprintln!("warning: {e}");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let removable_preserved: &[Identity] = if args.preserved { &preserved } else { &[] };
        for p in &preserved {
            println!(
                "preserved state {} (a capability approval never resumed): `launcher resume {p}`{}",
                root.join(p.as_str()).display(),
                if args.preserved {
                    ""
                } else {
                    ", or `launcher cleanup --preserved` to remove it"
                }
            );
        }
        if orphans.is_empty()
            && stray_networks.is_empty()
            && stray_volumes.is_empty()
            && stale.is_empty()
            && images.is_empty()
            && superseded.is_empty()
            && removable_preserved.is_empty()
        {
            println!("nothing to clean up");
            return Ok(());
        }
        for o in &orphans {
            println!(
                "orphaned bottle {} ({} containers)",
                o.identity,
                o.containers.len()
            );
        }
        for n in &stray_networks {
            println!("stray network {n}");
        }
        for v in &stray_volumes {
            println!("stray volume {v}");
        }
        for s in &stale {
            println!("stale state {}", root.join(s.as_str()).display());
        }
        for i in &images {
            println!("unused resume image {i}");
        }
        for i in &superseded {
            println!("superseded image {i}");
        }
        if !args.yes {
            use std::io::{BufRead as _, IsTerminal as _};
            if !std::io::stdin().is_terminal() {
                bail!("cleanup needs confirmation but stdin is not a terminal; pass --yes");
            }
            eprint!("remove all of the above? [y/N] ");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            if !matches!(line.trim(), "y" | "Y" | "yes") {
                println!("nothing removed");
                return Ok(());
            }
        }
        for o in &orphans {
            for r in engine.remove_bottle(&o.identity).await? {
                println!("removed {r}");
            }
        }
        for n in &stray_networks {
            engine.remove_network(n).await?;
            println!("removed {n}");
        }
        for v in &stray_volumes {
            engine.remove_volume(v).await?;
            println!("removed {v}");
        }
        for s in &stale {
            let st = BottleState::new(&root, s);
            for w in st.remove_placeholders() {
                eprintln!("warning: {w}");
            }
            st.remove_unless_preserved()?;
            println!("removed {}", root.join(s.as_str()).display());
        }
        for p in removable_preserved {
            BottleState::new(&root, p).remove()?;
            println!("removed {}", root.join(p.as_str()).display());
        }
        for i in &images {
            match launcher::approvals::capability::remove_resume_image(&engine, i).await {
                Ok(()) => println!("removed {i}"),
                Err(e) => eprintln!("warning: {e}"),
            }
        }
        for i in &superseded {
            match launcher::engine::images::remove_image_tag(&engine, i).await {
                Ok(()) => println!("removed {i}"),
                Err(e) => eprintln!("warning: {e}"),
            }
        }
        Ok(())
    })
}
