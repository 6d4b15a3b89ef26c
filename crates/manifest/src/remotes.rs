//! The remotes file: the git remotes git-gate brokers, rendered by the
//! launcher from `bottle.git` and loaded by git-gate. Like the routes file it
//! never holds a secret: a remote with auth names the slot variable
//! (`GIT_GATE_TOKEN_<n>`) that carries the token in git-gate's environment.
//!
//! ```yaml
//! version: 1
//! remotes:
//!   - name: app
//!     upstream: https://github.com/acme/app.git
//!     auth: { username: x-access-token, token_env: GIT_GATE_TOKEN_1 }
//!     branches: { allow: ["*"], protected: [main] }
//! ```

use std::fmt;

use crate::error::ManifestError;
use crate::yaml::{Checker, KeyPath, Node, Value, parse_document};

/// The remotes-file format version.
pub const REMOTES_FILE_VERSION: u64 = 1;

/// Prefix of git-gate's token slot variables.
pub const GIT_TOKEN_ENV_PREFIX: &str = "GIT_GATE_TOKEN_";

/// Default username presented with a token (GitHub's convention; GitLab
/// accepts any username with a token).
pub const DEFAULT_GIT_USERNAME: &str = "x-access-token";

/// A remote name: `[a-z0-9][a-z0-9._-]*`, at most 64 bytes; it becomes the
/// URL path `/<name>.git` and a directory name, so nothing else is allowed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteName(String);

impl RemoteName {
    /// Validates a remote name.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && !s.ends_with(".git")
            && !s.contains("..");
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "invalid remote name {s:?}; expected lowercase letters, digits, '.', '_' and '-' (starting with a letter or digit, no \"..\", not ending in .git, at most 64 bytes)"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RemoteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A ref pattern: `*` matches any run of characters (including `/`).
/// A pattern starting with `refs/` matches full ref names; any other pattern
/// matches branch names (`refs/heads/` stripped), so `main` and `feature/*`
/// read naturally and tags are only pushable through an explicit
/// `refs/tags/*` pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RefPattern(String);

impl RefPattern {
    /// Validates a pattern.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = s.is_empty()
            || s.contains("..")
            || s.bytes()
                .any(|b| b.is_ascii_control() || b" ~^:?[\\".contains(&b))
            || s.starts_with('/')
            || s.ends_with('/');
        if bad {
            Err(format!(
                "invalid ref pattern {s:?}; expected a branch name or glob such as main, feature/* or refs/tags/v*"
            ))
        } else {
            Ok(Self(s.to_owned()))
        }
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the full ref name (`refs/heads/main`) matches.
    pub fn matches(&self, full_ref: &str) -> bool {
        let subject = if self.0.starts_with("refs/") {
            full_ref
        } else {
            match full_ref.strip_prefix("refs/heads/") {
                Some(branch) => branch,
                None => return false,
            }
        };
        glob(self.0.as_bytes(), subject.as_bytes())
    }
}

/// `*`-only glob, iterative (no backtracking blow-up).
fn glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while i < s.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = i;
            p += 1;
        } else if p < pat.len() && pat[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// Which refs a push may update, and which may not be rewritten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchRules {
    /// Refs a push may create or update. Default: every branch (`*`).
    pub allow: Vec<RefPattern>,
    /// Refs that may never be force-pushed (non-fast-forward). Deletes are
    /// refused everywhere.
    pub protected: Vec<RefPattern>,
}

impl Default for BranchRules {
    fn default() -> Self {
        Self {
            allow: vec![RefPattern("*".into())],
            protected: Vec::new(),
        }
    }
}

impl BranchRules {
    /// Whether a push may touch `full_ref` at all.
    pub fn allows(&self, full_ref: &str) -> bool {
        self.allow.iter().any(|p| p.matches(full_ref))
    }

    /// Whether `full_ref` is protected against non-fast-forward updates.
    pub fn is_protected(&self, full_ref: &str) -> bool {
        self.protected.iter().any(|p| p.matches(full_ref))
    }
}

/// Credentials for a remote, as git-gate sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteAuth {
    /// Username sent with the token (HTTP basic auth).
    pub username: String,
    /// The slot variable holding the token (`GIT_GATE_TOKEN_<n>`).
    pub token_env: String,
}

/// One brokered remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// Served at `/<name>.git`.
    pub name: RemoteName,
    /// The real upstream URL (`https://…`; `http://` is accepted for local
    /// and test upstreams). Never carries credentials.
    pub upstream: String,
    /// Credentials, if the upstream needs them.
    pub auth: Option<RemoteAuth>,
    /// Push rules.
    pub branches: BranchRules,
}

/// A validated remotes file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemotesFile {
    remotes: Vec<Remote>,
}

impl RemotesFile {
    /// Builds a remotes file, refusing duplicate names.
    pub fn new(remotes: Vec<Remote>) -> Result<Self, String> {
        let mut seen = std::collections::HashSet::new();
        for r in &remotes {
            if !seen.insert(r.name.as_str()) {
                return Err(format!(
                    "remote name {:?} appears more than once; names must be unique",
                    r.name.as_str()
                ));
            }
        }
        Ok(Self { remotes })
    }

    /// The remotes in file order.
    pub fn remotes(&self) -> &[Remote] {
        &self.remotes
    }

    /// The remote called `name`.
    pub fn get(&self, name: &str) -> Option<&Remote> {
        self.remotes.iter().find(|r| r.name.as_str() == name)
    }

    /// Parses and validates a remotes file; all problems at once.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ManifestError> {
        let doc = parse_document(text, origin)?;
        let mut c = Checker::new(origin);
        let root = KeyPath::root();
        let mut remotes = Vec::new();
        if let Some(top) = c.map(&root, &doc, &["version", "remotes"], &[]) {
            match top.get("version") {
                Some(Node { value: Value::Int(n), .. }) if *n == i128::from(REMOTES_FILE_VERSION) => {}
                Some(v) => c.error(&root.key("version"), v, format!("unsupported remotes-file version; this build reads version {REMOTES_FILE_VERSION}")),
                None => c.error(&root, &doc, format!("missing required key \"version\" (expected {REMOTES_FILE_VERSION})")),
            }
            if let Some(list) = top.require(&mut c, &root, &doc, "remotes", "the list of remotes") {
                let path = root.key("remotes");
                if let Some(items) = c.seq(&path, list, "remotes") {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(r) = parse_remote(&mut c, &path.index(i), item) {
                            remotes.push(r);
                        }
                    }
                }
            }
        }
        let remotes = c.finish(remotes)?;
        Self::new(remotes).map_err(|e| ManifestError::single(origin, "remotes", e))
    }

    /// Renders as a remotes file; `parse(render(f)) == f`.
    pub fn render(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut out = format!("version: {REMOTES_FILE_VERSION}\n");
        if self.remotes.is_empty() {
            out.push_str("remotes: []\n");
            return out;
        }
        out.push_str("remotes:\n");
        for r in &self.remotes {
            out.push_str(&format!(
                "  - name: {}\n    upstream: {}\n",
                q(r.name.as_str()),
                q(&r.upstream)
            ));
            if let Some(a) = &r.auth {
                out.push_str(&format!(
                    "    auth:\n      username: {}\n      token_env: {}\n",
                    q(&a.username),
                    q(&a.token_env)
                ));
            }
            out.push_str("    branches:\n      allow: [");
            out.push_str(
                &r.branches
                    .allow
                    .iter()
                    .map(|p| q(p.as_str()))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            out.push_str("]\n      protected: [");
            out.push_str(
                &r.branches
                    .protected
                    .iter()
                    .map(|p| q(p.as_str()))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            out.push_str("]\n");
        }
        out
    }
}

fn parse_remote(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<Remote> {
    let m = c.map(path, node, &["name", "upstream", "auth", "branches"], &[])?;
    let before = c.count();
    let name = m
        .require(c, path, node, "name", "the remote's name")
        .and_then(|n| {
            let p = path.key("name");
            let s = c.string(&p, n, "a remote name")?;
            RemoteName::parse(s).map_err(|e| c.error(&p, n, e)).ok()
        });
    let upstream = m
        .require(c, path, node, "upstream", "the upstream URL")
        .and_then(|n| {
            let p = path.key("upstream");
            let s = c.string(&p, n, "an upstream URL")?;
            check_upstream_url(s).map_err(|e| c.error(&p, n, e)).ok()
        });
    let auth = m.get("auth").and_then(|n| {
        let p = path.key("auth");
        let am = c.map(&p, n, &["username", "token_env"], &[])?;
        let username = match am.get("username") {
            Some(u) => c.non_empty_string(&p.key("username"), u, "a username")?.to_owned(),
            None => DEFAULT_GIT_USERNAME.to_owned(),
        };
        let te = am.require(c, &p, n, "token_env", "the slot variable, e.g. GIT_GATE_TOKEN_1")?;
        let s = c.string(&p.key("token_env"), te, "a token slot variable")?;
        let valid = s.strip_prefix(GIT_TOKEN_ENV_PREFIX).is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
        if !valid {
            c.error(&p.key("token_env"), te, format!("token_env {s:?} is not a git-gate token slot; expected {GIT_TOKEN_ENV_PREFIX}<n>"));
            return None;
        }
        Some(RemoteAuth { username, token_env: s.to_owned() })
    });
    let branches = m
        .get("branches")
        .map(|n| parse_branch_rules(c, &path.key("branches"), n))
        .unwrap_or_default();
    if c.count() != before {
        return None;
    }
    Some(Remote {
        name: name?,
        upstream: upstream?,
        auth,
        branches,
    })
}

/// Parses `branches: {allow?, protected?}` (shared with the manifest parser).
pub(crate) fn parse_branch_rules(c: &mut Checker, path: &KeyPath, node: &Node) -> BranchRules {
    let mut rules = BranchRules::default();
    let Some(m) = c.map(path, node, &["allow", "protected"], &[]) else {
        return rules;
    };
    let patterns = |key: &str, c: &mut Checker| -> Option<Vec<RefPattern>> {
        let n = m.get(key)?;
        let p = path.key(key);
        let mut out = Vec::new();
        for (ip, item, s) in c.string_or_list(&p, n, "a ref pattern") {
            match RefPattern::parse(s) {
                Ok(r) => out.push(r),
                Err(e) => c.error(&ip, item, e),
            }
        }
        Some(out)
    };
    if let Some(allow) = patterns("allow", c) {
        rules.allow = allow;
    }
    if let Some(protected) = patterns("protected", c) {
        rules.protected = protected;
    }
    rules
}

/// Checks an upstream URL: `https://` (or `http://`), a host, a path, and no
/// userinfo, query or fragment. Returns it unchanged when valid.
pub fn check_upstream_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("upstream {s:?} must be an https:// URL (http:// only for local test upstreams); ssh and file URLs are not brokered"))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!(
            "upstream {s:?} has no host; expected e.g. https://github.com/acme/app.git"
        ));
    }
    if authority.contains('@') {
        return Err(format!(
            "upstream {s:?} carries credentials; remove user@ and set auth.token_ref instead"
        ));
    }
    if s.contains(['?', '#']) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "upstream {s:?} has a query, fragment or whitespace; expected a plain repository URL"
        ));
    }
    if rest.len() == authority.len() || rest[authority.len()..].trim_matches('/').is_empty() {
        return Err(format!(
            "upstream {s:?} has no repository path; expected e.g. https://github.com/acme/app.git"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests;
