//! Making a new route table live in a running bottle's egress proxy,
//! without a restart: pipelock mirror first (when pipelock is on) → write
//! the routes file into the egress container (0644, owned by the sidecar
//! user) → SIGHUP → poll `_egress.local/status` until the new table's
//! version hash is live.
//!
//! Is: the apply sequence over two small traits ([`EgressControl`],
//! [`PipelockMirror`]) so it is unit-tested with fakes, the Docker
//! implementation of the egress side ([`DockerEgress`]), and errors that
//! say exactly which half changed and what the operator can do
//! ([`ApplyError`]). When the reload is not confirmed, the previous routes
//! file is written back so the file in the container is again the table
//! that is live.
//!
//! Is not: deciding (see [`crate::approvals`]) or merging (that is
//! `manifest::merge`). [`DockerPipelock`] is the Docker implementation of
//! [`PipelockMirror`] for bottles with pipelock.

use std::time::{Duration, Instant};

use manifest::routes::RouteTable;

use crate::engine::archive::{self, FileEntry};
use crate::engine::docker::Engine;
use crate::engine::{BottleEngine, Running};
use crate::plan::identity::{Component, Identity};
use crate::plan::{EGRESS_TOKENS_DIR, SIDECAR_UID};

/// The routes file inside the egress container (as the plan starts it).
pub const EGRESS_ROUTES_PATH: &str = crate::plan::EGRESS_ROUTES;
/// How long a reload may take to show in `/status`.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);

/// What egress-proxy's `_egress.local/status` reports (the fields used).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct EgressStatus {
    /// Version hash of the live table.
    pub version: String,
    /// When the last reload was attempted.
    #[serde(default)]
    pub last_reload_attempt: Option<String>,
    /// Why the last reload failed, if it did.
    #[serde(default)]
    pub last_reload_error: Option<String>,
    /// Token variables routes name but the container lacks.
    #[serde(default)]
    pub missing_token_env: Vec<String>,
}

/// The egress side of an apply.
#[allow(async_fn_in_trait)] // used with concrete types only
pub trait EgressControl {
    /// The routes file as it is in the container.
    async fn read_routes(&self) -> Result<String, String>;
    /// Replaces the routes file (readable by the proxy's user).
    async fn write_routes(&self, text: &str) -> Result<(), String>;
    /// Writes a token file `token_env` (readable by the proxy's user only)
    /// that the next reload reads.
    async fn write_token(&self, token_env: &str, value: &str) -> Result<(), String>;
    /// Asks the proxy to reload (SIGHUP).
    async fn reload(&self) -> Result<(), String>;
    /// The proxy's `/status`.
    async fn status(&self) -> Result<EgressStatus, String>;
}

/// The pipelock side of an apply: allow these hosts downstream too.
#[allow(async_fn_in_trait)]
pub trait PipelockMirror {
    /// Adds `hosts` to pipelock's allowlist (no-op for hosts present).
    async fn mirror(&self, hosts: &[String]) -> Result<(), String>;
}

/// pipelock's whole config, for `launcher pipelock edit`.
#[allow(async_fn_in_trait)]
pub trait PipelockConfig {
    /// The config file as it is in the container.
    async fn read_config(&self) -> Result<String, String>;
    /// Makes `text` the config pipelock runs: write it, restart pipelock,
    /// wait until its health check passes.
    async fn load_config(&self, text: &str) -> Result<(), String>;
}

/// Why an apply failed. Every message says which half changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    /// The egress container could not be read.
    #[error("reading the live routes of {bottle}: {reason}. Nothing was changed")]
    Read {
        /// The bottle.
        bottle: String,
        /// Why.
        reason: String,
    },
    /// The file in the container does not parse, or is not what is live.
    #[error(
        "the routes file in {bottle}'s egress proxy is not the live table: {reason}. Nothing was changed; repair it with `launcher routes edit {bottle}`, then decide again"
    )]
    Drift {
        /// The bottle.
        bottle: String,
        /// Why.
        reason: String,
    },
    /// pipelock refused the mirror; egress untouched.
    #[error(
        "pipelock allowlist mirror failed for {bottle}: {reason}. egress-proxy was NOT changed (its table is still version {live}); fix pipelock, then decide again"
    )]
    Pipelock {
        /// The bottle.
        bottle: String,
        /// Why.
        reason: String,
        /// The unchanged egress version.
        live: String,
    },
    /// Writing the file failed; egress still runs the old table.
    #[error(
        "writing the routes file into {bottle}'s egress proxy failed: {reason}. The live table is unchanged (version {live}){pipelock}; decide again once the container is healthy"
    )]
    Write {
        /// The bottle.
        bottle: String,
        /// Why.
        reason: String,
        /// The unchanged egress version.
        live: String,
        /// A note when pipelock was already widened.
        pipelock: String,
    },
    /// The granted credential could not be handed to the proxy.
    #[error(
        "writing the token for {token_env} into {bottle}'s egress proxy failed: {reason}. The live table is unchanged (version {live}); decide again once the container is healthy"
    )]
    Token {
        /// The bottle.
        bottle: String,
        /// The slot.
        token_env: String,
        /// Why.
        reason: String,
        /// The unchanged egress version.
        live: String,
    },
    /// The reload did not make the new table live.
    #[error(
        "egress-proxy in {bottle} did not load the new routes: {reason}. The live table is still version {live}; {restored}{pipelock}. Inspect with `launcher routes {bottle}` and `launcher logs {bottle} --component egress`, then decide again"
    )]
    Reload {
        /// The bottle.
        bottle: String,
        /// Why.
        reason: String,
        /// The egress version still live.
        live: String,
        /// Whether the old file was written back.
        restored: String,
        /// A note when pipelock was already widened.
        pipelock: String,
    },
    /// An edited pipelock config did not come up healthy.
    #[error(
        "pipelock in {bottle} did not come back healthy with the edited config: {reason}. {restored}. egress-proxy was not touched; check `launcher logs {bottle} --component pipelock`"
    )]
    PipelockConfig {
        /// The bottle.
        bottle: String,
        /// Why.
        reason: String,
        /// What happened to the previous config.
        restored: String,
    },
}

/// The hosts pipelock must allow for `table`: `*.x` becomes `x` (pipelock
/// matches suffixes), IP literals and duplicates are dropped (seed 000).
pub fn pipelock_hosts(table: &RouteTable) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in table.routes() {
        let h = r.host.as_str();
        let h = h.strip_prefix("*.").unwrap_or(h);
        let is_ip = h.starts_with('[') || h.parse::<std::net::IpAddr>().is_ok();
        if h.is_empty() || h == "*" || is_ip {
            continue;
        }
        if !out.iter().any(|x| x == h) {
            out.push(h.to_owned());
        }
    }
    out
}

/// The live table of a bottle: the file in the container, checked to be
/// what `/status` reports as live.
pub async fn live_table(
    bottle: &str,
    egress: &impl EgressControl,
) -> Result<(RouteTable, EgressStatus), ApplyError> {
    let read = |reason| ApplyError::Read {
        bottle: bottle.to_owned(),
        reason,
    };
    let status = egress.status().await.map_err(read)?;
    let text = egress.read_routes().await.map_err(read)?;
    let table = RouteTable::parse(&text, EGRESS_ROUTES_PATH).map_err(|e| ApplyError::Drift {
        bottle: bottle.to_owned(),
        reason: e.to_string(),
    })?;
    if table.version_hash() != status.version {
        return Err(ApplyError::Drift {
            bottle: bottle.to_owned(),
            reason: format!(
                "the file is version {} but the proxy runs version {}{}",
                table.version_hash(),
                status.version,
                status
                    .last_reload_error
                    .as_deref()
                    .map(|e| format!(" (last reload error: {e})"))
                    .unwrap_or_default()
            ),
        });
    }
    Ok((table, status))
}

/// Makes `new` live in place of the routes file `old` (whose status is
/// `before`; written back if the reload is not confirmed). Returns the
/// status that confirmed it.
pub async fn apply_table(
    bottle: &str,
    egress: &impl EgressControl,
    pipelock: Option<&impl PipelockMirror>,
    old: &str,
    before: &EgressStatus,
    new: &RouteTable,
    timeout: Duration,
) -> Result<EgressStatus, ApplyError> {
    let live = before.version.clone();
    let mut pipelock_note = String::new();
    if let Some(p) = pipelock {
        p.mirror(&pipelock_hosts(new))
            .await
            .map_err(|reason| ApplyError::Pipelock {
                bottle: bottle.to_owned(),
                reason,
                live: live.clone(),
            })?;
        pipelock_note = "; pipelock already allows the new hosts (harmless until a retry)".into();
    }
    egress
        .write_routes(&new.render())
        .await
        .map_err(|reason| ApplyError::Write {
            bottle: bottle.to_owned(),
            reason,
            live: live.clone(),
            pipelock: pipelock_note.clone(),
        })?;
    let outcome = match egress.reload().await {
        Ok(()) => confirm(egress, before, &new.version_hash(), timeout).await,
        Err(e) => Err(format!("sending SIGHUP failed: {e}")),
    };
    match outcome {
        Ok(s) => Ok(s),
        Err(reason) => {
            let restored = match egress.write_routes(old).await {
                Ok(()) => "the previous routes file was written back".to_owned(),
                Err(e) => format!(
                    "writing the previous routes file back ALSO failed ({e}), so the file in the container differs from the live table"
                ),
            };
            let live = egress.status().await.map(|s| s.version).unwrap_or(live);
            Err(ApplyError::Reload {
                bottle: bottle.to_owned(),
                reason,
                live,
                restored,
                pipelock: pipelock_note,
            })
        }
    }
}

/// Polls `/status` until `want` is live, or a reload attempt newer than
/// `before`'s failed, or `timeout` passes.
async fn confirm(
    egress: &impl EgressControl,
    before: &EgressStatus,
    want: &str,
    timeout: Duration,
) -> Result<EgressStatus, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match egress.status().await {
            Ok(s) if s.version == want => return Ok(s),
            Ok(s) => {
                let new_attempt = s.last_reload_attempt != before.last_reload_attempt;
                if new_attempt && let Some(e) = &s.last_reload_error {
                    return Err(format!("the reload failed: {e}"));
                }
                format!("status still reports version {}", s.version)
            }
            Err(e) => format!("status endpoint: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "version {want} was not live after {} s ({last})",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Makes the edited pipelock config `new` live in place of `old`; when
/// pipelock does not come back healthy, `old` is loaded again so the
/// bottle runs the config it ran before (egress-proxy is never touched).
pub async fn replace_pipelock_config(
    bottle: &str,
    pipelock: &impl PipelockConfig,
    old: &str,
    new: &PipelockConfigText,
) -> Result<(), ApplyError> {
    let Err(reason) = pipelock.load_config(new.text()).await else {
        return Ok(());
    };
    let restored = match pipelock.load_config(old).await {
        Ok(()) => "The previous config was loaded again and pipelock is healthy".to_owned(),
        Err(e) => format!(
            "Loading the previous config back ALSO failed ({e}): pipelock is down, so the bottle's requests fail until it is fixed (`launcher pipelock edit {bottle}` again, or stop the bottle)"
        ),
    };
    Err(ApplyError::PipelockConfig {
        bottle: bottle.to_owned(),
        reason,
        restored,
    })
}

/// The egress sidecar of a running bottle, driven through any engine's
/// [`BottleEngine`] seam.
#[derive(Clone, Debug)]
pub struct SidecarEgress<E> {
    engine: E,
    bottle: Identity,
}

/// The egress container of a running bottle, driven through Docker.
pub type DockerEgress = SidecarEgress<Engine>;

impl<E: BottleEngine> SidecarEgress<E> {
    /// The egress sidecar of `bottle` on `engine`.
    pub fn new(engine: E, bottle: Identity) -> Self {
        Self { engine, bottle }
    }

    fn user() -> String {
        format!("{SIDECAR_UID}:{SIDECAR_UID}")
    }

    /// Writes one file owned by the proxy's user with `mode`.
    async fn put_file(&self, path: &str, mode: u32, contents: &str) -> Result<(), String> {
        let file = FileEntry {
            path: path.to_owned(),
            mode,
            uid: SIDECAR_UID,
            gid: SIDECAR_UID,
            contents: contents.as_bytes().to_vec(),
        };
        self.engine
            .copy_in(&self.bottle, Component::Egress, &[file])
            .await
            .map_err(|e| e.to_string())
    }

    /// Runs `cmd` in egress as the proxy's own user.
    async fn exec(&self, cmd: &[String]) -> Result<crate::engine::ExecOutput, String> {
        self.engine
            .exec_in(&self.bottle, Component::Egress, &Self::user(), cmd)
            .await
            .map_err(|e| e.to_string())
    }
}

impl<E: BottleEngine> EgressControl for SidecarEgress<E> {
    async fn read_routes(&self) -> Result<String, String> {
        // Read as the proxy's own user: a file it cannot read fails here
        // too, instead of only in the reload (seed 002).
        let out = self
            .exec(&["cat".to_owned(), EGRESS_ROUTES_PATH.to_owned()])
            .await?;
        if out.code != Some(0) {
            return Err(format!(
                "cat {EGRESS_ROUTES_PATH} exited {:?}: {}",
                out.code,
                out.output.trim()
            ));
        }
        Ok(out.output)
    }

    async fn write_routes(&self, text: &str) -> Result<(), String> {
        // Mode and owner are explicit in the archive: `docker cp` of a
        // 0600 temp file is what broke the predecessor's reload (seed 002).
        self.put_file(EGRESS_ROUTES_PATH, 0o644, text).await
    }

    async fn write_token(&self, token_env: &str, value: &str) -> Result<(), String> {
        // 0400 and owned by the proxy's user: nobody else in the container
        // reads it, and the agent has no way into this container at all.
        self.put_file(&format!("{EGRESS_TOKENS_DIR}/{token_env}"), 0o400, value)
            .await
    }

    async fn reload(&self) -> Result<(), String> {
        self.engine
            .signal(&self.bottle, Component::Egress, "SIGHUP")
            .await
            .map_err(|e| e.to_string())
    }

    async fn status(&self) -> Result<EgressStatus, String> {
        let out = self.exec(&crate::plan::egress_status_probe(5)).await?;
        if out.code != Some(0) {
            return Err(format!(
                "_egress.local/status: the probe exited {:?}: {}",
                out.code,
                out.output.trim()
            ));
        }
        serde_json::from_str(out.output.trim()).map_err(|e| {
            format!("_egress.local/status answered something that is not its JSON: {e}")
        })
    }
}

/// The `api_allowlist:` block of a pipelock config as
/// `manifest::pipelock::render_config` writes it (one `  - "host"` line per
/// host): the index of its first item line, of the line after its last
/// item, and the hosts listed (lowercase).
fn allowlist_block(lines: &[&str]) -> Result<(usize, usize, Vec<String>), String> {
    let Some(start) = lines.iter().position(|l| l.trim_end() == "api_allowlist:") else {
        return Err(
            "pipelock's config has no `api_allowlist:` block (it is not the file the launcher wrote); restart the bottle to restore it"
                .into(),
        );
    };
    let mut end = start + 1;
    let mut present: Vec<String> = Vec::new();
    while let Some(l) = lines.get(end) {
        let Some(item) = l.strip_prefix("  - ") else {
            break;
        };
        let host = serde_json::from_str::<String>(item.trim())
            .unwrap_or_else(|_| item.trim().trim_matches(['"', '\'']).to_owned());
        present.push(host.to_ascii_lowercase());
        end += 1;
    }
    Ok((start + 1, end, present))
}

/// Adds `hosts` to the `api_allowlist:` block of a pipelock config as
/// `manifest::pipelock::render_config` writes it (one `  - "host"` line per
/// host). Hosts already listed (case-insensitively) are skipped. Returns
/// the new text, or `None` when every host is already there.
pub fn add_pipelock_hosts(config: &str, hosts: &[String]) -> Result<Option<String>, String> {
    let lines: Vec<&str> = config.lines().collect();
    let (_, end, present) = allowlist_block(&lines)?;
    let mut added: Vec<String> = Vec::new();
    for h in hosts {
        let h = h.to_ascii_lowercase();
        if h.is_empty() || h.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("{h:?} is not a host name pipelock can allow"));
        }
        if !present.contains(&h) && !added.contains(&h) {
            added.push(h);
        }
    }
    if added.is_empty() {
        return Ok(None);
    }
    let mut out: Vec<String> = lines[..end].iter().map(|l| (*l).to_owned()).collect();
    for h in &added {
        let quoted = serde_json::to_string(h).map_err(|e| e.to_string())?;
        out.push(format!("  - {quoted}"));
    }
    out.extend(lines[end..].iter().map(|l| (*l).to_owned()));
    let mut text = out.join("\n");
    text.push('\n');
    Ok(Some(text))
}

/// Largest pipelock config accepted from an edit.
pub const MAX_PIPELOCK_CONFIG: usize = 1024 * 1024;

/// An operator-edited pipelock config that passed
/// [`check_pipelock_config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelockConfigText {
    text: String,
    hosts: Vec<String>,
}

impl PipelockConfigText {
    /// The config text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The hosts of its `api_allowlist`, lowercase, in file order.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
}

/// Checks a pipelock config an operator edited, before pipelock is given
/// it: at most [`MAX_PIPELOCK_CONFIG`] bytes of YAML whose top level is a
/// mapping; `api_allowlist` a block list of host names (no IP literals,
/// as pipelock's allowlist holds names), one `  - "host"` line each as the
/// launcher writes it, so later approvals can still extend it;
/// `forward_proxy.enabled: true`, because the bottle's egress proxy sends
/// every request through pipelock. Other keys are pipelock's own and are
/// left to pipelock (its health check after the restart is the last
/// word). All problems are reported at once.
pub fn check_pipelock_config(text: &str) -> Result<PipelockConfigText, String> {
    use manifest::yaml::{Value, parse_document};
    if text.len() > MAX_PIPELOCK_CONFIG {
        return Err(format!(
            "the config is {} bytes; at most {MAX_PIPELOCK_CONFIG} are accepted",
            text.len()
        ));
    }
    let doc = parse_document(text, "pipelock.yaml").map_err(|e| e.to_string())?;
    let Value::Map(entries) = &doc.value else {
        return Err(format!(
            "pipelock.yaml: expected a mapping of pipelock settings, found {}",
            doc.value.kind()
        ));
    };
    let get = |map: &[(manifest::yaml::Node, manifest::yaml::Node)], key: &str| {
        map.iter()
            .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
            .map(|(_, v)| v.clone())
    };
    let mut problems: Vec<String> = Vec::new();
    let mut hosts: Vec<String> = Vec::new();
    match get(entries, "api_allowlist").map(|n| n.value) {
        None => problems.push(
            "api_allowlist: missing; pipelock needs the list of host names it lets through (an empty list is the line `api_allowlist:` with no items)".into(),
        ),
        Some(Value::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                let Value::Str(h) = &item.value else {
                    problems.push(format!(
                        "api_allowlist[{i}] (line {}): expected a host name, found {}",
                        item.line,
                        item.value.kind()
                    ));
                    continue;
                };
                match manifest::HostPattern::parse(h, manifest::IpLiterals::Allow) {
                    Ok(p) if p.is_ip() => problems.push(format!(
                        "api_allowlist[{i}] (line {}): {h:?} is an IP address; pipelock's allowlist holds host names (its SSRF guard handles addresses)",
                        item.line
                    )),
                    Ok(p) if p.as_str() == h.to_ascii_lowercase() => {
                        hosts.push(p.as_str().to_owned());
                    }
                    Ok(p) => problems.push(format!(
                        "api_allowlist[{i}] (line {}): write {h:?} as {:?}",
                        item.line,
                        p.as_str()
                    )),
                    Err(e) => problems.push(format!(
                        "api_allowlist[{i}] (line {}): {e}; expected a host name such as api.example.com",
                        item.line
                    )),
                }
            }
        }
        Some(Value::Null) => {}
        Some(other) => problems.push(format!(
            "api_allowlist: expected a list of host names, found {}",
            other.kind()
        )),
    }
    let forward = get(entries, "forward_proxy").and_then(|n| match n.value {
        Value::Map(m) => get(&m, "enabled").map(|e| e.value),
        _ => None,
    });
    if forward != Some(Value::Bool(true)) {
        problems.push(
            "forward_proxy.enabled: must stay true; the bottle's egress proxy sends every request through pipelock as its forward proxy".into(),
        );
    }
    if problems.is_empty() {
        let lines: Vec<&str> = text.lines().collect();
        match allowlist_block(&lines) {
            Ok((_, _, present)) if present == hosts => {}
            _ => problems.push(
                "api_allowlist: write it as a block list at the top level, one `  - \"host\"` line per host (as the launcher writes it), so later approvals can extend it".into(),
            ),
        }
    }
    if problems.is_empty() {
        Ok(PipelockConfigText {
            text: text.to_owned(),
            hosts,
        })
    } else {
        Err(problems.join("\n"))
    }
}

/// How long pipelock may take to answer its health check after a restart.
pub const PIPELOCK_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The pipelock container of a running bottle, driven through Docker's
/// API only (the pipelock image has no shell): the config is copied out
/// and in with the archive API, and pipelock is restarted and waited for
/// with its own health check, so the new allowlist is certainly loaded
/// (the predecessor's order, seed 002). A restart cuts connections that
/// run through pipelock at that moment.
#[derive(Clone, Debug)]
pub struct DockerPipelock {
    engine: Engine,
    container: String,
}

impl DockerPipelock {
    /// The pipelock container `container` on `engine`.
    pub fn new(engine: Engine, container: String) -> Self {
        Self { engine, container }
    }

    /// The running pipelock of bottle `identity`, if it has one.
    pub async fn of_bottle(
        engine: &Engine,
        identity: &crate::plan::identity::Identity,
    ) -> Option<Self> {
        let component = crate::plan::identity::Component::Pipelock;
        match engine.state_of(identity, component).await {
            Ok(Running::Yes) => Some(Self::new(
                engine.clone(),
                identity.container_name(component),
            )),
            _ => None,
        }
    }
}

/// The contents of the one regular file in a tar (as Docker's archive API
/// returns a single file).
pub fn single_file_of_tar(tar: &[u8]) -> Result<String, String> {
    use std::io::Read as _;
    let mut archive = tar::Archive::new(tar);
    let entries = archive
        .entries()
        .map_err(|e| format!("reading the tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("reading the tar: {e}"))?;
        if entry.header().entry_type().is_file() {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| format!("reading the file in the tar: {e}"))?;
            return Ok(text);
        }
    }
    Err("the archive holds no regular file".into())
}

impl PipelockMirror for DockerPipelock {
    async fn mirror(&self, hosts: &[String]) -> Result<(), String> {
        let current = self.read_config().await?;
        let Some(new) = add_pipelock_hosts(&current, hosts)? else {
            return Ok(());
        };
        self.load_config(&new).await
    }
}

impl PipelockConfig for DockerPipelock {
    async fn read_config(&self) -> Result<String, String> {
        use futures_util::StreamExt as _;
        let opts = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default()
            .path(crate::plan::PIPELOCK_CONFIG)
            .build();
        let mut stream = self
            .engine
            .client()
            .download_from_container(&self.container, Some(opts));
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                format!(
                    "copying {} out of {}: {e}",
                    crate::plan::PIPELOCK_CONFIG,
                    self.container
                )
            })?;
            tar.extend_from_slice(&chunk);
            if tar.len() > 4 * 1024 * 1024 {
                return Err("pipelock's config is larger than 4 MiB".into());
            }
        }
        single_file_of_tar(&tar)
    }

    async fn load_config(&self, text: &str) -> Result<(), String> {
        let tar = archive::build(&[FileEntry {
            path: crate::plan::PIPELOCK_CONFIG.to_owned(),
            mode: 0o644,
            uid: SIDECAR_UID,
            gid: SIDECAR_UID,
            contents: text.as_bytes().to_vec(),
        }])
        .map_err(|e| e.to_string())?;
        self.engine
            .upload(&self.container, tar)
            .await
            .map_err(|e| format!("writing pipelock's config: {e}"))?;
        self.engine
            .client()
            .restart_container(
                &self.container,
                None::<bollard::query_parameters::RestartContainerOptions>,
            )
            .await
            .map_err(|e| format!("restarting {}: {e}", self.container))?;
        let check = vec![
            crate::plan::PIPELOCK_BINARY.to_owned(),
            "healthcheck".to_owned(),
            "--addr".to_owned(),
            format!("127.0.0.1:{}", crate::plan::PIPELOCK_PORT),
        ];
        self.engine
            .wait_ready(
                &self.container,
                &format!("{SIDECAR_UID}:{SIDECAR_UID}"),
                &check,
                PIPELOCK_READY_TIMEOUT,
            )
            .await
            .map_err(|e| {
                format!("pipelock did not come back after the restart with the new config: {e}")
            })
    }
}

/// No pipelock (the bottle runs without one).
#[derive(Clone, Copy, Debug)]
pub struct NoPipelock;

impl PipelockMirror for NoPipelock {
    async fn mirror(&self, _hosts: &[String]) -> Result<(), String> {
        Ok(())
    }
}

pub mod kubernetes;

#[cfg(test)]
pub(crate) mod tests;
