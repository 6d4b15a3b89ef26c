//! The agent manifest: a YAML (or JSON) document of named agents, or
//! Markdown agent files with YAML frontmatter, validated into [`Manifest`].
//!
//! ```yaml
//! version: 1            # optional; 1 is the only version
//! agents:
//!   dev:
//!     description: works on the app
//!     prompt: You are a careful engineer.
//!     skills: [./skills/review]
//!     dockerfile: ./Dockerfile.agent     # or image: <reference>, not both
//!     bottle:
//!       egress:
//!         allowlist: [pypi.org, files.pythonhosted.org]
//!         routes:
//!           - host: api.github.com
//!             path_allowlist: [/repos/acme/]
//!             auth: { scheme: Bearer, token_ref: GITHUB_TOKEN }
//!       git:
//!         - { name: app, upstream: "https://github.com/acme/app.git", auth: { token_ref: GITHUB_TOKEN } }
//! ```
//!
//! Paths (`skills`, `dockerfile`) are kept as written; the launcher resolves
//! them against the manifest's directory. This module does no I/O.

use std::fmt;

use crate::bottle::{Bottle, LEGACY_KEYS, parse_bottle, required};
use crate::error::{Diagnostic, ManifestError};
use crate::yaml::{Checker, KeyPath, Node, Value, parse_document};

/// The manifest format version.
pub const MANIFEST_VERSION: u64 = 1;

/// Longest agent name; it becomes part of container and network names.
pub const MAX_AGENT_NAME: usize = 40;

/// An agent name: `[a-z0-9][a-z0-9-]*`, at most [`MAX_AGENT_NAME`] bytes, no
/// trailing hyphen. It is the slug of the bottle identity and part of
/// Docker object names, so nothing else is allowed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentName(String);

impl AgentName {
    /// Validates a name.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= MAX_AGENT_NAME
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.ends_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "invalid agent name {s:?}; expected lowercase letters, digits and '-' (starting with a letter or digit, not ending with '-', at most {MAX_AGENT_NAME} bytes), e.g. dev or code-review"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the agent's image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// The launcher's built-in agent image.
    Default,
    /// An existing image reference (`image:`).
    Image(String),
    /// A Dockerfile to build (`dockerfile:`), relative to the manifest.
    Dockerfile(String),
}

/// One validated agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    name: AgentName,
    description: Option<String>,
    prompt: Option<String>,
    skills: Vec<String>,
    image: ImageSource,
    bottle: Bottle,
}

impl Agent {
    /// The agent's name.
    pub fn name(&self) -> &AgentName {
        &self.name
    }
    /// A one-line description for listings.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// The system prompt (a Markdown file's body).
    pub fn prompt(&self) -> Option<&str> {
        self.prompt.as_deref()
    }
    /// Skill directories (as written) copied into `~/.claude/skills`.
    pub fn skills(&self) -> &[String] {
        &self.skills
    }
    /// The image source.
    pub fn image(&self) -> &ImageSource {
        &self.image
    }
    /// The bottle.
    pub fn bottle(&self) -> &Bottle {
        &self.bottle
    }
}

/// A validated manifest: one or more agents with unique names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    origin: String,
    agents: Vec<Agent>,
}

impl Manifest {
    /// Parses a manifest document (YAML or JSON). Every problem is
    /// reported, each with file, key path and (where known) line/column.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ManifestError> {
        let doc = parse_document(text, origin)?;
        let mut c = Checker::new(origin);
        let root = KeyPath::root();
        let mut agents = Vec::new();
        if matches!(doc.value, Value::Null) {
            c.error(
                &root,
                &doc,
                "the manifest is empty; expected a mapping with an `agents` key, e.g. agents: {dev: {prompt: ...}}",
            );
        } else if let Some(top) = c.map(&root, &doc, &["version", "agents"], LEGACY_KEYS) {
            if let Some(v) = top.get("version") {
                check_version(&mut c, &root.key("version"), v);
            }
            if let Some(list) = required(
                &mut c,
                &top,
                (&root, &doc),
                &["version", "agents"],
                "agents",
                "a mapping of agent name to agent",
            ) {
                agents = parse_agents(&mut c, &root.key("agents"), list);
            }
        }
        let agents = c.finish(agents)?;
        Ok(Self {
            origin: origin.to_owned(),
            agents,
        })
    }

    /// Builds a manifest from agents loaded one per file (Markdown agent
    /// files). Names must be unique; `origins` pairs each agent with its
    /// file for the error message.
    pub fn from_agents(origin: &str, agents: Vec<(String, Agent)>) -> Result<Self, ManifestError> {
        let mut diags = Vec::new();
        let mut out: Vec<(String, Agent)> = Vec::new();
        for (file, agent) in agents {
            if let Some((first, _)) = out.iter().find(|(_, a)| a.name == agent.name) {
                diags.push(Diagnostic {
                    file: file.clone(),
                    path: "name".into(),
                    line: None,
                    column: None,
                    message: format!(
                        "agent name {:?} is already defined in {first}; agent names must be unique",
                        agent.name.as_str()
                    ),
                });
                continue;
            }
            out.push((file, agent));
        }
        if out.is_empty() && diags.is_empty() {
            diags.push(Diagnostic {
                file: origin.to_owned(),
                path: String::new(),
                line: None,
                column: None,
                message: "no agents found; expected at least one agent".into(),
            });
        }
        if !diags.is_empty() {
            return Err(ManifestError::new(diags));
        }
        Ok(Self {
            origin: origin.to_owned(),
            agents: out.into_iter().map(|(_, a)| a).collect(),
        })
    }

    /// Where the manifest came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The agents, in document order.
    pub fn agents(&self) -> &[Agent] {
        &self.agents
    }

    /// The agent called `name`.
    pub fn agent(&self, name: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.name.as_str() == name)
    }
}

fn check_version(c: &mut Checker, path: &KeyPath, node: &Node) {
    match &node.value {
        Value::Int(n) if *n == i128::from(MANIFEST_VERSION) => {}
        Value::Int(n) => c.error(
            path,
            node,
            format!(
                "unsupported manifest version {n}; this build reads version {MANIFEST_VERSION}"
            ),
        ),
        other => c.error(
            path,
            node,
            format!(
                "expected the manifest version {MANIFEST_VERSION} (an integer), found {}",
                other.kind()
            ),
        ),
    }
}

fn parse_agents(c: &mut Checker, path: &KeyPath, node: &Node) -> Vec<Agent> {
    let Value::Map(entries) = &node.value else {
        c.error(
            path,
            node,
            format!(
                "expected a mapping of agent name to agent (e.g. agents: {{dev: {{prompt: ...}}}}), found {}",
                node.value.kind()
            ),
        );
        return Vec::new();
    };
    if entries.is_empty() {
        c.error(path, node, "no agents defined; expected at least one agent");
        return Vec::new();
    }
    let mut out = Vec::new();
    for (k, v) in entries {
        let Value::Str(key) = &k.value else {
            c.error(
                path,
                k,
                format!("agent names must be strings, found {}", k.value.kind()),
            );
            continue;
        };
        let ap = path.key(key);
        let name = match AgentName::parse(key) {
            Ok(n) => Some(n),
            Err(e) => {
                c.error(&ap, k, e);
                None
            }
        };
        let agent = parse_agent_body(c, &ap, v, AGENT_KEYS, None);
        if let (Some(name), Some(fields)) = (name, agent) {
            out.push(fields.into_agent(name));
        }
    }
    out
}

const AGENT_KEYS: &[&str] = &[
    "description",
    "prompt",
    "skills",
    "image",
    "dockerfile",
    "bottle",
];
const FRONTMATTER_KEYS: &[&str] = &[
    "name",
    "description",
    "skills",
    "image",
    "dockerfile",
    "bottle",
];

struct AgentFields {
    description: Option<String>,
    prompt: Option<String>,
    skills: Vec<String>,
    image: ImageSource,
    bottle: Bottle,
}

impl AgentFields {
    fn into_agent(self, name: AgentName) -> Agent {
        Agent {
            name,
            description: self.description,
            prompt: self.prompt,
            skills: self.skills,
            image: self.image,
            bottle: self.bottle,
        }
    }
}

fn parse_agent_body(
    c: &mut Checker,
    path: &KeyPath,
    node: &Node,
    keys: &[&str],
    body_prompt: Option<String>,
) -> Option<AgentFields> {
    if matches!(node.value, Value::Null) {
        return Some(AgentFields {
            description: None,
            prompt: body_prompt,
            skills: Vec::new(),
            image: ImageSource::Default,
            bottle: Bottle::default(),
        });
    }
    let before = c.count();
    let prompt_recipe: &[(&str, &str)] = if body_prompt.is_some() || !keys.contains(&"prompt") {
        &[(
            "prompt",
            "in a Markdown agent file the body after the frontmatter is the prompt; remove the prompt key",
        )]
    } else {
        &[]
    };
    let legacy: Vec<(&str, &str)> = LEGACY_KEYS.iter().chain(prompt_recipe).copied().collect();
    let m = c.map(path, node, keys, &legacy)?;
    let description = m
        .get("description")
        .and_then(|n| c.string(&path.key("description"), n, "a description"))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let prompt = match m.get("prompt") {
        Some(n) => c
            .string(&path.key("prompt"), n, "the system prompt")
            .map(str::to_owned)
            .filter(|s| !s.trim().is_empty()),
        None => body_prompt,
    };
    let skills = m
        .get("skills")
        .map(|n| parse_skills(c, &path.key("skills"), n))
        .unwrap_or_default();
    let image = match (m.get("image"), m.get("dockerfile")) {
        (Some(_), Some(d)) => {
            c.error(
                &path.key("dockerfile"),
                d,
                "both image and dockerfile are set; use image for an existing image or dockerfile to build one, not both",
            );
            None
        }
        (Some(i), None) => parse_image_ref(c, &path.key("image"), i).map(ImageSource::Image),
        (None, Some(d)) => c
            .non_empty_string(&path.key("dockerfile"), d, "a Dockerfile path")
            .map(|s| ImageSource::Dockerfile(s.to_owned())),
        (None, None) => Some(ImageSource::Default),
    };
    let bottle = match m.get("bottle") {
        Some(n) => parse_bottle(c, &path.key("bottle"), n),
        None => Some(Bottle::default()),
    };
    if c.count() != before {
        return None;
    }
    Some(AgentFields {
        description,
        prompt,
        skills,
        image: image?,
        bottle: bottle?,
    })
}

fn parse_image_ref(c: &mut Checker, path: &KeyPath, node: &Node) -> Option<String> {
    let s = c.non_empty_string(path, node, "an image reference")?;
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b))
        && !s.starts_with(['-', '/', ':', '@', '.']);
    if ok {
        Some(s.to_owned())
    } else {
        c.error(
            path,
            node,
            format!("image {s:?} is not an image reference; expected e.g. debian:bookworm or registry.example/team/agent@sha256:<digest>"),
        );
        None
    }
}

fn parse_skills(c: &mut Checker, path: &KeyPath, node: &Node) -> Vec<String> {
    let Some(items) = c.seq(path, node, "skill directories") else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::new(); // (dir, basename)
    for (i, item) in items.iter().enumerate() {
        let p = path.index(i);
        let Some(s) = c.non_empty_string(&p, item, "a skill directory") else {
            continue;
        };
        if s.contains('\0') {
            c.error(&p, item, "skill directory contains a NUL byte");
            continue;
        }
        let base = s
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned();
        if base.is_empty() || base == "." || base == ".." {
            c.error(
                &p,
                item,
                format!("skill directory {s:?} has no directory name; it is copied to ~/.claude/skills/<name>, so name a directory, e.g. ./skills/review"),
            );
            continue;
        }
        if let Some((first, _)) = out.iter().find(|(_, b)| *b == base) {
            c.error(
                &p,
                item,
                format!("skill directory {s:?} has the same name {base:?} as {first:?}; both would be copied to ~/.claude/skills/{base}"),
            );
            continue;
        }
        out.push((s.to_owned(), base));
    }
    out.into_iter().map(|(s, _)| s).collect()
}

/// Parses a Markdown agent file: YAML frontmatter between `---` lines
/// (the agent's fields, plus an optional `name`), then the body, which is
/// the agent's prompt. Without a `name` key the agent is named after
/// `file_stem` (the file name without `.md`).
pub fn parse_markdown_agent(
    text: &str,
    origin: &str,
    file_stem: &str,
) -> Result<Agent, ManifestError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (front, body) = split_frontmatter(text).ok_or_else(|| {
        ManifestError::single(
            origin,
            "",
            "a Markdown agent file must start with a YAML frontmatter block: a line `---`, the agent's keys, and a closing line `---`",
        )
    })?;
    // `front` still starts with the opening `---` line, a YAML document
    // marker, so line numbers in diagnostics match the file.
    let doc = parse_document(front, origin)?;
    let mut c = Checker::new(origin);
    let root = KeyPath::root();
    let body = body.trim();
    let body_prompt = (!body.is_empty()).then(|| body.to_owned());
    let name_node = match &doc.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.value == Value::Str("name".into()))
            .map(|(_, v)| v),
        _ => None,
    };
    let name = match name_node {
        Some(n) => c
            .non_empty_string(&root.key("name"), n, "the agent name")
            .and_then(|s| {
                AgentName::parse(s)
                    .map_err(|e| c.error(&root.key("name"), n, e))
                    .ok()
            }),
        None => match AgentName::parse(file_stem) {
            Ok(n) => Some(n),
            Err(e) => {
                c.error_at(
                    &root,
                    format!("the agent is named after the file ({e}); rename the file or set `name:` in the frontmatter"),
                );
                None
            }
        },
    };
    let fields = if matches!(doc.value, Value::Null) {
        Some(AgentFields {
            description: None,
            prompt: body_prompt,
            skills: Vec::new(),
            image: ImageSource::Default,
            bottle: Bottle::default(),
        })
    } else {
        parse_agent_body(&mut c, &root, &doc, FRONTMATTER_KEYS, body_prompt)
    };
    let out = match (name, fields) {
        (Some(n), Some(f)) => Some(f.into_agent(n)),
        _ => None,
    };
    match (c.is_clean(), out) {
        (true, Some(agent)) => Ok(agent),
        (_, _) => Err(c.finish(()).err().unwrap_or_else(|| {
            ManifestError::single(origin, "", "invalid agent file (no detail was recorded)")
        })),
    }
}

/// Splits `---\n<yaml>---\n<body>` into (`---\n<yaml>`, body). The closing
/// delimiter is a line that is exactly `---` (or `...`).
fn split_frontmatter(text: &str) -> Option<(&str, &str)> {
    let first_end = text.find('\n')?;
    if text[..first_end].trim_end_matches('\r') != "---" {
        return None;
    }
    let mut pos = first_end + 1;
    while pos <= text.len() {
        let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
        let line = text[pos..end].trim_end_matches('\r');
        if line == "---" || line == "..." {
            let body_start = (end + 1).min(text.len());
            return Some((&text[..pos], &text[body_start..]));
        }
        if end == text.len() {
            break;
        }
        pos = end + 1;
    }
    None
}

#[cfg(test)]
mod tests;
