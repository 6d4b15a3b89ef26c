//! How git-gate's git children reach an upstream: the URL plus credentials
//! and TLS settings passed as `GIT_CONFIG_*` environment variables, never in
//! argv (visible in `ps`), the URL, logs or the mirror's config file.

use std::fmt;
use std::path::{Path, PathBuf};

use manifest::remotes::Remote;

/// A token. `Debug` prints `Secret(***)`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The token, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One upstream as git children see it.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The upstream URL (never carries credentials).
    pub url: String,
    /// Basic-auth username and token.
    pub auth: Option<(String, Secret)>,
    /// Extra CA bundle to trust for the upstream's TLS.
    pub ca: Option<PathBuf>,
}

impl Upstream {
    /// Builds the upstream for `remote`, looking its token up with `lookup`.
    pub fn for_remote(
        remote: &Remote,
        ca: Option<PathBuf>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let auth = match &remote.auth {
            None => None,
            Some(a) => match lookup(&a.token_env) {
                Some(t) if !t.is_empty() => Some((a.username.clone(), Secret::new(t))),
                _ => {
                    return Err(format!(
                        "remote {:?}: auth.token_env {} is not set (or empty) in git-gate's environment; set it to the upstream token",
                        remote.name.as_str(),
                        a.token_env
                    ));
                }
            },
        };
        Ok(Self {
            url: remote.upstream.clone(),
            auth,
            ca,
        })
    }

    /// Environment for a git child talking to this upstream: credentials as
    /// an `Authorization` extra header, no redirects (the header must not
    /// follow one to another host), no prompts, no credential helpers.
    pub fn git_env(&self) -> Vec<(String, String)> {
        let mut cfg: Vec<(&str, String)> = vec![
            ("http.followRedirects", "false".into()),
            ("credential.helper", String::new()),
            ("http.sslVerify", "true".into()),
        ];
        if let Some((user, token)) = &self.auth {
            cfg.push((
                "http.extraHeader",
                format!(
                    "Authorization: Basic {}",
                    base64(format!("{user}:{}", token.expose()).as_bytes())
                ),
            ));
        }
        if let Some(ca) = &self.ca {
            cfg.push(("http.sslCAInfo", ca.display().to_string()));
        }
        let mut env = vec![
            ("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned()),
            ("GIT_CONFIG_COUNT".to_owned(), cfg.len().to_string()),
        ];
        for (i, (k, v)) in cfg.into_iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{i}"), k.to_owned()));
            env.push((format!("GIT_CONFIG_VALUE_{i}"), v));
        }
        env
    }

    /// Removes the token (and its encoded header form) from text that is
    /// about to be shown to the agent or logged; belt and braces, since git
    /// never prints the header.
    pub fn scrub(&self, text: &str) -> String {
        match &self.auth {
            Some((user, token)) if !token.expose().is_empty() => {
                let header = base64(format!("{user}:{}", token.expose()).as_bytes());
                text.replace(token.expose(), "***").replace(&header, "***")
            }
            _ => text.to_owned(),
        }
    }
}

/// Where distributions keep the system's CA bundle (Debian and Ubuntu,
/// Fedora and RHEL, Alpine); the first that exists is used.
pub const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Writes to `out` the CA bundle git trusts for upstreams: the system roots
/// followed by `extra` (`--upstream-ca`). git's `http.sslCAInfo` replaces
/// the default bundle rather than adding to it, so the gate hands it both.
pub fn write_trust_bundle(extra: &Path, out: &Path) -> Result<(), String> {
    let extra_pem =
        std::fs::read(extra).map_err(|e| format!("--upstream-ca {}: {e}", extra.display()))?;
    if !extra_pem
        .windows(27)
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(format!(
            "--upstream-ca {}: no PEM certificate in it; expected one or more -----BEGIN CERTIFICATE----- blocks",
            extra.display()
        ));
    }
    let same = |p: &Path| p.canonicalize().ok() == extra.canonicalize().ok();
    let mut bundle = SYSTEM_CA_BUNDLES
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .filter(|p| !same(p))
        .and_then(|p| std::fs::read(p).ok())
        .unwrap_or_default();
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(&extra_pem);
    std::fs::write(out, bundle).map_err(|e| format!("writing {}: {e}", out.display()))
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests;
