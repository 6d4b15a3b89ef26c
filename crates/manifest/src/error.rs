//! Diagnostics: every error names the file, the path inside it and what would
//! be valid, and a parse collects all of them rather than stopping at the first.

use std::fmt;

/// One problem found in one input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (or other origin, e.g. `<embedded default>`) the input came from.
    pub file: String,
    /// Where inside the document: `agents.dev.bottle.egress.routes[2].auth.scheme`.
    /// Empty for problems with the document as a whole.
    pub path: String,
    /// 1-based line, when the YAML parser reported one.
    pub line: Option<u64>,
    /// 1-based column, when the YAML parser reported one.
    pub column: Option<u64>,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All the problems found in one input; never empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    diagnostics: Vec<Diagnostic>,
}

impl ManifestError {
    /// Wraps a non-empty list of diagnostics.
    ///
    /// # Panics
    /// Never: an empty list is turned into a single "unknown error" entry so a
    /// caller bug cannot produce an error that says nothing.
    pub fn new(mut diagnostics: Vec<Diagnostic>) -> Self {
        if diagnostics.is_empty() {
            diagnostics.push(Diagnostic {
                file: "<unknown>".into(),
                path: String::new(),
                line: None,
                column: None,
                message: "invalid input (no detail was recorded)".into(),
            });
        }
        Self { diagnostics }
    }

    /// A single document-level problem.
    pub fn single(file: &str, path: &str, message: impl Into<String>) -> Self {
        Self::new(vec![Diagnostic {
            file: file.to_owned(),
            path: path.to_owned(),
            line: None,
            column: None,
            message: message.into(),
        }])
    }

    /// The individual problems, in document order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// Appends another error's diagnostics.
    pub fn extend(&mut self, other: ManifestError) {
        self.diagnostics.extend(other.diagnostics);
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
