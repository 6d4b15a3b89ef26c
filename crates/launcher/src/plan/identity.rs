//! Bottle identity and the names and labels of every Docker object a bottle
//! owns.
//!
//! An identity is `<agent-slug>-<5 random base36>`: two launches of one
//! agent never collide. Every container and network is named
//! `claude-bottle-<component>-<identity>` and carries the [`LABEL_IDENTITY`]
//! and [`LABEL_COMPONENT`] labels, so `list` and `cleanup` find them by
//! label, never by name pattern.

use std::collections::BTreeMap;
use std::fmt;

use manifest::AgentName;
use serde::Serialize;

/// Prefix of every Docker object name.
pub const NAME_PREFIX: &str = "claude-bottle";
/// Label present (value `true`) on every object the launcher creates.
pub const LABEL_MANAGED: &str = "dev.claude-bottle.managed";
/// Label holding the bottle identity.
pub const LABEL_IDENTITY: &str = "dev.claude-bottle.identity";
/// Label holding the component (`egress`, `agent`, `network-internal`, …).
pub const LABEL_COMPONENT: &str = "dev.claude-bottle.component";
/// Label holding the agent name.
pub const LABEL_AGENT: &str = "dev.claude-bottle.agent";
/// Label holding the launching process's pid (orphan detection).
pub const LABEL_LAUNCHER_PID: &str = "dev.claude-bottle.launcher-pid";

const SUFFIX_LEN: usize = 5;
const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Why a string is not an identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// Not `<agent-name>-<5 base36>`.
    #[error(
        "invalid bottle identity {0:?}; expected <agent>-<5 lowercase letters or digits>, e.g. dev-k3x9a (see `launcher list`)"
    )]
    Invalid(String),
    /// The operating system refused random bytes.
    #[error("no randomness for the bottle identity: {0}")]
    Random(String),
}

/// `<agent-slug>-<5 random base36>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Identity(String);

impl Identity {
    /// A fresh identity for `agent` (5 random base36 characters).
    pub fn mint(agent: &AgentName) -> Result<Self, IdentityError> {
        let mut bytes = [0u8; SUFFIX_LEN];
        getrandom::fill(&mut bytes).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Self::from_parts(agent, bytes))
    }

    /// The identity for `agent` with the suffix drawn from `bytes` (each byte
    /// reduced modulo 36). Deterministic, for tests and for `mint`.
    pub fn from_parts(agent: &AgentName, bytes: [u8; SUFFIX_LEN]) -> Self {
        let suffix: String = bytes
            .iter()
            .map(|b| char::from(BASE36[usize::from(*b) % 36]))
            .collect();
        Self(format!("{}-{suffix}", agent.as_str()))
    }

    /// Validates an identity typed by the operator (`stop`, `logs`, …).
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let bad = || IdentityError::Invalid(s.to_owned());
        let (agent, suffix) = s.rsplit_once('-').ok_or_else(bad)?;
        AgentName::parse(agent).map_err(|_| bad())?;
        let suffix_ok = suffix.len() == SUFFIX_LEN && suffix.bytes().all(|b| BASE36.contains(&b));
        if !suffix_ok {
            return Err(bad());
        }
        Ok(Self(s.to_owned()))
    }

    /// The identity text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The agent part.
    pub fn agent(&self) -> &str {
        self.0.rsplit_once('-').map_or(self.0.as_str(), |(a, _)| a)
    }

    /// `claude-bottle-<component>-<identity>`.
    pub fn container_name(&self, component: Component) -> String {
        format!("{NAME_PREFIX}-{}-{}", component.as_str(), self.0)
    }

    /// The `--internal` network: the agent's only network.
    pub fn internal_network(&self) -> String {
        format!("{NAME_PREFIX}-internal-{}", self.0)
    }

    /// The egress bridge: sidecars that talk to the outside.
    pub fn egress_network(&self) -> String {
        format!("{NAME_PREFIX}-egress-net-{}", self.0)
    }

    /// Labels for an object of this bottle.
    pub fn labels(&self, agent: &str, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_IDENTITY.to_owned(), self.0.clone()),
            (LABEL_COMPONENT.to_owned(), component.to_owned()),
            (LABEL_AGENT.to_owned(), agent.to_owned()),
        ])
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A container of a bottle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// The external DLP proxy (optional, chained after egress).
    Pipelock,
    /// egress-proxy: the agent's HTTP(S) proxy.
    Egress,
    /// git-gate: the only git write path.
    GitGate,
    /// supervise: the MCP server.
    Supervise,
    /// The agent itself.
    Agent,
}

impl Component {
    /// Every component, in start order.
    pub const ALL: [Self; 5] = [
        Self::Pipelock,
        Self::Egress,
        Self::GitGate,
        Self::Supervise,
        Self::Agent,
    ];

    /// The name used in object names, labels and `--component`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pipelock => "pipelock",
            Self::Egress => "egress",
            Self::GitGate => "git-gate",
            Self::Supervise => "supervise",
            Self::Agent => "agent",
        }
    }

    /// Parses `--component` values.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown component {s:?}; expected one of pipelock, egress, git-gate, supervise, agent"))
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
