//! The `bottle:` section of an agent: what the sandbox around the agent
//! allows (egress, git remotes, supervise, pipelock), validated, plus the
//! values every other crate derives from it (effective route table, token
//! slots, remotes file, agent-side environment).
//!
//! Derived values are computed once, at parse time, so an inconsistency is
//! reported as a located diagnostic rather than discovered later by a
//! daemon. Only the parser constructs a [`Bottle`]; its fields are private.

use crate::effective;
use crate::host::{HostPattern, IpLiterals};
use crate::limits::{Limits, WorkspaceMode, parse_limits, parse_workspace};
use crate::merge::{TokenSlot, valid_env_name};
use crate::path::PathPrefix;
use crate::remotes::{
    BranchRules, DEFAULT_GIT_USERNAME, RemoteName, RemotesFile, check_upstream_url,
    parse_branch_rules,
};
use crate::routes::{
    AuthScheme, DEFAULT_PORTS, Role, RouteTable, check_scheme_header, parse_header_name,
    parse_path_allowlist, parse_ports, parse_roles, parse_scheme,
};
use crate::yaml::{Checker, KeyPath, MapView, Node, Value, did_you_mean};

/// Keys that no longer exist, with the recipe that replaces each. They are
/// refused at the top level, on an agent and on a bottle, so an old
/// manifest fails loudly wherever the key sits.
pub(crate) const LEGACY_KEYS: &[(&str, &str)] = &[
    (
        "cred_proxy",
        "`cred_proxy` was removed: the egress proxy injects credentials now. Move each cred_proxy route to bottle.egress.routes as {host, path_allowlist?, auth: {scheme, token_ref}} (see docs/manifest.md, \"Migrating\")",
    ),
    (
        "tokens",
        "`tokens` was removed: declare each token on the route that uses it, e.g. bottle.egress.routes: [{host: api.github.com, auth: {scheme: Bearer, token_ref: GITHUB_TOKEN}}] (see docs/manifest.md, \"Migrating\")",
    ),
    (
        "ssh",
        "`ssh` was removed: SSH remotes are not brokered. Declare the repository under bottle.git with an https:// upstream and auth.token_ref; git-gate scans every push (see docs/manifest.md, \"Migrating\")",
    ),
    (
        "egress_proxy",
        "`egress_proxy` was renamed to `egress`: move its routes to bottle.egress.routes (allowlist and dlp_action live under bottle.egress too)",
    ),
    (
        "runtime",
        "`runtime` is no longer supported, whatever its value: every bottle runs on Docker with the launcher's sidecars. Delete the key",
    ),
];

/// What the DLP scanners do with a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DlpAction {
    /// Refuse the request (the default).
    Block,
    /// Forward it and log the finding.
    Warn,
}

impl DlpAction {
    /// The spelling used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Warn => "warn",
        }
    }
}

/// What egress-proxy does with a response whose text tries to instruct
/// the agent (prompt injection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum InjectionAction {
    /// Not scanned.
    Off,
    /// Logged (the default).
    #[default]
    Warn,
    /// Refused with a 403 (a streamed response is cut).
    Block,
    /// Logged and passed with an `x-egress-inspection` header.
    Annotate,
}

impl InjectionAction {
    /// The spelling used in files and on egress-proxy's command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Warn => "warn",
            Self::Block => "block",
            Self::Annotate => "annotate",
        }
    }
}

/// The opt-in checksummed DLP detectors (`egress.dlp_detectors`), each
/// with its own action; a detector not named is off.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DlpDetectors {
    /// `(manifest key, action)`, in file order: `payment_card`, `iban`,
    /// `crypto_private_key`, `bip39_mnemonic`.
    entries: Vec<(&'static str, DlpAction)>,
}

impl DlpDetectors {
    /// The manifest keys, with egress-proxy's detector id for each.
    pub const KEYS: &'static [(&'static str, &'static str)] = &[
        ("payment_card", "payment-card"),
        ("iban", "iban"),
        ("crypto_private_key", "crypto-private-key"),
        ("bip39_mnemonic", "bip39-mnemonic"),
    ];

    /// `(manifest key, action)` of every detector turned on.
    pub fn entries(&self) -> &[(&'static str, DlpAction)] {
        &self.entries
    }

    /// egress-proxy's `--dlp-detector` values (`payment-card=block`).
    pub fn flag_values(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|(key, action)| {
                let id = Self::KEYS.iter().find(|(k, _)| k == key)?.1;
                Some(format!("{id}={}", action.as_str()))
            })
            .collect()
    }
}

/// Credential injection for a manifest route: which of the operator's
/// environment variables holds the token, and how it is presented.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EgressAuth {
    scheme: Option<AuthScheme>,
    header: Option<String>,
    token_ref: String,
}

impl EgressAuth {
    /// `Authorization` scheme; `None` when `header` is used.
    pub fn scheme(&self) -> Option<AuthScheme> {
        self.scheme
    }
    /// Custom header (lowercase) receiving the raw token.
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }
    /// The operator's host environment variable holding the secret.
    pub fn token_ref(&self) -> &str {
        &self.token_ref
    }
}

/// One `bottle.egress.routes[]` entry as written in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EgressRoute {
    host: HostPattern,
    path_allowlist: Vec<PathPrefix>,
    auth: Option<EgressAuth>,
    roles: Vec<Role>,
    ports: Vec<u16>,
    allow_private: bool,
}

impl EgressRoute {
    /// The host pattern.
    pub fn host(&self) -> &HostPattern {
        &self.host
    }
    /// Allowed path prefixes; empty means every path.
    pub fn path_allowlist(&self) -> &[PathPrefix] {
        &self.path_allowlist
    }
    /// Credential injection, if any.
    pub fn auth(&self) -> Option<&EgressAuth> {
        self.auth.as_ref()
    }
    /// Roles.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }
    /// Ports TLS requests may target (default `[443]`).
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }
    /// Whether the upstream may resolve to a non-global address.
    pub fn allow_private(&self) -> bool {
        self.allow_private
    }
}

/// `bottle.egress`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Egress {
    allowlist: Vec<HostPattern>,
    routes: Vec<EgressRoute>,
    dlp_action: DlpAction,
    allow_ip_literals: bool,
    injection_action: InjectionAction,
    dlp_detectors: DlpDetectors,
}

impl Default for Egress {
    fn default() -> Self {
        Self {
            allowlist: Vec::new(),
            routes: Vec::new(),
            dlp_action: DlpAction::Block,
            allow_ip_literals: false,
            injection_action: InjectionAction::Warn,
            dlp_detectors: DlpDetectors::default(),
        }
    }
}

impl Egress {
    /// Bare-pass hosts the operator added (deduplicated, in order).
    pub fn allowlist(&self) -> &[HostPattern] {
        &self.allowlist
    }
    /// The manifest's routes, in order.
    pub fn routes(&self) -> &[EgressRoute] {
        &self.routes
    }
    /// What DLP does with a finding.
    pub fn dlp_action(&self) -> DlpAction {
        self.dlp_action
    }
    /// Whether IP literals were allowed in hosts.
    pub fn allow_ip_literals(&self) -> bool {
        self.allow_ip_literals
    }
    /// What response inspection does with a prompt-injection finding.
    pub fn injection_action(&self) -> InjectionAction {
        self.injection_action
    }
    /// The opt-in checksummed DLP detectors turned on, with their actions.
    pub fn dlp_detectors(&self) -> &DlpDetectors {
        &self.dlp_detectors
    }
}

/// Credentials for a git remote: the operator's env var and the username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitAuth {
    token_ref: String,
    username: String,
}

impl GitAuth {
    /// The operator's host environment variable holding the token.
    pub fn token_ref(&self) -> &str {
        &self.token_ref
    }
    /// The username presented with the token.
    pub fn username(&self) -> &str {
        &self.username
    }
}

/// One `bottle.git[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitRemote {
    name: RemoteName,
    upstream: String,
    auth: Option<GitAuth>,
    branches: BranchRules,
}

impl GitRemote {
    /// Served by git-gate at `/<name>.git`.
    pub fn name(&self) -> &RemoteName {
        &self.name
    }
    /// The real upstream URL.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }
    /// Credentials, if any.
    pub fn auth(&self) -> Option<&GitAuth> {
        self.auth.as_ref()
    }
    /// Push rules.
    pub fn branches(&self) -> &BranchRules {
        &self.branches
    }
}

/// One environment variable the agent container gets because of a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentEnvVar {
    /// Variable name.
    pub name: &'static str,
    /// Its (never secret) value.
    pub value: &'static str,
}

/// A validated `bottle:` section and everything derived from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bottle {
    egress: Egress,
    git: Vec<GitRemote>,
    supervise: bool,
    pipelock: bool,
    token_slots: Vec<TokenSlot>,
    routes: RouteTable,
    git_token_slots: Vec<TokenSlot>,
    remotes: RemotesFile,
    limits: Limits,
    workspace: WorkspaceMode,
}

impl Bottle {
    /// `bottle.limits`: the agent container's memory and pids limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }
    /// `bottle.workspace`: how `--cwd` reaches the agent (default protect).
    pub fn workspace(&self) -> WorkspaceMode {
        self.workspace
    }
    /// `bottle.egress`.
    pub fn egress(&self) -> &Egress {
        &self.egress
    }
    /// `bottle.git`.
    pub fn git(&self) -> &[GitRemote] {
        &self.git
    }
    /// Whether the supervise MCP sidecar runs (default true).
    pub fn supervise(&self) -> bool {
        self.supervise
    }
    /// Whether the pipelock sidecar runs (default false).
    pub fn pipelock(&self) -> bool {
        self.pipelock
    }

    /// One `EGRESS_TOKEN_<n>` slot per distinct `token_ref` in
    /// `egress.routes`, in declaration order.
    pub fn token_slots(&self) -> &[TokenSlot] {
        &self.token_slots
    }

    /// The effective route table: Claude Code default hosts, then
    /// `egress.allowlist` as bare routes, then `egress.routes` (a manifest
    /// route replaces an earlier entry with the same host).
    pub fn effective_routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The routes file egress-proxy loads (`effective_routes().render()`).
    pub fn routes_file(&self) -> String {
        self.routes.render()
    }

    /// One `GIT_GATE_TOKEN_<n>` slot per distinct git `token_ref`, in
    /// declaration order.
    pub fn git_token_slots(&self) -> &[TokenSlot] {
        &self.git_token_slots
    }

    /// The remotes file git-gate loads.
    pub fn remotes_file(&self) -> &RemotesFile {
        &self.remotes
    }

    /// Hosts egress-proxy does not scan for secrets: their request bodies
    /// are conversation text (prompts, and the files the agent reads), which
    /// would trip the rules all day. Claude Code's default hosts and the
    /// host of every route that carries a role, deduplicated, in order.
    pub fn dlp_exempt_hosts(&self) -> Vec<HostPattern> {
        let mut out = effective::claude_code_default_hosts();
        for r in self.egress.routes.iter().filter(|r| !r.roles().is_empty()) {
            if !out.contains(r.host()) {
                out.push(r.host().clone());
            }
        }
        out
    }

    /// Variables the agent container gets because of route roles (see
    /// [`effective::agent_env`]). Names and values are never secret.
    pub fn agent_env(&self) -> Vec<AgentEnvVar> {
        effective::agent_env(&self.routes)
    }

    /// Builds a bottle from validated parts, deriving the rest. Fails only
    /// on cross-field conflicts the parser reports with a position.
    fn assemble(
        egress: Egress,
        git: Vec<GitRemote>,
        supervise: bool,
        pipelock: bool,
    ) -> Result<Self, String> {
        let token_slots = effective::egress_token_slots(&egress.routes);
        let routes = effective::effective_routes(&egress.allowlist, &egress.routes, &token_slots)
            .map_err(|e| e.to_string())?;
        let git_token_slots = effective::git_token_slots(&git);
        let remotes = effective::remotes_file(&git, &git_token_slots)?;
        Ok(Self {
            egress,
            git,
            supervise,
            pipelock,
            token_slots,
            routes,
            git_token_slots,
            remotes,
            limits: Limits::default(),
            workspace: WorkspaceMode::default(),
        })
    }
}

impl Default for Bottle {
    /// The bottle of an agent that has no `bottle:` key: Claude Code
    /// defaults only, supervise on, pipelock off.
    fn default() -> Self {
        // Cannot fail: no routes, no remotes.
        Self::assemble(Egress::default(), Vec::new(), true, false).unwrap_or_else(|_| Self {
            egress: Egress::default(),
            git: Vec::new(),
            supervise: true,
            pipelock: false,
            token_slots: Vec::new(),
            routes: RouteTable::default(),
            git_token_slots: Vec::new(),
            remotes: RemotesFile::default(),
            limits: Limits::default(),
            workspace: WorkspaceMode::default(),
        })
    }
}

const BOTTLE_KEYS: &[&str] = &[
    "egress",
    "git",
    "supervise",
    "pipelock",
    "limits",
    "workspace",
];
const EGRESS_KEYS: &[&str] = &[
    "allowlist",
    "routes",
    "dlp_action",
    "allow_ip_literals",
    "injection_action",
    "dlp_detectors",
];
const ROUTE_KEYS: &[&str] = &[
    "host",
    "path_allowlist",
    "auth",
    "role",
    "ports",
    "allow_private",
];
const AUTH_KEYS: &[&str] = &["scheme", "token_ref", "header"];
const GIT_KEYS: &[&str] = &["name", "upstream", "auth", "branches"];
const GIT_AUTH_KEYS: &[&str] = &["token_ref", "username"];

const TOKEN_ENV_RECIPE: &str = "`token_env` is assigned by the launcher (EGRESS_TOKEN_<n>); in a manifest name the operator's environment variable that holds the secret with token_ref, e.g. token_ref: GITHUB_TOKEN";
const ROLES_RECIPE: &str =
    "use `role` (a role name or a list of them) in a manifest; `roles` is the routes-file spelling";

/// The migration recipe for a route in the predecessor's flat form
/// (`auth_scheme`, `token_ref`, `auth_header` on the route itself), with
/// the route's own values moved under `auth`.
fn flat_auth_recipe(route: &Node) -> String {
    let text = |key: &str| match &route.value {
        Value::Map(entries) => entries
            .iter()
            .find_map(|(k, v)| match (&k.value, &v.value) {
                (Value::Str(k), Value::Str(v)) if k == key => Some(v.clone()),
                _ => None,
            }),
        _ => None,
    };
    // `header` (a raw token) and `scheme` exclude each other.
    let mut parts = vec![match text("auth_header") {
        Some(h) => format!("header: {h}"),
        None => format!(
            "scheme: {}",
            text("auth_scheme").unwrap_or_else(|| "Bearer".into())
        ),
    }];
    parts.push(format!(
        "token_ref: {}",
        text("token_ref").unwrap_or_else(|| "GITHUB_TOKEN".into())
    ));
    format!(
        "`auth_scheme`, `token_ref` and `auth_header` directly on a route are the predecessor's flat form; move them under `auth`: `auth: {{{}}}` (see docs/manifest.md, \"Migrating\")",
        parts.join(", ")
    )
}

/// Parses a `bottle:` mapping. Returns `None` when anything inside was
/// invalid (every problem is recorded in `c`).
pub(crate) fn parse_bottle(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<Bottle> {
    if matches!(node.value, Value::Null) {
        return Some(Bottle::default());
    }
    let before = c.count();
    let m = c.map(path, node, BOTTLE_KEYS, LEGACY_KEYS)?;
    let egress = match m.get("egress") {
        Some(n) => parse_egress(c, &path.key("egress"), n),
        None => Some(Egress::default()),
    };
    let git = match m.get("git") {
        Some(n) => parse_git(c, &path.key("git"), n),
        None => Vec::new(),
    };
    let supervise = m
        .get("supervise")
        .map_or(Some(true), |n| c.boolean(&path.key("supervise"), n));
    let pipelock = m
        .get("pipelock")
        .map_or(Some(false), |n| parse_pipelock(c, &path.key("pipelock"), n));
    let limits = m.get("limits").map_or(Some(Limits::default()), |n| {
        parse_limits(c, &path.key("limits"), n)
    });
    let workspace = m
        .get("workspace")
        .map_or(Some(WorkspaceMode::default()), |n| {
            parse_workspace(c, &path.key("workspace"), n)
        });
    if c.count() != before {
        return None;
    }
    match Bottle::assemble(egress?, git, supervise?, pipelock?) {
        Ok(mut b) => {
            b.limits = limits?;
            b.workspace = workspace?;
            Some(b)
        }
        Err(e) => {
            c.error(path, node, e);
            None
        }
    }
}

fn parse_pipelock(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<bool> {
    match &node.value {
        Value::Bool(b) => Some(*b),
        other => {
            c.error(
                path,
                node,
                format!(
                    "expected true or false (whether the pipelock DLP sidecar runs), found {}",
                    other.kind()
                ),
            );
            None
        }
    }
}

fn parse_egress(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<Egress> {
    if matches!(node.value, Value::Null) {
        return Some(Egress::default());
    }
    let before = c.count();
    let m = c.map(path, node, EGRESS_KEYS, &[])?;
    let allow_ip_literals = m
        .get("allow_ip_literals")
        .and_then(|n| c.boolean(&path.key("allow_ip_literals"), n))
        .unwrap_or(false);
    let ip = if allow_ip_literals {
        IpLiterals::Allow
    } else {
        IpLiterals::Reject
    };
    let dlp_action = m
        .get("dlp_action")
        .and_then(|n| parse_dlp_action(c, &path.key("dlp_action"), n))
        .unwrap_or(DlpAction::Block);
    let injection_action = m
        .get("injection_action")
        .and_then(|n| parse_injection_action(c, &path.key("injection_action"), n))
        .unwrap_or_default();
    let dlp_detectors = m
        .get("dlp_detectors")
        .and_then(|n| parse_dlp_detectors(c, &path.key("dlp_detectors"), n))
        .unwrap_or_default();
    let mut allowlist: Vec<HostPattern> = Vec::new();
    if let Some(n) = m.get("allowlist") {
        let p = path.key("allowlist");
        if let Some(items) = c.seq(&p, n, "host names") {
            for (i, item) in items.iter().enumerate() {
                let ip_path = p.index(i);
                if let Some(h) = parse_host(c, &ip_path, item, ip)
                    && !allowlist.contains(&h)
                {
                    allowlist.push(h);
                }
            }
        }
    }
    let mut routes: Vec<EgressRoute> = Vec::new();
    if let Some(n) = m.get("routes") {
        let p = path.key("routes");
        if let Some(items) = c.seq(&p, n, "routes") {
            // (index, host) of earlier routes, and of the first oauth route.
            let mut seen: Vec<(usize, HostPattern)> = Vec::new();
            let mut oauth_at: Option<usize> = None;
            for (i, item) in items.iter().enumerate() {
                let rp = p.index(i);
                let Some(route) = parse_route(c, &rp, item, ip) else {
                    continue;
                };
                if let Some((j, _)) = seen.iter().find(|(_, h)| *h == route.host) {
                    c.error(
                        &rp.key("host"),
                        item,
                        format!(
                            "host {:?} already has a route at {}; hosts must be unique, merge the two routes into one",
                            route.host.as_str(),
                            p.index(*j)
                        ),
                    );
                    continue;
                }
                if route.roles.contains(&Role::ClaudeCodeOauth) {
                    if let Some(j) = oauth_at {
                        c.error(
                            &rp.key("role"),
                            item,
                            format!(
                                "role claude_code_oauth is already on {}; at most one route per bottle may carry it",
                                p.index(j)
                            ),
                        );
                        continue;
                    }
                    oauth_at = Some(i);
                }
                seen.push((i, route.host.clone()));
                routes.push(route);
            }
        }
    }
    if c.count() != before {
        return None;
    }
    Some(Egress {
        allowlist,
        routes,
        dlp_action,
        allow_ip_literals,
        injection_action,
        dlp_detectors,
    })
}

fn parse_injection_action(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<InjectionAction> {
    // YAML 1.1 reads a bare `off` as false.
    if matches!(node.value, Value::Bool(false)) {
        return Some(InjectionAction::Off);
    }
    let s = c.string(path, node, "an injection action")?;
    match s {
        "off" => Some(InjectionAction::Off),
        "warn" => Some(InjectionAction::Warn),
        "block" => Some(InjectionAction::Block),
        "annotate" => Some(InjectionAction::Annotate),
        other => {
            c.error(
                path,
                node,
                format!(
                    "unknown injection_action {other:?}; expected off, warn, block or annotate"
                ),
            );
            None
        }
    }
}

fn parse_dlp_detectors(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<DlpDetectors> {
    if matches!(node.value, Value::Null) {
        return Some(DlpDetectors::default());
    }
    let keys: Vec<&str> = DlpDetectors::KEYS.iter().map(|(k, _)| *k).collect();
    let m = c.map(path, node, &keys, &[])?;
    let mut entries = Vec::new();
    for (key, _) in DlpDetectors::KEYS {
        let Some(n) = m.get(key) else { continue };
        let p = path.key(key);
        if matches!(n.value, Value::Bool(false)) {
            continue; // a bare `off`
        }
        let Some(s) = c.string(&p, n, "a detector action") else {
            continue;
        };
        match s {
            "off" => {}
            "warn" => entries.push((*key, DlpAction::Warn)),
            "block" => entries.push((*key, DlpAction::Block)),
            other => c.error(
                &p,
                n,
                format!("unknown action {other:?} for detector {key}; expected off, warn or block"),
            ),
        }
    }
    Some(DlpDetectors { entries })
}

fn parse_dlp_action(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<DlpAction> {
    let s = c.string(path, node, "a DLP action")?;
    match s {
        "block" => Some(DlpAction::Block),
        "warn" => Some(DlpAction::Warn),
        other => {
            c.error(
                path,
                node,
                format!("unknown dlp_action {other:?}; expected block or warn"),
            );
            None
        }
    }
}

fn parse_host(c: &mut Checker, path: &KeyPath, node: &Node, ip: IpLiterals) -> Option<HostPattern> {
    let s = c.string(path, node, "a host name")?;
    HostPattern::parse(s, ip)
        .map_err(|e| c.error(path, node, e.to_string()))
        .ok()
}

/// True when `node` (a mapping) has an unknown key that is a likely typo of
/// `key`; the typo was already reported with a "did you mean", so a second
/// "missing key" diagnostic would only repeat it.
fn misspelled(node: &Node, allowed: &[&str], key: &str) -> bool {
    let Value::Map(entries) = &node.value else {
        return false;
    };
    entries.iter().any(|(k, _)| match &k.value {
        Value::Str(s) => !allowed.contains(&s.as_str()) && did_you_mean(s, allowed) == Some(key),
        _ => false,
    })
}

/// `m.require(...)` unless the key is present under a misspelling.
pub(crate) fn required<'n>(
    c: &mut Checker,
    m: &MapView<'n>,
    (path, node): (&KeyPath, &Node),
    allowed: &[&str],
    key: &str,
    what: &str,
) -> Option<&'n Node> {
    if m.get(key).is_none() && misspelled(node, allowed, key) {
        return None;
    }
    m.require(c, path, node, key, what)
}

fn parse_route(
    c: &mut Checker,
    path: &KeyPath,
    node: &Node,
    ip: IpLiterals,
) -> Option<EgressRoute> {
    let flat = flat_auth_recipe(node);
    let m = c.map(
        path,
        node,
        ROUTE_KEYS,
        &[
            ("roles", ROLES_RECIPE),
            ("auth_scheme", &flat),
            ("token_ref", &flat),
            ("auth_header", &flat),
        ],
    )?;
    let before = c.count();
    let host = required(
        c,
        &m,
        (path, node),
        ROUTE_KEYS,
        "host",
        "the host this route covers, e.g. api.github.com or *.github.com",
    )
    .and_then(|h| parse_host(c, &path.key("host"), h, ip));
    let path_allowlist = m
        .get("path_allowlist")
        .map(|n| parse_path_allowlist(c, &path.key("path_allowlist"), n))
        .unwrap_or_default();
    let auth = m
        .get("auth")
        .and_then(|n| parse_auth(c, &path.key("auth"), n));
    let roles = m
        .get("role")
        .map(|n| parse_roles(c, &path.key("role"), n))
        .unwrap_or_default();
    let ports = m
        .get("ports")
        .map(|n| parse_ports(c, &path.key("ports"), n))
        .unwrap_or_else(|| DEFAULT_PORTS.to_vec());
    let allow_private = m
        .get("allow_private")
        .and_then(|n| c.boolean(&path.key("allow_private"), n))
        .unwrap_or(false);
    if c.count() != before {
        return None;
    }
    if roles.contains(&Role::ClaudeCodeOauth) && auth.is_none() {
        c.error(
            &path.key("role"),
            node,
            "role claude_code_oauth marks the route that injects Claude Code's OAuth token, so it needs auth (e.g. auth: {scheme: Bearer, token_ref: CLAUDE_CODE_OAUTH_TOKEN})",
        );
        return None;
    }
    Some(EgressRoute {
        host: host?,
        path_allowlist,
        auth,
        roles,
        ports,
        allow_private,
    })
}

fn parse_token_ref(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<String> {
    let s = c.string(path, node, "an environment variable name")?;
    if valid_env_name(s) {
        Some(s.to_owned())
    } else {
        c.error(
            path,
            node,
            format!(
                "token_ref {s:?} is not an environment variable name; expected letters, digits and _ not starting with a digit (e.g. GITHUB_TOKEN); it names the operator's variable holding the secret, never the secret itself"
            ),
        );
        None
    }
}

fn parse_auth(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<EgressAuth> {
    let m = c.map(path, node, AUTH_KEYS, &[("token_env", TOKEN_ENV_RECIPE)])?;
    let before = c.count();
    let scheme = m
        .get("scheme")
        .and_then(|n| parse_scheme(c, &path.key("scheme"), n));
    let header = m
        .get("header")
        .and_then(|n| parse_header_name(c, &path.key("header"), n));
    let token_ref = required(
        c,
        &m,
        (path, node),
        AUTH_KEYS,
        "token_ref",
        "the operator's environment variable holding the token, e.g. GITHUB_TOKEN",
    )
    .and_then(|n| parse_token_ref(c, &path.key("token_ref"), n));
    let (has_scheme, has_header) = (m.get("scheme").is_some(), m.get("header").is_some());
    let typo = misspelled(node, AUTH_KEYS, "scheme") || misspelled(node, AUTH_KEYS, "header");
    if has_scheme || has_header || !typo {
        check_scheme_header(c, path, node, has_scheme, has_header);
    }
    if c.count() != before {
        return None;
    }
    Some(EgressAuth {
        scheme,
        header,
        token_ref: token_ref?,
    })
}

fn parse_git(c: &mut Checker, path: &KeyPath, node: &Node) -> Vec<GitRemote> {
    let Some(items) = c.seq(path, node, "git remotes") else {
        return Vec::new();
    };
    let mut out: Vec<(usize, GitRemote)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let rp = path.index(i);
        let Some(remote) = parse_git_remote(c, &rp, item) else {
            continue;
        };
        if let Some((j, _)) = out.iter().find(|(_, r)| r.name == remote.name) {
            c.error(
                &rp.key("name"),
                item,
                format!(
                    "remote name {:?} is already used by {}; names must be unique (each becomes http://git-gate/<name>.git)",
                    remote.name.as_str(),
                    path.index(*j)
                ),
            );
            continue;
        }
        out.push((i, remote));
    }
    out.into_iter().map(|(_, r)| r).collect()
}

fn parse_git_remote(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<GitRemote> {
    let m = c.map(path, node, GIT_KEYS, &[])?;
    let before = c.count();
    let name = required(
        c,
        &m,
        (path, node),
        GIT_KEYS,
        "name",
        "the remote's name, e.g. app",
    )
    .and_then(|n| {
        let p = path.key("name");
        let s = c.string(&p, n, "a remote name")?;
        RemoteName::parse(s).map_err(|e| c.error(&p, n, e)).ok()
    });
    let upstream = required(
        c,
        &m,
        (path, node),
        GIT_KEYS,
        "upstream",
        "the upstream URL, e.g. https://github.com/acme/app.git",
    )
    .and_then(|n| {
        let p = path.key("upstream");
        let s = c.string(&p, n, "an upstream URL")?;
        check_upstream_url(s).map_err(|e| c.error(&p, n, e)).ok()
    });
    let auth = m.get("auth").and_then(|n| {
        let p = path.key("auth");
        let am = c.map(&p, n, GIT_AUTH_KEYS, &[("token_env", TOKEN_ENV_RECIPE)])?;
        let token_ref = required(
            c,
            &am,
            (&p, n),
            GIT_AUTH_KEYS,
            "token_ref",
            "the operator's environment variable holding the token",
        )
        .and_then(|t| parse_token_ref(c, &p.key("token_ref"), t));
        let username = match am.get("username") {
            Some(u) => c
                .non_empty_string(&p.key("username"), u, "a username")
                .map(str::to_owned),
            None => Some(DEFAULT_GIT_USERNAME.to_owned()),
        };
        Some(GitAuth {
            token_ref: token_ref?,
            username: username?,
        })
    });
    let branches = m
        .get("branches")
        .map(|n| parse_branch_rules(c, &path.key("branches"), n))
        .unwrap_or_default();
    if c.count() != before {
        return None;
    }
    Some(GitRemote {
        name: name?,
        upstream: upstream?,
        auth,
        branches,
    })
}

#[cfg(test)]
mod tests;
