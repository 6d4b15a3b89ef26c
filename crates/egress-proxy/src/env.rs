//! Where token values come from: the environment (or token files, see
//! [`TokenDir`]), through a small trait so tests pass a map instead of
//! mutating the process environment.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A source of environment variables.
pub trait Env: Send + Sync + fmt::Debug {
    /// The value of `name`, or `None` when it is unset or not valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed map, for tests and embedding.
#[derive(Clone, Default)]
pub struct MapEnv(HashMap<String, String>);

impl MapEnv {
    /// An environment holding exactly these pairs.
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl fmt::Debug for MapEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be tokens: print the names only.
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        f.debug_tuple("MapEnv").field(&names).finish()
    }
}

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Token files in a directory, over another source: `var(NAME)` is the
/// content of `DIR/NAME` when that file exists (one trailing newline
/// dropped), else the inner source's value. The launcher writes a file here
/// when the operator approves a route with a credential the container was
/// not started with; a reload then reads it, no restart needed.
#[derive(Debug)]
pub struct TokenDir {
    dir: PathBuf,
    inner: Arc<dyn Env>,
}

impl TokenDir {
    /// Files in `dir`, falling back to `inner`.
    pub fn new(dir: PathBuf, inner: Arc<dyn Env>) -> Self {
        Self { dir, inner }
    }
}

impl Env for TokenDir {
    fn var(&self, name: &str) -> Option<String> {
        // Slot names only: never a path.
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if plain {
            let path = self.dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(mut v) => {
                    if v.ends_with('\n') {
                        v.pop();
                        if v.ends_with('\r') {
                            v.pop();
                        }
                    }
                    return Some(v);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    // The name and the error, never the content.
                    tracing::warn!(file = %path.display(), error = %e, "cannot read token file; using the environment");
                }
            }
        }
        self.inner.var(name)
    }
}

/// A token value. `Debug` prints `Secret(***)`; there is no `Display` and no
/// `Serialize`, so a token cannot end up in a log line or a JSON answer by
/// accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The raw value, for building the injected header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
