//! `launcher routes edit` and `launcher pipelock edit`: the operator edits
//! a bottle's live routes file (or pipelock config) in `$VISUAL`/`$EDITOR`,
//! and nothing is applied until the text passes its check (for routes,
//! `manifest::routes::RouteTable::parse`; for pipelock,
//! [`crate::approvals::apply::check_pipelock_config`]).
//!
//! Is: the edit loop as a function of an editor callback and a check, so
//! it is tested without a terminal. A mistake re-opens the editor with the
//! errors as comments on top (interactive use); without a terminal, or
//! when the operator saves the same broken text again, it stops with the
//! errors and nothing changes.
//!
//! Is not: applying (the caller hands the result to [`crate::approvals::apply`]).

use std::path::Path;

use manifest::routes::RouteTable;

/// Most times the editor is opened for one edit.
pub const MAX_ATTEMPTS: usize = 5;
/// Prefix of the comment lines this loop writes (removed on re-open).
const MARK: &str = "# launcher:";

/// Why an edit ended without a table to apply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    /// The edited text does not pass its check.
    #[error("the edited file is invalid, nothing was applied:\n{0}")]
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
pub enum Edited<T = RouteTable> {
    /// The operator saved the text unchanged (or emptied the file).
    Unchanged,
    /// A valid, different result.
    Changed(T),
}

fn header(what: &str, errors: Option<&str>) -> String {
    let mut h = format!(
        "{MARK} {what}. Save to apply (validated first); save it unchanged or empty to cancel.\n"
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
    let current_table = RouteTable::parse(current, "live routes").ok();
    edit_checked(
        &format!("live routes of bottle {bottle}"),
        current,
        file,
        interactive,
        editor,
        &|text: &str| RouteTable::parse(text, "edited routes").map_err(|e| e.to_string()),
        &|t: &RouteTable| current_table.as_ref() == Some(t),
    )
}

/// The edit loop over any text: `check` turns the saved text (without
/// this loop's comment lines) into a `T` or the problems to show;
/// `unchanged` says whether a valid `T` is what was live (then nothing is
/// applied). `what` names the file in the header comment.
pub fn edit_checked<T>(
    what: &str,
    current: &str,
    file: &Path,
    interactive: bool,
    editor: &mut dyn FnMut(&Path) -> Result<(), String>,
    check: &dyn Fn(&str) -> Result<T, String>,
    unchanged: &dyn Fn(&T) -> bool,
) -> Result<Edited<T>, EditError> {
    let io = |e: std::io::Error| EditError::Io(format!("{}: {e}", file.display()));
    let mut body = strip_marks(current);
    let mut errors: Option<String> = None;
    for _ in 0..MAX_ATTEMPTS {
        let presented = format!("{}{body}", header(what, errors.as_deref()));
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
        match check(&edited) {
            Ok(t) if unchanged(&t) => return Ok(Edited::Unchanged),
            Ok(t) => return Ok(Edited::Changed(t)),
            Err(msg) => {
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
