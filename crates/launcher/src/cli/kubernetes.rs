//! `launcher render kubernetes` and `--target kubernetes` for `start`,
//! `stop`, `proposals`, `approve` and `reject`: thin commands over `launcher::engine::kubernetes` and `launcher::approvals::apply::kubernetes`.
//! (A module of the binary, kept next to the library module it drives.)

use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use launcher::approvals::Located;
use launcher::approvals::apply::kubernetes::{ApiExec, KubeEgress};
use launcher::approvals::preview::{self, Changes, Layout};
use launcher::approvals::queue::BottleQueue as _;
use launcher::approvals::queue::kubernetes::ExecQueue;
use launcher::engine::kubernetes::client::{Cluster, READY_TIMEOUT};
use launcher::engine::kubernetes::render::{
    self, Bundle, CA_CERT_KEY, CA_CONFIGMAP, CA_KEY_KEY, CA_SECRET, EGRESS_TOKENS_SECRET,
    GIT_GATE_TOKENS_SECRET, RenderOptions,
};
use launcher::plan::identity::{Component, Identity};
use launcher::plan::{self, Plan, PlanOptions};
use manifest::queue::ProposalRequest;

use crate::cli::approvals::{
    ApproveArgs, Format, ProposalsArgs, ProposalsCommand, RejectArgs, report_approved,
};
use crate::cli::bottles::{Format as ListFormat, ListArgs, StopArgs};
use crate::cli::start::{self as start_cmd, BottleArgs, StartArgs};

/// Which engine a command drives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// The local Docker engine.
    #[default]
    Docker,
    /// The cluster of the current kubeconfig context.
    Kubernetes,
}

/// Commands that take `--target kubernetes` today.
pub const SUPPORTED: &str =
    "start, stop, list, proposals, approve, reject (and `launcher render kubernetes`)";

/// The error for a command not yet on Kubernetes.
pub fn unsupported(command: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "`launcher {command}` is not yet on kubernetes; with --target kubernetes these work: {SUPPORTED}. Use --target docker (the default) for {command}"
    )
}

/// Print a bottle's objects without touching a cluster.
#[derive(Debug, Subcommand)]
pub enum RenderCommand {
    /// The Kubernetes objects of a bottle, as multi-document YAML.
    Kubernetes(RenderArgs),
}

/// Options of `render kubernetes` and `--target kubernetes`.
#[derive(Debug, Args, Clone, Default)]
pub struct KubeOptions {
    /// Kubernetes: the bottle's namespace (default: claude-bottle-<identity>).
    #[arg(long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,
    /// Kubernetes: pin a sidecar Service's ClusterIP, COMPONENT=IP
    /// (repeatable; all three make the agent's host aliases part of the
    /// rendered YAML).
    #[arg(long = "service-ip", global = true, value_name = "COMPONENT=IP")]
    pub service_ips: Vec<String>,
    /// Kubernetes: a pod or service CIDR of the cluster, excluded from the
    /// sidecars' internet egress besides the private ranges (repeatable).
    #[arg(long = "cluster-cidr", global = true, value_name = "CIDR")]
    pub cluster_cidrs: Vec<String>,
}

impl KubeOptions {
    fn render_options(&self) -> anyhow::Result<RenderOptions> {
        let mut service_ips = BTreeMap::new();
        for s in &self.service_ips {
            let (c, ip) = render::parse_service_ip(s)?;
            service_ips.insert(c, ip);
        }
        Ok(RenderOptions {
            namespace: self.namespace.clone(),
            service_ips,
            cluster_cidrs: self.cluster_cidrs.clone(),
        })
    }
}

/// `render kubernetes <agent>` (with the global Kubernetes options).
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub bottle: BottleArgs,
}

/// The plan of `args`' agent (image tags computed, nothing built).
fn plan_of(args: &BottleArgs) -> anyhow::Result<Plan> {
    let (loaded, agent) = start_cmd::load_agent(args)?;
    if args.cwd.is_some() {
        bail!(
            "--cwd is not supported with --target kubernetes: the cluster cannot mount a directory of this host; leave it out (the agent's work leaves by git push through git-gate)"
        );
    }
    let image_opts = start_cmd::image_options(
        args.bin_dir.as_deref(),
        args.offline,
        args.claude_code.as_deref(),
    )?;
    let agent_image = start_cmd::agent_image(&agent, &loaded);
    let rt = crate::cli::start::runtime()?;
    let set = rt.block_on(launcher::engine::images::planned(&image_opts, &agent_image))?;
    let identity = Identity::mint(agent.name())?;
    let opts = PlanOptions {
        identity,
        cwd: None,
        queue_dir: PathBuf::from(plan::SUPERVISE_QUEUE),
        images: set.tags.clone(),
        unavailable: set.unavailable.clone(),
        extra_labels: args.labels.iter().cloned().collect(),
        skills: Vec::new(),
        upstream_ca: args
            .upstream_ca
            .as_deref()
            .map(crate::cli::start::read_upstream_ca)
            .transpose()?,
        workspace_mode: args.workspace,
    };
    let mut plan = plan::build(&agent, &opts)?;
    if !agent.skills().is_empty() {
        bail!(
            "skills are not supported with --target kubernetes yet; remove them from the agent or run it on Docker"
        );
    }
    if let Some(dockerfile) = launcher::engine::images::agent_dockerfile(&agent_image)? {
        plan = plan.with_current_dockerfile(&dockerfile);
    }
    Ok(plan)
}

/// `launcher render kubernetes <agent>`.
pub fn render(cmd: &RenderCommand, kube: &KubeOptions) -> anyhow::Result<()> {
    let RenderCommand::Kubernetes(args) = cmd;
    let plan = plan_of(&args.bottle)?;
    let bundle = render::render(&plan, &kube.render_options()?)?;
    print!("{}", bundle.to_yaml()?);
    Ok(())
}

/// Fills the CA and the tokens (from the operator's environment) into
/// the Secrets; the values exist only in this process and the cluster.
fn fill(plan: &Plan, bundle: &mut Bundle) -> anyhow::Result<()> {
    let today = jiff::tz::Offset::UTC
        .to_datetime(jiff::Timestamp::now())
        .date();
    let ca = launcher::lifecycle::ca::BottleCa::mint(plan.identity.as_str(), today)?;
    bundle.fill_secret(CA_CONFIGMAP, CA_CERT_KEY, ca.cert_pem.as_bytes());
    bundle.fill_secret(CA_SECRET, CA_CERT_KEY, ca.cert_pem.as_bytes());
    bundle.fill_secret(CA_SECRET, CA_KEY_KEY, ca.key_pem.expose().as_bytes());
    let mut missing = Vec::new();
    for (component, secret) in [
        (Component::Egress, EGRESS_TOKENS_SECRET),
        (Component::GitGate, GIT_GATE_TOKENS_SECRET),
    ] {
        for s in plan.container(component).iter().flat_map(|c| &c.secret_env) {
            match std::env::var(&s.token_ref) {
                Ok(v) if !v.is_empty() => {
                    bundle.fill_secret(secret, &s.name, v.as_bytes());
                }
                _ => missing.push(s.token_ref.clone()),
            }
        }
    }
    if !missing.is_empty() {
        missing.dedup();
        eprintln!(
            "warning: not set in this environment, so their routes answer 502 until granted: {}",
            missing.join(", ")
        );
    }
    Ok(())
}

/// `launcher start --target kubernetes <agent>`.
pub fn start(args: &StartArgs, kube: &KubeOptions) -> anyhow::Result<std::process::ExitCode> {
    let plan = plan_of(&args.bottle)?;
    let mut bundle = render::render(&plan, &kube.render_options()?)?;
    let rt = crate::cli::start::runtime()?;
    if args.dry_run {
        print!("{}", bundle.to_yaml()?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let (cluster, info) = rt.block_on(Cluster::connect())?;
    eprint!("{}", launcher::plan::preflight::render(&plan));
    eprintln!("{}", info.preflight(&bundle.namespace));
    eprintln!("{}", rt.block_on(cluster.cni_hint()).line());
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!("not a terminal: pass --yes to start without the question");
        }
        eprint!("Start bottle {} on this cluster? [y/N] ", plan.identity);
        std::io::stderr().flush().ok();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            bail!("not started");
        }
    }
    fill(&plan, &mut bundle)?;
    let mut progress = |l: &str| eprintln!("{l}");
    rt.block_on(cluster.start(bundle.clone(), READY_TIMEOUT, &mut progress))
        .with_context(|| {
            format!(
                "starting bottle {} in namespace {} (what was created is left for inspection: `kubectl -n {} get pods`; remove it with `launcher stop --target kubernetes {}`)",
                plan.identity, bundle.namespace, bundle.namespace, plan.identity
            )
        })?;
    // Which operator variable each egress slot carries (names only), so an
    // approval reuses a credential the bottle holds, as on Docker.
    let state_root = kube_state_root(args.bottle.state_dir.as_deref())?;
    record_token_slots(&state_root, &plan)?;
    println!(
        "bottle {} is running in namespace {}; attach with `kubectl -n {} exec -it agent -- claude`, stop with `launcher stop --target kubernetes {}`",
        plan.identity, bundle.namespace, bundle.namespace, plan.identity
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// Writes the bottle's launch token slots into its operator-side state
/// directory (created 0700 if missing).
fn record_token_slots(state_root: &std::path::Path, plan: &Plan) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    let state = launcher::lifecycle::state::BottleState::new(state_root, &plan.identity);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state.dir())
        .with_context(|| format!("creating {}", state.dir().display()))?;
    state.write_token_slots(&plan.egress_token_slots())?;
    Ok(())
}

/// `launcher stop --target kubernetes <identity>`.
pub fn stop(args: &StopArgs) -> anyhow::Result<()> {
    let identity = Identity::parse(&args.identity)?;
    let rt = crate::cli::start::runtime()?;
    let (cluster, _) = rt.block_on(Cluster::connect())?;
    let deleted = rt.block_on(cluster.stop(identity.as_str()))?;
    // The operator-side state (lock, token slots) goes with the bottle.
    let state = launcher::lifecycle::state::BottleState::new(
        &kube_state_root(args.state_dir.as_deref())?,
        &identity,
    );
    match std::fs::remove_dir_all(state.dir()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => eprintln!("warning: removing {}: {e}", state.dir().display()),
    }
    println!(
        "bottle {identity}: deleting namespace {} (the cluster removes everything in it)",
        deleted.join(", ")
    );
    Ok(())
}

/// `launcher list --target kubernetes`: every bottle namespace of the
/// cluster (found by label, as `stop` finds them).
pub fn list(args: &ListArgs) -> anyhow::Result<()> {
    let rt = crate::cli::start::runtime()?;
    let found = rt.block_on(async {
        let (cluster, _) = Cluster::connect().await?;
        anyhow::Ok(cluster.bottles().await?)
    })?;
    print!("{}", listing(&found, args.format)?);
    Ok(())
}

/// The listing of `(identity, namespace)` pairs in `format`.
fn listing(found: &[(String, String)], format: ListFormat) -> anyhow::Result<String> {
    Ok(match format {
        ListFormat::Json => {
            let bottles: Vec<serde_json::Value> = found
                .iter()
                .map(|(identity, namespace)| {
                    serde_json::json!({ "identity": identity, "namespace": namespace })
                })
                .collect();
            format!(
                "{}\n",
                serde_json::to_string_pretty(&serde_json::json!({ "bottles": bottles }))?
            )
        }
        ListFormat::Text if found.is_empty() => "no bottles on the cluster\n".to_owned(),
        ListFormat::Text => found
            .iter()
            .map(|(identity, namespace)| format!("{identity}  namespace {namespace}\n"))
            .collect(),
    })
}

/// The bottles of the cluster with their queues: every labelled bottle
/// namespace, or only `only`, or only `--namespace`.
struct Bottles {
    /// `(identity, queue)`, what the approval loop takes.
    queues: Vec<(Identity, ExecQueue<ApiExec>)>,
    /// The namespace of each, in the same order.
    namespaces: Vec<String>,
    client: kube::Client,
}

async fn bottles(kube: &KubeOptions, only: Option<&Identity>) -> anyhow::Result<Bottles> {
    let (cluster, _) = Cluster::connect().await?;
    let client = cluster.client().clone();
    let found: Vec<(String, String)> = match (only, &kube.namespace) {
        // Both known: no need to list namespaces (nor the right to).
        (Some(id), Some(ns)) => vec![(id.to_string(), ns.clone())],
        _ => cluster
            .bottles()
            .await?
            .into_iter()
            .filter(|(id, ns)| {
                only.is_none_or(|o| o.as_str() == id)
                    && kube.namespace.as_ref().is_none_or(|n| n == ns)
            })
            .collect(),
    };
    let mut out = Bottles {
        queues: Vec::new(),
        namespaces: Vec::new(),
        client: client.clone(),
    };
    for (id, ns) in found {
        // A namespace label is not trusted to be an identity.
        let Ok(identity) = Identity::parse(&id) else {
            eprintln!("warning: namespace {ns} carries an invalid bottle identity {id:?}; skipped");
            continue;
        };
        out.queues.push((
            identity,
            ExecQueue::new(ApiExec::new(client.clone(), &ns), &ns),
        ));
        out.namespaces.push(ns);
    }
    if out.queues.is_empty() {
        bail!(
            "no bottle{}{} on this cluster (namespaces labelled {}=true); see `kubectl get ns -l {}=true`",
            only.map(|i| format!(" {i}")).unwrap_or_default(),
            kube.namespace
                .as_ref()
                .map(|n| format!(" in namespace {n}"))
                .unwrap_or_default(),
            launcher::plan::identity::LABEL_MANAGED,
            launcher::plan::identity::LABEL_MANAGED,
        );
    }
    Ok(out)
}

/// The operator-side state of a bottle on a cluster (the apply lock, the
/// token slots granted): `<state root>/kubernetes/<identity>/`, apart
/// from Docker bottles' state.
fn kube_state_root(state_dir: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    let root = launcher::lifecycle::state::root(state_dir, |k| std::env::var(k).ok())?;
    Ok(root.join("kubernetes"))
}

/// Finds proposal `id` in the cluster's bottles; creates its local state
/// directory (for the apply lock).
async fn locate(
    kube: &KubeOptions,
    state_dir: Option<&std::path::Path>,
    id: &str,
) -> anyhow::Result<(Bottles, Located, usize)> {
    let root = kube_state_root(state_dir)?;
    let b = bottles(kube, None).await?;
    let (loc, i) = launcher::approvals::locate_in(&b.queues, &root, id).await?;
    std::fs::create_dir_all(loc.state.dir())
        .with_context(|| format!("creating {}", loc.state.dir().display()))?;
    Ok((b, loc, i))
}

/// What approving `p` changes, read from the cluster.
async fn changes(
    client: &kube::Client,
    ns: &str,
    state_root: &std::path::Path,
    p: &launcher::approvals::Pending,
) -> Changes {
    match &p.proposal.request {
        ProposalRequest::Egress(r) => {
            let state = launcher::lifecycle::state::BottleState::new(state_root, &p.identity);
            let slots = match state.token_slots() {
                Ok(s) => s,
                Err(e) => return Changes::Unavailable(e.to_string()),
            };
            let egress = KubeEgress::new(client.clone(), ns, ApiExec::new(client.clone(), ns));
            preview::route_changes(p.identity.as_str(), &egress, &slots, r).await
        }
        other => Changes::Unavailable(format!(
            "a {} proposal cannot be approved on kubernetes yet (only egress-block); reject it with a note",
            other.tool()
        )),
    }
}

fn proposal_json(
    p: &launcher::approvals::Pending,
    c: &Changes,
    now: jiff::Timestamp,
) -> serde_json::Value {
    let mut v = serde_json::to_value(&p.proposal).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "age_seconds".into(),
            (now.as_second() - p.proposal.created_at.as_second()).into(),
        );
        o.insert("changes".into(), preview::changes_json(c));
    }
    v
}

/// `launcher proposals --target kubernetes [show ID]`: read through
/// `supervise queue` in each bottle's supervise Pod.
pub fn proposals(args: &ProposalsArgs, kube: &KubeOptions) -> anyhow::Result<()> {
    let root = kube_state_root(args.state_dir.as_deref())?;
    let rt = crate::cli::start::runtime()?;
    let now = jiff::Timestamp::now();
    let layout = |full| Layout { width: 100, full };
    if let Some(ProposalsCommand::Show { id }) = &args.command {
        return rt.block_on(async {
            let (b, loc, i) = locate(kube, args.state_dir.as_deref(), id).await?;
            let decided = b.queues[i].1.ensure_undecided(&loc.proposal.id).await.err();
            let p = launcher::approvals::Pending {
                identity: loc.identity.clone(),
                proposal: loc.proposal.clone(),
            };
            let c = changes(&b.client, &b.namespaces[i], &root, &p).await;
            match args.format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&proposal_json(&p, &c, now))?
                ),
                Format::Text => {
                    if let Some(d) = &decided {
                        println!("note: {d}");
                    }
                    print!("{}", preview::render(&p, &c, now, layout(true)));
                }
            }
            anyhow::Ok(())
        });
    }
    let only = args.identity.as_deref().map(Identity::parse).transpose()?;
    rt.block_on(async {
        let b = bottles(kube, only.as_ref()).await?;
        let (pending, problems) = launcher::approvals::list_pending_in(&b.queues).await?;
        for p in &problems {
            eprintln!("warning: skipped {p}");
        }
        let mut items = Vec::new();
        for p in &pending {
            let i = b
                .queues
                .iter()
                .position(|(id, _)| *id == p.identity)
                .unwrap_or_default();
            items.push((p, changes(&b.client, &b.namespaces[i], &root, p).await));
        }
        let mut out = std::io::stdout().lock();
        match args.format {
            Format::Json => {
                let v: Vec<serde_json::Value> =
                    items.iter().map(|(p, c)| proposal_json(p, c, now)).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            }
            Format::Text => {
                if items.is_empty() {
                    writeln!(out, "no pending proposals")?;
                }
                for (p, c) in &items {
                    writeln!(out, "{}", preview::render(p, c, now, layout(false)))?;
                }
                if !items.is_empty() {
                    writeln!(
                        out,
                        "decide with `launcher approve --target kubernetes <id> [--note TEXT]` or `launcher reject --target kubernetes <id> --note TEXT`"
                    )?;
                }
            }
        }
        anyhow::Ok(())
    })
}

/// `launcher approve --target kubernetes <id>` for an egress proposal:
/// found and decided through `supervise queue` in the bottle's supervise
/// Pod, the route made live through the egress ConfigMap, the same
/// sequence as on Docker (`approvals::approve_egress_in`).
pub fn approve(args: &ApproveArgs, kube: &KubeOptions) -> anyhow::Result<()> {
    // Read before touching the cluster: a missing variable changes nothing.
    let grant = args
        .grant
        .as_deref()
        .map(|name| launcher::approvals::Grant::from_env(name, |k| std::env::var(k).ok()))
        .transpose()?;
    let rt = crate::cli::start::runtime()?;
    rt.block_on(async {
        let (b, loc, i) = locate(kube, args.state_dir.as_deref(), &args.id).await?;
        let (_, queue) = &b.queues[i];
        queue.ensure_undecided(&loc.proposal.id).await?;
        if !matches!(loc.proposal.request, ProposalRequest::Egress(_)) {
            bail!(
                "proposal {} is a {} proposal; on kubernetes only egress-block proposals can be approved yet. Reject it with `launcher reject --target kubernetes {} --note TEXT`",
                args.id,
                loc.proposal.request.tool(),
                args.id
            );
        }
        let ns = &b.namespaces[i];
        let egress = KubeEgress::new(b.client.clone(), ns, ApiExec::new(b.client.clone(), ns));
        let a = launcher::approvals::approve_egress_in(
            &loc,
            queue,
            &egress,
            None::<&launcher::approvals::apply::DockerPipelock>,
            &args.note,
            args.without_auth,
            grant.as_ref(),
            args.allow_private,
        )
        .await?;
        report_approved(&args.id, &loc.identity, &a, |g| {
            format!("in the egress tokens Secret as {}", g.token_env)
        });
        anyhow::Ok(())
    })
}

/// `launcher reject --target kubernetes <id> --note TEXT`.
pub fn reject(args: &RejectArgs, kube: &KubeOptions) -> anyhow::Result<()> {
    if args.note.trim().is_empty() {
        return Err(launcher::approvals::ApprovalError::EmptyNote.into());
    }
    let rt = crate::cli::start::runtime()?;
    rt.block_on(async {
        let (b, loc, i) = locate(kube, args.state_dir.as_deref(), &args.id).await?;
        launcher::approvals::reject_in(&loc, &b.queues[i].1, &args.note).await?;
        println!("rejected {} (bottle {})", args.id, loc.identity);
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        crate::Cli::command().debug_assert();
    }

    #[test]
    fn target_and_kubernetes_options_parse_on_start_stop_proposals_approve_reject_and_render() {
        let cli = crate::Cli::try_parse_from([
            "launcher",
            "start",
            "--target",
            "kubernetes",
            "claude",
            "--namespace",
            "team-a",
            "--service-ip",
            "egress=10.96.0.10",
        ])
        .expect("start parses");
        assert_eq!(cli.target, Target::Kubernetes);
        assert_eq!(cli.kube.namespace.as_deref(), Some("team-a"));
        for args in [
            &["launcher", "stop", "claude-k3x9a", "--target", "kubernetes"][..],
            &["launcher", "approve", "--target", "kubernetes", "p-1"][..],
            &[
                "launcher",
                "reject",
                "--target",
                "kubernetes",
                "p-1",
                "--note",
                "no",
            ][..],
            &[
                "launcher",
                "--target",
                "kubernetes",
                "proposals",
                "show",
                "p-1",
            ][..],
            &[
                "launcher",
                "render",
                "kubernetes",
                "claude",
                "--cluster-cidr",
                "10.96.0.0/12",
            ][..],
        ] {
            crate::Cli::try_parse_from(args).expect("parses");
        }
        let cli = crate::Cli::try_parse_from(["launcher", "list"]).expect("list");
        assert_eq!(cli.target, Target::Docker, "docker stays the default");
    }

    #[test]
    fn other_commands_on_kubernetes_name_the_supported_ones() {
        let cli =
            crate::Cli::try_parse_from(["launcher", "logs", "--target", "kubernetes", "x-k3x9a"])
                .expect("parses");
        let e = crate::on_kubernetes(&cli).expect_err("not on kubernetes");
        let m = e.to_string();
        assert!(
            m.contains("`launcher logs` is not yet on kubernetes"),
            "{m}"
        );
        assert!(
            m.contains("start, stop, list, proposals, approve, reject"),
            "{m}"
        );
    }

    #[test]
    fn start_records_the_egress_token_slots_where_approvals_read_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let manifest = manifest::defaults::default_manifest().expect("default manifest");
        let agent = manifest.agents().first().cloned().expect("default agent");
        let opts = launcher::plan::PlanOptions {
            identity: Identity::parse("claude-k3x9a").expect("id"),
            cwd: None,
            queue_dir: "/state/queue".into(),
            images: Component::ALL
                .into_iter()
                .map(|c| (c, format!("claude-bottle/{c}:test")))
                .collect(),
            unavailable: BTreeMap::new(),
            extra_labels: BTreeMap::new(),
            upstream_ca: None,
            skills: Vec::new(),
            workspace_mode: None,
        };
        let plan = launcher::plan::build(&agent, &opts).expect("plan");
        let expected = plan.egress_token_slots();
        assert!(
            !expected.is_empty(),
            "the default agent holds the OAuth slot"
        );
        record_token_slots(dir.path(), &plan).expect("record");
        let state = launcher::lifecycle::state::BottleState::new(dir.path(), &plan.identity);
        assert_eq!(state.token_slots().expect("read"), expected);
    }

    #[test]
    fn the_cluster_listing_names_identity_and_namespace_in_text_and_json() {
        let found = vec![
            (
                "claude-k3x9a".to_owned(),
                "claude-bottle-claude-k3x9a".to_owned(),
            ),
            ("dev-a1b2c".to_owned(), "team-bottles".to_owned()),
        ];
        let text = listing(&found, ListFormat::Text).expect("text");
        assert_eq!(
            text,
            "claude-k3x9a  namespace claude-bottle-claude-k3x9a\ndev-a1b2c  namespace team-bottles\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&listing(&found, ListFormat::Json).expect("json")).expect("valid");
        assert_eq!(json["bottles"][1]["namespace"], "team-bottles");
        assert_eq!(json["bottles"][0]["identity"], "claude-k3x9a");
        assert_eq!(
            listing(&[], ListFormat::Text).expect("empty"),
            "no bottles on the cluster\n"
        );
    }
}
