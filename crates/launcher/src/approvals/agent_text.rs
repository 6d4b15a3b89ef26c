//! Text the agent wrote (a justification, a host it asked for, a
//! Dockerfile), made safe to show an operator in a terminal.
//!
//! Is: the one escaper every preview uses. Control characters (newline and
//! tab included, in a one-line field), Unicode format characters (bidi
//! overrides and isolates, zero-width characters, the byte-order mark,
//! tag characters) and line/paragraph separators become visible `\u{…}`
//! escapes, so nothing the agent writes moves the cursor, clears the
//! screen, recolours text or reorders what the operator reads. A run of
//! combining marks is cut after [`MAX_MARKS`], so stacked marks cannot
//! paint over the lines around them. Lengths are display columns
//! (`unicode-width`), so a line is cut or wrapped where the terminal
//! would, and agent text never wraps to column 0 where it could pass for
//! the preview's own layout.
//!
//! Is not: a judgement of what the text says; the previews put it last,
//! quoted, under a label that says whose words they are.

use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_width::UnicodeWidthChar as _;

/// Combining marks kept in a row; further ones are escaped.
pub const MAX_MARKS: usize = 2;

/// Shown where a line was cut.
pub const ELLIPSIS: char = '…';

fn escaped(c: char) -> String {
    format!("\\u{{{:04x}}}", c as u32)
}

fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            get_general_category(c),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

fn is_mark(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark
    )
}

fn push_escaped(out: &mut String, s: &str, keep: impl Fn(char) -> bool) {
    let mut marks = 0;
    for c in s.chars() {
        if keep(c) {
            out.push(c);
            marks = 0;
            continue;
        }
        let mark = is_mark(c);
        marks = if mark { marks + 1 } else { 0 };
        if is_hidden(c) || (mark && marks > MAX_MARKS) {
            out.push_str(&escaped(c));
        } else {
            out.push(c);
        }
    }
}

/// One line of agent text: every character that is not plainly visible
/// (newline and tab included) becomes a `\u{…}` escape.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_escaped(&mut out, s, |_| false);
    out
}

/// Agent text that may span lines: newlines are kept, everything else as
/// in [`one_line`] (a tab too: its width depends on the terminal).
pub fn multi_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_escaped(&mut out, s, |c| c == '\n');
    out
}

/// The lines of agent text, each made safe by [`one_line`].
pub fn lines(s: &str) -> Vec<String> {
    s.split('\n').map(one_line).collect()
}

/// Display width of already-escaped text.
pub fn width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// `line` cut to at most `max` display columns, ending in `…` when cut.
pub fn cut(line: &str, max: usize) -> String {
    if width(line) <= max {
        return line.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in line.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push(ELLIPSIS);
    out
}

/// `line` broken into pieces of at most `max` display columns (at least
/// one column each), so a long line never wraps by itself.
pub fn wrap(line: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut out = vec![String::new()];
    let mut used = 0;
    for c in line.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > max && used > 0 {
            out.push(String::new());
            used = 0;
        }
        if let Some(last) = out.last_mut() {
            last.push(c);
        }
        used += w;
    }
    out
}

/// `text` broken at spaces into lines of at most `max` display columns,
/// every other space kept (indentation too); a word longer than a line is
/// broken by [`wrap`].
pub fn wrap_words(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for token in text.split_inclusive(' ') {
        let word = token.trim_end_matches(' ');
        if width(&line) + width(word) <= max {
            line.push_str(token);
            continue;
        }
        if !line.trim().is_empty() {
            out.push(line.trim_end_matches(' ').to_owned());
            line = String::new();
        }
        let mut pieces = wrap(&format!("{line}{token}"), max);
        line = pieces.pop().unwrap_or_default();
        out.extend(pieces);
    }
    // Trailing spaces of the last line may run past the width.
    while width(&line) > max && line.ends_with(' ') {
        line.pop();
    }
    out.push(line);
    out
}

/// The start of a long agent text, for a preview.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excerpt {
    /// The lines shown, escaped and cut to the width.
    pub lines: Vec<String>,
    /// Lines of the text not shown.
    pub more_lines: usize,
    /// Whether a shown line was cut.
    pub cut: bool,
}

impl Excerpt {
    /// The first `max_lines` lines of `text` (trailing blank lines
    /// dropped), each escaped and cut to `width` columns.
    pub fn of(text: &str, max_lines: usize, width: usize) -> Self {
        let all = lines(text.trim_end());
        let shown: Vec<String> = all.iter().take(max_lines).map(|l| cut(l, width)).collect();
        let cut = shown.iter().zip(&all).any(|(s, a)| s != a);
        Self {
            more_lines: all.len() - shown.len(),
            lines: shown,
            cut,
        }
    }

    /// Whether the text was shown whole.
    pub fn is_whole(&self) -> bool {
        self.more_lines == 0 && !self.cut
    }
}

#[cfg(test)]
mod tests;
