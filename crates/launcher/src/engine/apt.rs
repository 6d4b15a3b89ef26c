//! The host's configured Debian mirror, read from its apt configuration, for
//! building the base image with debootstrap when the engine cannot pull.
//!
//! No mirror host is written anywhere in this project: the operator's apt
//! configuration is the only source. deb822 files
//! (`/etc/apt/sources.list.d/*.sources`) are read first, then the one-line
//! format (`/etc/apt/sources.list`, `*.list`).

use std::path::{Path, PathBuf};

/// Why no mirror was found.
#[derive(Debug, thiserror::Error)]
pub enum AptError {
    /// Nothing in the apt configuration serves the suite.
    #[error(
        "no Debian mirror for suite {suite:?} in the host's apt configuration (searched {searched}); add a `deb` source for {suite} (deb822 URIs:/Suites: or a sources.list line) or pass --mirror URL"
    )]
    NoMirror {
        /// The suite looked for.
        suite: String,
        /// Files searched.
        searched: String,
    },
}

/// The first `http(s)://` URI serving `suite` (type `deb`) in deb822 text.
pub fn mirror_from_deb822(text: &str, suite: &str) -> Option<String> {
    for para in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut enabled = true;
        for line in para.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let words = value.split_whitespace().map(str::to_owned);
            match key.trim().to_ascii_lowercase().as_str() {
                "types" => types.extend(words),
                "uris" => uris.extend(words),
                "suites" => suites.extend(words),
                "enabled" => enabled = !value.trim().eq_ignore_ascii_case("no"),
                _ => {}
            }
        }
        if enabled
            && types.iter().any(|t| t == "deb")
            && suites.iter().any(|s| s == suite)
            && let Some(uri) = uris.into_iter().find(|u| is_http(u))
        {
            return Some(uri);
        }
    }
    None
}

/// The first `deb [options] URI suite …` line's URI for `suite`.
pub fn mirror_from_list(text: &str, suite: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let rest = rest.trim_start();
        let rest = if rest.starts_with('[') {
            rest.split_once(']').map_or("", |(_, r)| r)
        } else {
            rest
        };
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(s)) = (words.next(), words.next())
            && s == suite
            && is_http(uri)
        {
            return Some(uri.to_owned());
        }
    }
    None
}

fn is_http(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

/// Reads the mirror for `suite` from the apt configuration under `root`
/// (`/` on a real host; a temp dir in tests).
pub fn host_mirror(root: &Path, suite: &str) -> Result<String, AptError> {
    let dir = root.join("etc/apt/sources.list.d");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "sources"))
    {
        if let Some(m) = read(f).and_then(|t| mirror_from_deb822(&t, suite)) {
            return Ok(m);
        }
    }
    let list = root.join("etc/apt/sources.list");
    let lists = std::iter::once(list.clone()).chain(
        files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "list"))
            .cloned(),
    );
    for f in lists {
        if let Some(m) = read(&f).and_then(|t| mirror_from_list(&t, suite)) {
            return Ok(m);
        }
    }
    Err(AptError::NoMirror {
        suite: suite.to_owned(),
        searched: format!(
            "{}/*.sources, {}, {}/*.list",
            dir.display(),
            list.display(),
            dir.display()
        ),
    })
}

#[cfg(test)]
mod tests;
