//! Executing a [`Plan`] on Docker, and undoing it: the bottle lifecycle.
//!
//! Order: resolve secrets (a missing operator variable stops the launch by
//! name, before Docker is touched) → orphan probe (any object with one of
//! this bottle's names stops the launch with the `cleanup` hint) → state
//! directory → workspace guards (protect mode: survey, placeholders
//! recorded then created) → networks (the internal one checked for a host
//! address: refused if it has one) → volumes → per-bottle CA → each
//! sidecar (create, copy its files in with explicit modes — into its
//! volumes, the root being read-only —, start, wait until its readiness
//! check passes) → the agent (create; its trust bundle, the image's own
//! plus the bottle CA, and its files written before it starts; copy mode:
//! the workspace copied in; start). Nothing is ever run as root in the
//! agent.
//!
//! Invariant: every object created is recorded before the next step runs,
//! and [`Bottle::teardown`] removes them in reverse order; a failure at any
//! step tears down what exists before the error is returned.
//!
//! Also here, as what a bottle is while it runs and after: its state
//! directory on the host ([`state`]), its certificate authority ([`ca`]),
//! and what `launcher resume` needs to start it again ([`resume`]).

pub mod ca;
pub mod resume;
pub mod state;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::engine::BottleEngine as _;
use crate::engine::archive::{self, Fetched, FileEntry};
use crate::engine::docker::{DockerError, Engine, ExecOutput};
use crate::plan::identity::Component;
use crate::plan::preflight::engine::{in_cidr, local_ipv4_addresses};
use crate::plan::workspace::{self, WorkspaceError};
use crate::plan::{AGENT_UID, ContainerPlan, FileSource, INHIBIT_IPV4, Mount, Plan, WORKSPACE};
use ca::BottleCa;
use state::{BottleState, Metadata, StateError};

/// The largest trust bundle read from an agent image.
pub const MAX_TRUST_BUNDLE: u64 = 16 * 1024 * 1024;

pub use crate::plan::identity::LABEL_LAUNCHER_PID;

/// How long a sidecar may take to pass its readiness check.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a launch step failed; each names the step.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// An operator variable a route or remote names is not set.
    #[error(
        "the operator environment variable {token_ref} is not set (named by token_ref in the manifest); export it before starting the bottle"
    )]
    MissingToken {
        /// The variable.
        token_ref: String,
    },
    /// Objects with this bottle's names already exist.
    #[error(
        "Docker objects of bottle {identity} already exist ({names}); run `launcher cleanup` to remove orphans, then start again"
    )]
    Orphans {
        /// The bottle.
        identity: String,
        /// What exists.
        names: String,
    },
    /// Writing the state directory failed.
    #[error("state: {0}")]
    State(#[from] StateError),
    /// Minting the CA failed.
    #[error("ca: {0}")]
    Ca(#[from] crate::lifecycle::ca::CaError),
    /// A file could not be packed for a container.
    #[error("files for {container}: {source}")]
    Archive {
        /// The container.
        container: String,
        /// Why.
        source: archive::ArchiveError,
    },
    /// A Docker step failed.
    #[error("{step}: {source}")]
    Docker {
        /// The lifecycle step.
        step: String,
        /// Docker's error (with its message).
        source: DockerError,
    },
    /// A host file (a skill) could not be read.
    #[error("reading {path} for {container}: {source}")]
    HostFile {
        /// The file.
        path: std::path::PathBuf,
        /// The container it was for.
        container: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// SIGINT/SIGTERM arrived while the bottle was being started; what
    /// existed has been torn down.
    #[error("interrupted by a signal while starting the bottle (what was created is torn down)")]
    Interrupted,
    /// A planned file needs something this launch did not make.
    #[error("files for {container}: {what} is missing")]
    MissingMaterial {
        /// The container.
        container: String,
        /// What is missing.
        what: &'static str,
    },
    /// The internal network has no IPv4/IPv6 subnet pipelock could allow.
    #[error(
        "network {network} has no subnet Docker reported ({found:?}); pipelock needs the internal network's CIDR for its SSRF allowlist"
    )]
    NoSubnet {
        /// The network.
        network: String,
        /// What Docker reported.
        found: Vec<String>,
    },
    /// The internal network has a host address after all.
    #[error(
        "network {network} would let the agent reach the host: {reason}; upgrade Docker Engine (20.10 or newer honours {INHIBIT_IPV4}) or report this engine"
    )]
    HostWall {
        /// The network.
        network: String,
        /// What was found.
        reason: String,
    },
    /// The workspace cannot be protected or copied.
    #[error("{0}")]
    Workspace(#[from] WorkspaceError),
    /// Copying the workspace into the agent failed.
    #[error("copying workspace {path} into {container}: {source}")]
    WorkspaceCopy {
        /// The workspace.
        path: std::path::PathBuf,
        /// The agent container.
        container: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What file sources resolve to at launch: the minted CAs and the
/// internal network's CIDR.
struct Materials {
    ca: BottleCa,
    pipelock_ca: Option<BottleCa>,
    internal_cidr: Option<manifest::pipelock::Cidr>,
}

impl Materials {
    /// The bytes of `source` (boxed error: `LaunchError` is large).
    fn contents(&self, source: &FileSource, container: &str) -> Result<Vec<u8>, Box<LaunchError>> {
        let pipelock_ca = || {
            self.pipelock_ca.as_ref().ok_or_else(|| {
                Box::new(LaunchError::MissingMaterial {
                    container: container.to_owned(),
                    what: "pipelock's CA (the plan has no pipelock container)",
                })
            })
        };
        Ok(match source {
            FileSource::Text(t) => t.as_bytes().to_vec(),
            FileSource::CaCert => self.ca.cert_pem.as_bytes().to_vec(),
            FileSource::CaKey => self.ca.key_pem.expose().as_bytes().to_vec(),
            FileSource::HostFile(p) => std::fs::read(p).map_err(|source| {
                Box::new(LaunchError::HostFile {
                    path: p.clone(),
                    container: container.to_owned(),
                    source,
                })
            })?,
            FileSource::PipelockConfig(base) => {
                let cidrs: Vec<_> = self.internal_cidr.iter().cloned().collect();
                format!("{base}{}", crate::plan::pipelock_ssrf_section(&cidrs)).into_bytes()
            }
            FileSource::PipelockCaCert => pipelock_ca()?.cert_pem.as_bytes().to_vec(),
            // Read from the created container by `Bottle::trust_bundle`.
            FileSource::TrustBundle => {
                return Err(Box::new(LaunchError::MissingMaterial {
                    container: container.to_owned(),
                    what: "the image's trust bundle (a top-level file only)",
                }));
            }
            FileSource::PipelockCaKey => pipelock_ca()?.key_pem.expose().as_bytes().to_vec(),
            FileSource::Bundle(parts) => {
                let mut out = Vec::new();
                for p in parts {
                    let mut bytes = self.contents(p, container)?;
                    if !bytes.ends_with(b"\n") {
                        bytes.push(b'\n');
                    }
                    out.extend(bytes);
                }
                out
            }
        })
    }
}

/// A bottle whose objects exist; [`Bottle::teardown`] removes them.
#[derive(Debug)]
pub struct Bottle {
    engine: Engine,
    plan: Plan,
    state: BottleState,
    containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
    state_created: bool,
    cancel: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Starts the bottle `plan` describes. `env` looks up operator variables;
/// `progress` receives one line per step.
pub async fn launch(
    engine: &Engine,
    plan: Plan,
    state: BottleState,
    metadata: Metadata,
    env: &dyn Fn(&str) -> Option<String>,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Bottle, LaunchError> {
    launch_until(engine, plan, state, metadata, env, progress, None).await
}

/// Resolves once `cancel` holds `true`; never when its sender is gone.
async fn cancelled(cancel: &mut tokio::sync::watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// [`launch`], abandoned once `cancel` turns `true` (SIGINT/SIGTERM while
/// sidecars start): checked before every Docker object is created and
/// while waiting for readiness (never in the middle of a create, so no
/// object can appear after the teardown), then everything created so far
/// is torn down and [`LaunchError::Interrupted`] returned.
pub async fn launch_until(
    engine: &Engine,
    plan: Plan,
    state: BottleState,
    metadata: Metadata,
    env: &dyn Fn(&str) -> Option<String>,
    progress: &mut (dyn FnMut(&str) + Send),
    cancel: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<Bottle, LaunchError> {
    if cancel.as_ref().is_some_and(|c| *c.borrow()) {
        return Err(LaunchError::Interrupted);
    }
    // 1. Secrets, before anything exists.
    let mut secrets: BTreeMap<String, String> = BTreeMap::new();
    for token_ref in plan.token_refs() {
        match env(token_ref).filter(|v| !v.is_empty()) {
            Some(v) => {
                secrets.insert(token_ref.to_owned(), v);
            }
            None => {
                return Err(LaunchError::MissingToken {
                    token_ref: token_ref.to_owned(),
                });
            }
        }
    }
    // 2. Orphan probe.
    let mut names: Vec<String> = plan.containers.iter().map(|c| c.name.clone()).collect();
    names.extend(plan.networks.iter().map(|n| n.name.clone()));
    names.extend(plan.volumes.iter().map(|v| v.name.clone()));
    let found = engine
        .existing_names(&names)
        .await
        .map_err(|source| LaunchError::Docker {
            step: "orphan probe".into(),
            source,
        })?;
    if !found.is_empty() {
        return Err(LaunchError::Orphans {
            identity: plan.identity.to_string(),
            names: found.join(", "),
        });
    }
    let mut bottle = Bottle {
        engine: engine.clone(),
        plan,
        state,
        containers: Vec::new(),
        networks: Vec::new(),
        volumes: Vec::new(),
        state_created: false,
        cancel,
    };
    match bottle.bring_up(&secrets, metadata, progress).await {
        Ok(()) => Ok(bottle),
        Err(e) => {
            progress(&format!("launch failed ({e}); tearing down"));
            bottle.teardown(progress).await;
            Err(e)
        }
    }
}

impl Bottle {
    fn cancel_requested(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| *c.borrow())
    }

    /// The plan this bottle runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The agent container's name.
    pub fn agent_container(&self) -> String {
        self.plan.identity.container_name(Component::Agent)
    }

    async fn bring_up(
        &mut self,
        secrets: &BTreeMap<String, String>,
        metadata: Metadata,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), LaunchError> {
        let id = self.plan.identity.to_string();
        self.state_created = true;
        self.state.create(&metadata)?;
        // Which operator variable each egress slot carries, so a later
        // approval reuses a slot instead of asking for the token again.
        let slots = self.plan.egress_token_slots();
        self.state.write_token_slots(&slots)?;
        self.guard_workspace(progress).map_err(|e| *e)?;
        for n in self.plan.networks.clone() {
            progress(&format!(
                "network {} ({})",
                n.name,
                if n.internal { "internal" } else { "egress" }
            ));
            if self.cancel_requested() {
                return Err(LaunchError::Interrupted);
            }
            self.networks.push(n.name.clone());
            self.engine
                .create_network(&n)
                .await
                .map_err(|source| LaunchError::Docker {
                    step: format!("creating network {}", n.name),
                    source,
                })?;
            if n.internal {
                let how = self.check_host_wall(&n.name).await?;
                progress(&format!("network {}: {how}", n.name));
            }
        }
        for v in self.plan.volumes.clone() {
            if self.cancel_requested() {
                return Err(LaunchError::Interrupted);
            }
            self.volumes.push(v.name.clone());
            self.engine
                .create_volume(&v)
                .await
                .map_err(|source| LaunchError::Docker {
                    step: format!("creating volume {}", v.name),
                    source,
                })?;
        }
        let today = jiff::tz::Offset::UTC
            .to_datetime(jiff::Timestamp::now())
            .date();
        let ca = BottleCa::mint(&id, today)?;
        progress(&format!("minted the bottle CA, SHA-256 {}", ca.sha256));
        let mut materials = Materials {
            ca,
            pipelock_ca: None,
            internal_cidr: None,
        };
        if self.plan.container(Component::Pipelock).is_some() {
            materials.pipelock_ca = Some(BottleCa::mint(&format!("{id}-pipelock"), today)?);
            progress("minted pipelock's interception CA");
            let internal = self.plan.identity.internal_network();
            let subnets = self
                .engine
                .network_subnets(&internal)
                .await
                .map_err(|source| LaunchError::Docker {
                    step: format!("reading the subnet of network {internal}"),
                    source,
                })?;
            let cidr = subnets
                .iter()
                .find_map(|s| manifest::pipelock::Cidr::parse(s).ok())
                .ok_or_else(|| LaunchError::NoSubnet {
                    network: internal.clone(),
                    found: subnets.clone(),
                })?;
            progress(&format!(
                "pipelock: SSRF allowlist {cidr} (network {internal})"
            ));
            materials.internal_cidr = Some(cidr);
        }
        for c in self.plan.containers.clone() {
            self.start_container(&c, &materials, secrets, progress)
                .await?;
        }
        Ok(())
    }

    async fn start_container(
        &mut self,
        c: &ContainerPlan,
        materials: &Materials,
        secrets: &BTreeMap<String, String>,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), LaunchError> {
        let step = |what: &str| format!("{what} {} ({})", c.component, c.name);
        let docker = |what: &'static str| {
            let step = step(what);
            move |source| LaunchError::Docker { step, source }
        };
        progress(&format!(
            "{}: creating {} from {}",
            c.component, c.name, c.image
        ));
        let secret_env: Vec<(String, String)> = c
            .secret_env
            .iter()
            .filter_map(|s| {
                secrets
                    .get(&s.token_ref)
                    .map(|v| (s.name.clone(), v.clone()))
            })
            .collect();
        if self.cancel_requested() {
            return Err(LaunchError::Interrupted);
        }
        self.containers.push(c.name.clone());
        self.engine
            .create_container(c, &secret_env)
            .await
            .map_err(docker("creating"))?;
        let mut files: Vec<FileEntry> = Vec::with_capacity(c.files.len());
        for f in &c.files {
            let contents = match &f.source {
                FileSource::TrustBundle => {
                    self.trust_bundle(c, &f.path, materials, progress).await?
                }
                other => materials.contents(other, &c.name).map_err(|e| *e)?,
            };
            files.push(FileEntry {
                path: f.path.clone(),
                mode: f.mode,
                uid: f.uid,
                gid: f.uid,
                contents,
            });
        }
        if !files.is_empty() {
            let tar = archive::build(&files).map_err(|source| LaunchError::Archive {
                container: c.name.clone(),
                source,
            })?;
            self.engine
                .upload(&c.name, tar)
                .await
                .map_err(docker("copying files into"))?;
        }
        if c.component == Component::Agent {
            self.copy_workspace(c, progress).await?;
        }
        self.engine
            .start(&c.name)
            .await
            .map_err(docker("starting"))?;
        if let Some(check) = &c.health {
            progress(&format!("{}: waiting until ready", c.component));
            let ready = self
                .engine
                .wait_ready(&c.name, &c.user, check, READY_TIMEOUT);
            match self.cancel.clone() {
                // Dropping the readiness poll is safe: the container exists
                // and is recorded for the teardown.
                Some(mut cancel) => tokio::select! {
                    r = ready => r.map_err(docker("waiting for"))?,
                    () = cancelled(&mut cancel) => return Err(LaunchError::Interrupted),
                },
                None => ready.await.map_err(docker("waiting for"))?,
            }
        }
        progress(&format!("{}: ready", c.component));
        Ok(())
    }

    /// Protect mode: finds the workspace's guards, records and creates the
    /// placeholders, and mounts every guard read-only over the agent's
    /// bind mount.
    fn guard_workspace(
        &mut self,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), Box<LaunchError>> {
        let Some(w) = self.plan.workspace.clone() else {
            return Ok(());
        };
        if w.mode != manifest::WorkspaceMode::Protect {
            progress(&format!(
                "workspace {}: copy mode (copied into the agent; nothing is written back)",
                w.host.display()
            ));
            return Ok(());
        }
        let guards = workspace::survey(&w.host).map_err(LaunchError::from)?;
        let list = workspace::placeholders(&w.host, &guards);
        if !list.is_empty() {
            self.state
                .record_placeholders(&list)
                .map_err(LaunchError::from)?;
            workspace::create_placeholders(&list).map_err(LaunchError::from)?;
        }
        let names: Vec<String> = guards
            .iter()
            .map(|g| g.path.display().to_string())
            .collect();
        progress(&format!(
            "workspace {}: read-only in the agent: {}",
            w.host.display(),
            names.join(", ")
        ));
        if let Some(agent) = self
            .plan
            .containers
            .iter_mut()
            .find(|c| c.component == Component::Agent)
        {
            agent.mounts.extend(guards.iter().map(|g| Mount {
                source: w.host.join(&g.path),
                target: format!("{WORKSPACE}/{}", g.path.display()),
                read_only: true,
            }));
        }
        if let Some(ws) = self.plan.workspace.as_mut() {
            ws.guards = guards;
        }
        Ok(())
    }

    /// Checks that Docker made the internal network without a host
    /// address: the driver kept `inhibit_ipv4`, and, when the bridge is in
    /// this process's network namespace, no address of its subnets is the
    /// host's. Returns how it was checked.
    async fn check_host_wall(&self, network: &str) -> Result<String, LaunchError> {
        let facts =
            self.engine
                .network_facts(network)
                .await
                .map_err(|source| LaunchError::Docker {
                    step: format!("inspecting network {network}"),
                    source,
                })?;
        let refuse = |reason: String| LaunchError::HostWall {
            network: network.to_owned(),
            reason,
        };
        if facts.options.get(INHIBIT_IPV4).map(String::as_str) != Some("true") {
            return Err(refuse(format!(
                "the engine did not keep the {INHIBIT_IPV4} option (it has {:?})",
                facts.options
            )));
        }
        let bridge = format!("br-{}", facts.id.get(..12).unwrap_or(&facts.id));
        if !std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .exists()
        {
            return Ok(format!(
                "{INHIBIT_IPV4} kept by the engine; its bridge is in another network namespace (remote or rootless engine), so the host side is not checked from here"
            ));
        }
        let fib = std::fs::read_to_string("/proc/net/fib_trie").map_err(|e| {
            refuse(format!(
                "cannot read /proc/net/fib_trie to check bridge {bridge}: {e}"
            ))
        })?;
        let local = local_ipv4_addresses(&fib);
        if let Some(ip) = local
            .iter()
            .find(|ip| facts.subnets.iter().any(|c| in_cidr(**ip, c)))
        {
            return Err(refuse(format!(
                "the host has address {ip} on bridge {bridge} although {INHIBIT_IPV4}=true was set"
            )));
        }
        Ok(format!(
            "bridge {bridge} has no host address (checked); the agent's default route leads nowhere"
        ))
    }

    /// The agent's trust bundle: the image's own (read from the created
    /// container; following one symbolic link), then the bottle CA.
    async fn trust_bundle(
        &self,
        c: &ContainerPlan,
        path: &str,
        materials: &Materials,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Vec<u8>, LaunchError> {
        let read = |p: String| {
            let engine = self.engine.clone();
            let name = c.name.clone();
            async move {
                engine
                    .read_file(&name, &p, MAX_TRUST_BUNDLE)
                    .await
                    .map_err(|source| LaunchError::Docker {
                        step: format!("reading the trust bundle of {name}"),
                        source,
                    })
            }
        };
        let mut bundle = match read(path.to_owned()).await? {
            Some(Fetched::File(b)) => b,
            Some(Fetched::Symlink(target)) => {
                let dir = std::path::Path::new(path)
                    .parent()
                    .unwrap_or(std::path::Path::new("/"));
                let target = dir.join(target).display().to_string();
                match read(target).await? {
                    Some(Fetched::File(b)) => b,
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        progress(&format!(
            "{}: trust bundle = the image's ({} bytes) + the bottle CA, written before start",
            c.component,
            bundle.len()
        ));
        if !bundle.is_empty() && !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
        bundle.extend_from_slice(materials.ca.cert_pem.as_bytes());
        Ok(bundle)
    }

    /// Copy mode: streams the workspace into the created agent at
    /// [`WORKSPACE`], owned by the agent user. Nothing is written back.
    async fn copy_workspace(
        &self,
        c: &ContainerPlan,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), LaunchError> {
        let Some(w) = self
            .plan
            .workspace
            .as_ref()
            .filter(|w| w.mode == manifest::WorkspaceMode::Copy)
        else {
            return Ok(());
        };
        let dest = WORKSPACE.trim_start_matches('/');
        let (stream, done) =
            archive::stream_directory(w.host.clone(), dest.into(), AGENT_UID, AGENT_UID);
        let copy_err = |source| LaunchError::WorkspaceCopy {
            path: w.host.clone(),
            container: c.name.clone(),
            source,
        };
        let uploaded = self.engine.upload_stream(&c.name, "/", stream).await;
        let stats = done
            .await
            .map_err(|e| copy_err(std::io::Error::other(e.to_string())))?
            .map_err(copy_err)?;
        uploaded.map_err(|source| LaunchError::Docker {
            step: format!("copying the workspace into {}", c.name),
            source,
        })?;
        progress(&format!(
            "workspace {}: copied {} files, {} directories, {} links ({} bytes; {} special files left out) into the agent; nothing is written back",
            w.host.display(),
            stats.files,
            stats.dirs,
            stats.symlinks,
            stats.bytes,
            stats.skipped
        ));
        Ok(())
    }

    /// Runs `cmd` in the agent as the agent user and returns its output
    /// and exit code.
    pub async fn exec_in_agent(&self, cmd: &[String]) -> Result<ExecOutput, LaunchError> {
        let agent = self
            .plan
            .container(Component::Agent)
            .map(|c| c.user.clone())
            .unwrap_or_default();
        self.engine
            .exec_in(&self.plan.identity, Component::Agent, &agent, cmd)
            .await
            .map_err(|source| LaunchError::Docker {
                step: "running the command in the agent".into(),
                source,
            })
    }

    /// Runs `cmd` in the agent as the agent user, streaming its output to
    /// `out` (`true` for stderr); returns the exit code.
    pub async fn exec_in_agent_streaming(
        &self,
        cmd: &[String],
        out: &mut (dyn FnMut(bool, &[u8]) + Send),
    ) -> Result<Option<i64>, LaunchError> {
        let agent = self
            .plan
            .container(Component::Agent)
            .map(|c| c.user.clone())
            .unwrap_or_default();
        self.engine
            .exec_streaming(&self.agent_container(), &agent, cmd, out)
            .await
            .map_err(|source| LaunchError::Docker {
                step: "running the command in the agent".into(),
                source,
            })
    }

    /// Removes every object of this bottle in reverse creation order, then
    /// the state directory unless preserved. Never stops half-way: each
    /// failure is reported through `progress` and the rest still runs.
    pub async fn teardown(mut self, progress: &mut (dyn FnMut(&str) + Send)) {
        while let Some(name) = self.containers.pop() {
            if let Err(e) = self.engine.remove_container(&name).await {
                progress(&format!("teardown: {e}"));
            }
        }
        while let Some(name) = self.volumes.pop() {
            if let Err(e) = self.engine.remove_volume(&name).await {
                progress(&format!("teardown: {e}"));
            }
        }
        while let Some(name) = self.networks.pop() {
            if let Err(e) = self.engine.remove_network(&name).await {
                progress(&format!("teardown: {e}"));
            }
        }
        if self.state_created {
            for w in self.state.remove_placeholders() {
                progress(&format!("teardown: {w}"));
            }
            match self.state.remove_unless_preserved() {
                Ok(true) => {}
                Ok(false) => progress(&format!(
                    "state kept (preserved): {}",
                    self.state.dir().display()
                )),
                Err(e) => progress(&format!("teardown: {e}")),
            }
        }
        progress(&format!("bottle {} removed", self.plan.identity));
    }
}
