//! The daemon's validated configuration. `main.rs` builds it from flags and
//! environment; tests build it directly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use manifest::remotes::RemotesFile;

use crate::upstream::Upstream;

/// Default debounce between two upstream refreshes of one mirror.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Default cap on an upload-pack request and on a push's command list.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 16 << 20;
/// Default cap on a whole push request (command list plus pack).
pub const DEFAULT_MAX_PUSH_BYTES: u64 = 2 << 30;
/// Default cap on one pushed object once inflated (git's own
/// `core.bigFileThreshold`, above which it stops delta-compressing).
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 512 << 20;
/// Default cap on all of a push's objects once inflated.
pub const DEFAULT_MAX_INFLATED_BYTES: u64 = 4 << 30;
/// Default time a client has to send a request's headers.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default longest pause inside a request body.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default cap on open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Everything the daemon needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The remotes served.
    pub remotes: RemotesFile,
    /// Where the remotes file lives (the pre-receive hook re-reads it).
    pub remotes_path: PathBuf,
    /// Mirrors live in `<data_dir>/<name>.git`.
    pub data_dir: PathBuf,
    /// A gitleaks-format rule file replacing the built-in rules.
    pub rules_path: Option<PathBuf>,
    /// Extra CA bundle for upstream TLS, trusted besides the system roots.
    pub upstream_ca: Option<PathBuf>,
    /// Minimum time between two refreshes of one mirror.
    pub refresh_interval: Duration,
    /// Cap on an upload-pack request body and a push's command list.
    pub max_request_bytes: u64,
    /// Cap on a whole push request, on the wire and gzip-decoded.
    pub max_push_bytes: u64,
    /// Cap on one pushed object once inflated (a delta at its result).
    pub max_object_bytes: u64,
    /// Cap on all of a push's objects once inflated.
    pub max_inflated_bytes: u64,
    /// Time a client has to send a request's headers; then the connection
    /// is closed (also an idle keep-alive connection).
    pub header_timeout: Duration,
    /// Longest pause inside a request body before it is cut off.
    pub idle_timeout: Duration,
    /// Open client connections; one more is answered 503 and closed.
    pub max_connections: usize,
    /// The git-gate executable the mirror's pre-receive hook runs.
    pub hook_exe: PathBuf,
    /// The daemon's environment as git children may see it; [`run`] keeps
    /// only what [`child_env`] allows (PATH, HOME, LANG, TMPDIR, proxy
    /// variables, token slots) and adds [`FORCED_ENV`].
    ///
    /// [`run`]: crate::run
    pub child_env: Vec<(String, String)>,
}

impl Config {
    /// Looks a variable up in [`child_env`](Self::child_env).
    pub fn child_var(&self, name: &str) -> Option<String> {
        self.child_env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// The upstream of every remote, or every missing token at once.
    pub fn upstreams(&self) -> Result<Vec<Upstream>, String> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for r in self.remotes.remotes() {
            match Upstream::for_remote(r, self.upstream_ca.clone(), |n| self.child_var(n)) {
                Ok(u) => out.push(u),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors.join("\n"))
        }
    }

    /// The mirror directory of `name`.
    pub fn mirror_path(&self, name: &str) -> PathBuf {
        mirror_path(&self.data_dir, name)
    }
}

/// `<data>/<name>.git`.
pub fn mirror_path(data: &Path, name: &str) -> PathBuf {
    data.join(format!("{name}.git"))
}

/// Variables copied from the daemon's environment into git children, besides
/// the remotes' token slots. Left out on purpose, because each changes whom
/// git trusts, what it runs or which repository it touches: `GIT_SSL_*`,
/// `SSL_CERT_*`, `CURL_CA_BUNDLE`, `GIT_PROXY_*` (`GIT_PROXY_COMMAND` runs a
/// program, `GIT_PROXY_SSL_*` changes the proxy's trust), `GIT_CONFIG*`,
/// `GIT_EXEC_PATH`, `GIT_DIR` and the rest of git's repository variables.
/// The proxy variables stay: they route, and a tunnelled HTTPS upstream is
/// still verified end to end.
pub const PASSTHROUGH_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// Set on every git child whatever the daemon inherited: no global or
/// system git config (which could turn `http.sslVerify` off or add a CA).
pub const FORCED_ENV: &[(&str, &str)] = &[
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
];

/// The environment of git children, from the daemon's `vars`: the
/// [`PASSTHROUGH_ENV`] variables, the token slots `remotes` names, then
/// [`FORCED_ENV`]. Everything else is dropped, so `--upstream-ca` (plus
/// the system roots) is exactly what git trusts for upstreams.
pub fn child_env(
    vars: impl IntoIterator<Item = (String, String)>,
    remotes: &RemotesFile,
) -> Vec<(String, String)> {
    let token = |k: &str| {
        remotes
            .remotes()
            .iter()
            .any(|r| r.auth.as_ref().is_some_and(|a| a.token_env == k))
    };
    let mut env: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| PASSTHROUGH_ENV.contains(&k.as_str()) || token(k))
        .collect();
    env.extend(
        FORCED_ENV
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

#[cfg(test)]
mod tests;
