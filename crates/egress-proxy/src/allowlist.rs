//! The live route table: loaded from the routes file, hot-swapped on reload,
//! with the token values its routes name read from the environment.
//!
//! Invariant: a table is validated completely before it replaces the current
//! one; a failed reload leaves the old table serving and records why.
//! Requests hold an `Arc` to the table they started with, so a swap never
//! changes a decision half-way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use manifest::RouteTable;

use crate::env::{Env, Secret};

/// Why a routes file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: cannot read routes file: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(manifest::ManifestError),
}

/// One validated table plus the tokens it needs.
#[derive(Debug)]
pub struct LoadedTable {
    table: RouteTable,
    tokens: HashMap<String, Secret>,
    missing: Vec<String>,
    version: String,
    loaded_at: jiff::Timestamp,
}

impl LoadedTable {
    /// Builds a table, reading every `token_env` it names from `env`.
    pub fn new(table: RouteTable, env: &dyn Env) -> Self {
        let mut tokens = HashMap::new();
        let mut missing = Vec::new();
        for name in table.token_envs() {
            match env.var(name) {
                Some(v) if !v.is_empty() => {
                    tokens.insert(name.to_owned(), Secret::new(v));
                }
                _ => missing.push(name.to_owned()),
            }
        }
        Self {
            version: table.version_hash(),
            table,
            tokens,
            missing,
            loaded_at: jiff::Timestamp::now(),
        }
    }

    /// The validated routes.
    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// The token for a slot variable, if it was set when the table loaded.
    pub fn token(&self, token_env: &str) -> Option<&Secret> {
        self.tokens.get(token_env)
    }

    /// Slot variables the table names that were unset (or empty).
    pub fn missing_tokens(&self) -> &[String] {
        &self.missing
    }

    /// The table's content hash.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// When this table was loaded.
    pub fn loaded_at(&self) -> jiff::Timestamp {
        self.loaded_at
    }
}

#[derive(Debug, Default)]
struct ReloadStatus {
    last_error: Option<String>,
    last_attempt: Option<jiff::Timestamp>,
}

/// The routes file, its current table and the last reload's outcome.
#[derive(Debug)]
pub struct Allowlist {
    path: PathBuf,
    env: Arc<dyn Env>,
    current: RwLock<Arc<LoadedTable>>,
    status: RwLock<ReloadStatus>,
}

impl Allowlist {
    /// Loads and validates the routes file; fails if it is missing or
    /// invalid (there is no old table to fall back to yet).
    pub fn load(path: &Path, env: Arc<dyn Env>) -> Result<Self, LoadError> {
        let table = read_table(path, env.as_ref())?;
        Ok(Self {
            path: path.to_owned(),
            env,
            current: RwLock::new(Arc::new(table)),
            status: RwLock::new(ReloadStatus::default()),
        })
    }

    /// The routes file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table new requests decide on.
    pub fn current(&self) -> Arc<LoadedTable> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the file and the token variables; swaps in the new table
    /// only when it is valid. Returns the new version hash.
    pub fn reload(&self) -> Result<String, LoadError> {
        let result = read_table(&self.path, self.env.as_ref());
        let mut status = self
            .status
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        status.last_attempt = Some(jiff::Timestamp::now());
        match result {
            Ok(table) => {
                let version = table.version().to_owned();
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(table);
                status.last_error = None;
                Ok(version)
            }
            Err(e) => {
                status.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// The `/status` answer: version, load time, last reload error, and the
    /// names (never values) of token variables that are unset.
    pub fn status_json(&self) -> serde_json::Value {
        let cur = self.current();
        let status = self
            .status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        serde_json::json!({
            "version": cur.version(),
            "loaded_at": cur.loaded_at().to_string(),
            "routes": cur.table().routes().len(),
            "routes_file": self.path.display().to_string(),
            "last_reload_attempt": status.last_attempt.map(|t| t.to_string()),
            "last_reload_error": status.last_error,
            "missing_token_env": cur.missing_tokens(),
        })
    }
}

fn read_table(path: &Path, env: &dyn Env) -> Result<LoadedTable, LoadError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        file: origin.clone(),
        source,
    })?;
    let table = RouteTable::parse(&text, &origin).map_err(LoadError::Invalid)?;
    Ok(LoadedTable::new(table, env))
}

#[cfg(test)]
mod tests;
