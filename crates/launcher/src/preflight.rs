//! The y/N preflight summary `launcher start` shows before anything runs:
//! agent, images, hosts allowed, routes with their `token_ref` names, git
//! remotes, sidecars (and those left out, with the reason), mounts.
//!
//! Pure text from a [`Plan`]; never a secret value (the plan holds none).

use std::fmt::Write as _;

use crate::identity::Component;
use crate::plan::Plan;

/// Renders the preflight for `plan`.
pub fn render(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "bottle {} (agent {})", plan.identity, plan.agent);
    if let Some(agent) = plan.container(Component::Agent) {
        let _ = writeln!(s, "  image      {}", agent.image);
    }
    match &plan.cwd {
        Some(cwd) => {
            let _ = writeln!(
                s,
                "  workspace  {} -> {}",
                cwd.display(),
                crate::plan::WORKSPACE
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
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(s, "  DLP        {}", plan.dlp);
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

#[cfg(test)]
mod tests;
