//! The one YAML/JSON reader for every file that crosses a boundary, and the
//! tree walker the validators use to collect located, path-named errors.
//!
//! Parsing goes through `serde-saphyr` into a span-carrying [`Node`] tree;
//! validators then walk the tree by hand so that *every* problem is reported
//! (serde's derive would stop at the first) with its line and column.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, Options, Spanned};

use crate::error::{Diagnostic, ManifestError};

/// A parsed YAML value with the position it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
}

/// The shapes a YAML node can have.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or an empty value.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A float.
    Float(f64),
    /// A string scalar.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// A short noun for error messages ("a string", "a list", …).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        match std::str::from_utf8(v) {
            Ok(s) => Ok(Value::Str(s.to_owned())),
            Err(_) => Err(E::custom("binary values are not supported")),
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Node, Node>()? {
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            value: spanned.value,
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
        })
    }
}

/// Largest document any boundary file may be (manifests, routes files, queue
/// files are all far smaller); a larger input is refused before parsing.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// Parses one YAML (or JSON) document into a [`Node`] tree.
///
/// Duplicate keys are errors; the parser's resource budget guards against
/// alias bombs. An empty document is `Value::Null`.
pub fn parse_document(text: &str, file: &str) -> Result<Node, ManifestError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(ManifestError::single(
            file,
            "",
            format!(
                "document is {} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes",
                text.len()
            ),
        ));
    }
    if text.trim().is_empty() {
        return Ok(Node {
            value: Value::Null,
            line: 1,
            column: 1,
        });
    }
    let mut options = Options::default();
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|e| {
        let (line, column) = match e.location() {
            Some(loc) if loc.line() > 0 => (Some(loc.line()), Some(loc.column())),
            _ => (None, None),
        };
        let message = first_line(&e.to_string());
        ManifestError::new(vec![Diagnostic {
            file: file.to_owned(),
            path: String::new(),
            line,
            column,
            message: format!("not valid YAML: {message}"),
        }])
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_owned()
}

/// A path inside a document, rendered as `agents.dev.bottle.egress.routes[2]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPath(String);

impl KeyPath {
    /// The document root.
    pub fn root() -> Self {
        Self(String::new())
    }
    /// A child key. Keys that are not plain identifiers are quoted.
    pub fn key(&self, key: &str) -> Self {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let seg = if plain {
            key.to_owned()
        } else {
            format!("{key:?}")
        };
        if self.0.is_empty() {
            Self(seg)
        } else {
            Self(format!("{}.{seg}", self.0))
        }
    }
    /// A list element.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }
    /// The rendered path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Collects diagnostics while a validator walks a [`Node`] tree.
#[derive(Debug)]
pub struct Checker {
    file: String,
    diagnostics: Vec<Diagnostic>,
}

impl Checker {
    /// A checker for one file.
    pub fn new(file: &str) -> Self {
        Self {
            file: file.to_owned(),
            diagnostics: Vec::new(),
        }
    }

    /// The origin name this checker reports.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Records a problem at `node`.
    pub fn error(&mut self, path: &KeyPath, node: &Node, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            file: self.file.clone(),
            path: path.as_str().to_owned(),
            line: (node.line > 0).then_some(node.line),
            column: (node.line > 0).then_some(node.column),
            message: message.into(),
        });
    }

    /// Records a problem with no position.
    pub fn error_at(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            file: self.file.clone(),
            path: path.as_str().to_owned(),
            line: None,
            column: None,
            message: message.into(),
        });
    }

    /// True when nothing has been recorded.
    pub fn is_clean(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// Number of problems recorded so far.
    pub fn count(&self) -> usize {
        self.diagnostics.len()
    }

    /// `Ok(value)` when clean, else all collected problems.
    pub fn finish<T>(self, value: T) -> Result<T, ManifestError> {
        if self.diagnostics.is_empty() {
            Ok(value)
        } else {
            Err(ManifestError::new(self.diagnostics))
        }
    }

    /// Expects a mapping whose keys are all in `allowed`. Unknown keys are
    /// reported (with a "did you mean" when one is close); keys listed in
    /// `legacy` are reported with their migration recipe instead.
    pub fn map<'n>(
        &mut self,
        path: &KeyPath,
        node: &'n Node,
        allowed: &[&str],
        legacy: &[(&str, &str)],
    ) -> Option<MapView<'n>> {
        let Value::Map(entries) = &node.value else {
            self.error(
                path,
                node,
                format!(
                    "expected a mapping with keys {}, found {}",
                    list(allowed),
                    node.value.kind()
                ),
            );
            return None;
        };
        let mut view = MapView {
            entries: Vec::new(),
        };
        for (k, v) in entries {
            let Value::Str(key) = &k.value else {
                self.error(
                    path,
                    k,
                    format!("keys must be strings, found {}", k.value.kind()),
                );
                continue;
            };
            if let Some((_, recipe)) = legacy.iter().find(|(l, _)| l == key) {
                self.error(&path.key(key), k, (*recipe).to_owned());
                continue;
            }
            if !allowed.contains(&key.as_str()) {
                let hint = did_you_mean(key, allowed)
                    .map(|s| format!("did you mean {s:?}? "))
                    .unwrap_or_default();
                self.error(
                    &path.key(key),
                    k,
                    format!(
                        "unknown key {key:?}; {hint}valid keys here: {}",
                        list(allowed)
                    ),
                );
                continue;
            }
            view.entries.push((key.as_str(), k, v));
        }
        Some(view)
    }

    /// Expects a string.
    pub fn string<'n>(&mut self, path: &KeyPath, node: &'n Node, what: &str) -> Option<&'n str> {
        match &node.value {
            Value::Str(s) => Some(s),
            other => {
                self.error(
                    path,
                    node,
                    format!("expected {what} (a string), found {}", other.kind()),
                );
                None
            }
        }
    }

    /// Expects a non-empty string.
    pub fn non_empty_string<'n>(
        &mut self,
        path: &KeyPath,
        node: &'n Node,
        what: &str,
    ) -> Option<&'n str> {
        let s = self.string(path, node, what)?;
        if s.trim().is_empty() {
            self.error(path, node, format!("{what} must not be empty"));
            return None;
        }
        Some(s)
    }

    /// Expects a boolean (`true`/`false`).
    pub fn boolean(&mut self, path: &KeyPath, node: &Node) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            other => {
                self.error(
                    path,
                    node,
                    format!("expected true or false, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// Expects a list; `null` counts as an empty list.
    pub fn seq<'n>(&mut self, path: &KeyPath, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            Value::Null => Some(&[]),
            other => {
                self.error(
                    path,
                    node,
                    format!("expected a list of {what}, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// A string, or a list of strings (a single string is sugar for a
    /// one-element list).
    pub fn string_or_list<'n>(
        &mut self,
        path: &KeyPath,
        node: &'n Node,
        what: &str,
    ) -> Vec<(KeyPath, &'n Node, &'n str)> {
        match &node.value {
            Value::Str(s) => vec![(path.clone(), node, s.as_str())],
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let p = path.index(i);
                    self.string(&p, item, what).map(|s| (p, item, s))
                })
                .collect(),
            other => {
                self.error(
                    path,
                    node,
                    format!(
                        "expected {what} (a string or a list of strings), found {}",
                        other.kind()
                    ),
                );
                Vec::new()
            }
        }
    }
}

/// The known keys of one mapping, after unknown and legacy keys were reported.
#[derive(Debug)]
pub struct MapView<'n> {
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> MapView<'n> {
    /// The value at `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|e| e.2)
    }

    /// The value at `key`, or a "missing key" diagnostic at `node`.
    pub fn require(
        &self,
        checker: &mut Checker,
        path: &KeyPath,
        node: &Node,
        key: &str,
        what: &str,
    ) -> Option<&'n Node> {
        let found = self.get(key);
        if found.is_none() {
            checker.error(path, node, format!("missing required key {key:?} ({what})"));
        }
        found
    }

    /// Entries in document order.
    pub fn entries(&self) -> impl Iterator<Item = (&'n str, &'n Node, &'n Node)> + '_ {
        self.entries.iter().copied()
    }
}

/// The closest candidate when it is plausibly a typo of `input`.
pub fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(input, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Renders `["a","b"]` as `a, b`.
pub fn list(items: &[&str]) -> String {
    items.join(", ")
}

#[cfg(test)]
mod tests;
