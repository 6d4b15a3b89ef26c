//! The gate's bare mirror of one upstream: creation, the hook, refresh.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::upstream::Upstream;

/// Upper bound on one upstream refresh; a hung upstream must not hang the
/// agent's fetch forever (the mirror is served stale instead).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(120);

/// Creates (or repairs) the bare mirror at `path` and installs the
/// pre-receive hook that runs `hook_exe pre-receive`.
pub async fn ensure(path: &Path, hook_exe: &Path, env: &[(String, String)]) -> Result<(), String> {
    if !path.join("HEAD").exists() {
        git(
            path.parent().unwrap_or(Path::new(".")),
            env,
            &["init", "--bare", "--quiet", &path.display().to_string()],
        )
        .await?;
    }
    let hooks = path.join("hooks");
    git(
        path,
        env,
        &["config", "core.hooksPath", &hooks.display().to_string()],
    )
    .await?;
    for (k, v) in [
        ("http.receivepack", "true"),
        ("receive.denyDeletes", "true"),
        ("receive.fsckObjects", "true"),
        ("receive.advertisePushOptions", "false"),
        ("uploadpack.allowFilter", "true"),
        ("gc.auto", "0"),
    ] {
        git(path, env, &["config", k, v]).await?;
    }
    std::fs::create_dir_all(&hooks).map_err(|e| format!("creating {}: {e}", hooks.display()))?;
    let exe = hook_exe.display().to_string().replace('\'', "'\\''");
    let script = format!(
        "#!/bin/sh\n# Installed by git-gate: every push is scanned and forwarded upstream first.\nexec '{exe}' pre-receive\n"
    );
    let hook = hooks.join("pre-receive");
    std::fs::write(&hook, script).map_err(|e| format!("writing {}: {e}", hook.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", hook.display()))?;
    Ok(())
}

/// Fetches every branch and tag from upstream into the mirror (pruning refs
/// upstream deleted) and points the mirror's HEAD where upstream's points, so
/// a clone checks out upstream's default branch. Errors carry git's message
/// with credentials scrubbed.
pub async fn refresh(
    path: &Path,
    upstream: &Upstream,
    env: &[(String, String)],
) -> Result<(), String> {
    upstream_git(
        path,
        upstream,
        env,
        &[
            "fetch",
            "--quiet",
            "--prune",
            "--no-write-fetch-head",
            &upstream.url,
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ],
    )
    .await?;
    // Best effort: an upstream without a symbolic HEAD keeps the mirror's.
    if let Ok(out) = upstream_git(
        path,
        upstream,
        env,
        &["ls-remote", "--symref", &upstream.url, "HEAD"],
    )
    .await
        && let Some(target) = symref_head(&out)
        && git(path, env, &["rev-parse", "--verify", "--quiet", target])
            .await
            .is_ok()
    {
        git(path, env, &["symbolic-ref", "HEAD", target]).await?;
    }
    Ok(())
}

/// The `ref: refs/heads/x\tHEAD` line of `ls-remote --symref` output.
fn symref_head(out: &str) -> Option<&str> {
    out.lines()
        .find_map(|l| l.strip_prefix("ref: ")?.strip_suffix("\tHEAD"))
        .filter(|r| {
            r.starts_with("refs/heads/")
                && !r.contains(|c: char| c.is_whitespace() || c.is_control())
        })
}

/// Runs git against the upstream (credentials in env), bounded in time.
async fn upstream_git(
    path: &Path,
    upstream: &Upstream,
    env: &[(String, String)],
    args: &[&str],
) -> Result<String, String> {
    let mut cmd = Command::new("git");
    cmd.current_dir(path)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .envs(upstream.git_env())
        .env("GIT_DIR", path)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(REFRESH_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            format!(
                "upstream did not answer within {}s",
                REFRESH_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(upstream.scrub(String::from_utf8_lossy(&out.stderr).trim()))
    }
}

async fn git(dir: &Path, env: &[(String, String)], args: &[&str]) -> Result<(), String> {
    let out = Command::new("git")
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "git {} failed in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests;
