//! The y/N preflight summary `launcher start` shows before anything runs:
//! agent, images, the engine and the walls in force on it (DNS, host,
//! container confinement), the workspace mode and what it protects, hosts
//! allowed, routes with their `token_ref` names, git remotes, sidecars (and
//! those left out, with the reason).
//!
//! Pure text from a [`Plan`]; never a secret value (the plan holds none).

use std::fmt::Write as _;

use crate::plan::identity::Component;
use crate::plan::{Confinement, Plan};

/// Renders the preflight for `plan`.
pub fn render(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "bottle {} (agent {})", plan.identity, plan.agent);
    if let Some(agent) = plan.container(Component::Agent) {
        let _ = writeln!(s, "  image      {}", agent.image);
    }
    match &plan.engine {
        Some(e) => {
            let rootless = if e.rootless { ", rootless" } else { "" };
            let _ = writeln!(
                s,
                "  engine     Docker {} (API {}{rootless})",
                e.version, e.api_version
            );
            let _ = writeln!(s, "  DNS        {}", e.dns);
            let _ = writeln!(s, "  host       {}", e.host);
        }
        None => {
            let _ = writeln!(
                s,
                "  engine     not probed (no engine answered); its version and the network walls are checked at start"
            );
        }
    }
    if let Some(agent) = plan.container(Component::Agent) {
        let _ = writeln!(
            s,
            "  agent      user {}, {}",
            agent.user,
            confinement(&agent.confinement)
        );
    }
    if let Some(side) = plan
        .containers
        .iter()
        .find(|c| c.component != Component::Agent)
    {
        let _ = writeln!(
            s,
            "  confined   sidecars as user {}, {}, read-only root with a tmpfs at /tmp and per-bottle volumes",
            side.user,
            confinement(&Confinement {
                memory_bytes: 0,
                pids_limit: 0,
                ..side.confinement.clone()
            })
        );
    }
    match &plan.workspace {
        Some(w) if w.mode == manifest::WorkspaceMode::Copy => {
            let _ = writeln!(
                s,
                "  workspace  {} copied to {} (copy mode: nothing is written back; results leave by git push through git-gate)",
                w.host.display(),
                crate::plan::WORKSPACE
            );
        }
        Some(w) => {
            let guarded: Vec<String> = w
                .guards
                .iter()
                .map(|g| match g.kind {
                    crate::plan::workspace::GuardKind::Existing => g.path.display().to_string(),
                    _ => format!("{} (placeholder)", g.path.display()),
                })
                .collect();
            let _ = writeln!(
                s,
                "  workspace  {} -> {} (protect mode: read-write, but read-only: {})",
                w.host.display(),
                crate::plan::WORKSPACE,
                if guarded.is_empty() {
                    "surveyed at start".to_owned()
                } else {
                    guarded.join(", ")
                }
            );
        }
        None => {
            let _ = writeln!(s, "  workspace  (none; pass --cwd DIR to mount one)");
        }
    }
    if let Some(agent) = plan.container(Component::Agent) {
        let prefix = format!("{}/.claude/skills/", crate::plan::AGENT_HOME);
        let mut skills: Vec<&str> = agent
            .files
            .iter()
            .filter_map(|f| {
                f.path
                    .strip_prefix(&prefix)
                    .and_then(|r| r.split('/').next())
            })
            .collect();
        skills.dedup();
        if !skills.is_empty() {
            let _ = writeln!(s, "  skills     {}", skills.join(", "));
        }
    }
    let _ = writeln!(s, "  hosts allowed ({}):", plan.routes.len());
    for r in &plan.routes {
        let mut line = format!("    {}", r.host);
        if !r.path_allowlist.is_empty() {
            let _ = write!(line, "  paths {}", r.path_allowlist.join(", "));
        }
        if let (Some(auth), Some(token_ref)) = (&r.auth, &r.token_ref) {
            let _ = write!(line, "  {auth} from ${token_ref}");
        }
        if !r.roles.is_empty() {
            let _ = write!(line, "  role {}", r.roles.join(", "));
        }
        if r.ports != [443] {
            let ports: Vec<String> = r.ports.iter().map(u16::to_string).collect();
            let _ = write!(line, "  ports {}", ports.join(", "));
        }
        if r.allow_private {
            let _ = write!(line, "  PRIVATE ADDRESSES ALLOWED");
        }
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(s, "  DLP        {}", plan.dlp);
    let _ = writeln!(s, "  injection  {}", plan.inbound);
    if plan.git_remotes.is_empty() {
        let _ = writeln!(s, "  git remotes (none)");
    } else {
        let _ = writeln!(s, "  git remotes (via git-gate, pushes secret-scanned):");
        for g in &plan.git_remotes {
            let auth = g
                .token_ref
                .as_ref()
                .map(|t| format!("  token from ${t}"))
                .unwrap_or_default();
            let _ = writeln!(s, "    {} -> {}{auth}", g.name, g.upstream);
        }
    }
    let sidecars: Vec<&str> = plan
        .containers
        .iter()
        .filter(|c| c.component != Component::Agent)
        .map(|c| c.component.as_str())
        .collect();
    let _ = writeln!(s, "  sidecars   {}", sidecars.join(", "));
    for o in &plan.omitted {
        let _ = writeln!(s, "  left out   {}: {}", o.component, o.reason);
    }
    s
}

pub mod engine;

/// "no capabilities, no-new-privileges, memory 8g, pids 4096" (limits
/// left out when zero).
fn confinement(c: &Confinement) -> String {
    let mut parts = Vec::new();
    if c.cap_drop.iter().any(|x| x == crate::plan::CAP_DROP_ALL) {
        if c.cap_add.is_empty() {
            parts.push("no capabilities".to_owned());
        } else {
            parts.push(format!("capabilities {} only", c.cap_add.join(", ")));
        }
    }
    if c.no_new_privileges {
        parts.push("no-new-privileges".to_owned());
    }
    if c.memory_bytes > 0 {
        let memory = manifest::MemorySize::from_bytes(c.memory_bytes)
            .map_or_else(|| format!("{} bytes", c.memory_bytes), |m| m.to_string());
        parts.push(format!("memory {memory}"));
    }
    if c.pids_limit > 0 {
        parts.push(format!("pids {}", c.pids_limit));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests;
