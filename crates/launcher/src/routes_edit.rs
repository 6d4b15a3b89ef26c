//! `launcher routes edit`: the operator edits a bottle's live routes file in
//! `$VISUAL`/`$EDITOR`, and nothing is applied until the text parses as a
//! routes file (`manifest::routes::RouteTable::parse`).
//!
//! Is: the edit loop as a function of an editor callback, so it is tested
//! without a terminal. A mistake re-opens the editor with the errors as
//! comments on top (interactive use); without a terminal, or when the
//! operator saves the same broken text again, it stops with the errors
//! and nothing changes.
//!
//! Is not: applying (the caller hands the table to [`crate::apply`]).

use std::path::Path;

use manifest::routes::RouteTable;

/// Most times the editor is opened for one edit.
pub const MAX_ATTEMPTS: usize = 5;
/// Prefix of the comment lines this loop writes (removed on re-open).
const MARK: &str = "# launcher:";

/// Why an edit ended without a table to apply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    /// The edited text does not parse.
    #[error("the edited routes file is invalid, nothing was applied:\n{0}")]
    Invalid(String),
    /// The editor failed.
    #[error("the editor failed ({0}); nothing was applied")]
    Editor(String),
    /// Reading or writing the temp file failed.
    #[error("{0}")]
    Io(String),
}

/// The outcome of an edit.
#[derive(Debug, PartialEq, Eq)]
pub enum Edited {
    /// The operator saved the table unchanged (or emptied the file).
    Unchanged,
    /// A valid, different table.
    Changed(RouteTable),
}

fn header(bottle: &str, errors: Option<&str>) -> String {
    let mut h = format!(
        "{MARK} live routes of bottle {bottle}. Save to apply (validated first); save it unchanged or empty to cancel.\n"
    );
    if let Some(e) = errors {
        h.push_str(&format!(
            "{MARK} THE LAST EDIT WAS NOT APPLIED; fix these problems:\n"
        ));
        for l in e.lines() {
            h.push_str(&format!("{MARK}   {l}\n"));
        }
    }
    h
}

fn strip_marks(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with(MARK))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs the edit loop on `file` (created here) starting from `current`
/// (the live file's text). `editor` opens the file and returns when the
/// operator is done; `interactive` allows re-opening after a mistake.
pub fn edit(
    bottle: &str,
    current: &str,
    file: &Path,
    interactive: bool,
    editor: &mut dyn FnMut(&Path) -> Result<(), String>,
) -> Result<Edited, EditError> {
    let io = |e: std::io::Error| EditError::Io(format!("{}: {e}", file.display()));
    let current_table = RouteTable::parse(current, "live routes").ok();
    let mut body = strip_marks(current);
    let mut errors: Option<String> = None;
    for _ in 0..MAX_ATTEMPTS {
        let presented = format!("{}{body}", header(bottle, errors.as_deref()));
        std::fs::write(file, &presented).map_err(io)?;
        editor(file).map_err(EditError::Editor)?;
        let text = std::fs::read_to_string(file).map_err(io)?;
        let edited = strip_marks(&text);
        if edited
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(Edited::Unchanged);
        }
        match RouteTable::parse(&edited, "edited routes") {
            Ok(t) if current_table.as_ref() == Some(&t) => return Ok(Edited::Unchanged),
            Ok(t) => return Ok(Edited::Changed(t)),
            Err(e) => {
                let msg = e.to_string();
                // Saved the same broken text again: the operator gives up.
                if !interactive || (errors.is_some() && edited == body) {
                    return Err(EditError::Invalid(msg));
                }
                errors = Some(msg);
                body = edited;
            }
        }
    }
    Err(EditError::Invalid(format!(
        "{} (gave up after {MAX_ATTEMPTS} attempts)",
        errors.unwrap_or_default()
    )))
}

/// The editor command: `$VISUAL`, then `$EDITOR`, then `vi`.
pub fn editor_command(env: impl Fn(&str) -> Option<String>) -> String {
    env("VISUAL")
        .filter(|v| !v.trim().is_empty())
        .or_else(|| env("EDITOR").filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "vi".to_owned())
}

/// Runs `cmd FILE` through `sh -c` (so `EDITOR="code --wait"` works) and
/// waits for it.
pub fn run_editor(cmd: &str, file: &Path) -> Result<(), String> {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd} \"$1\""))
        .arg("sh")
        .arg(file)
        .status()
        .map_err(|e| format!("starting {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} exited with {status}"))
    }
}

#[cfg(test)]
mod tests;
