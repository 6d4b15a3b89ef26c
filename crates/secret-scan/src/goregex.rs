//! Translation of gitleaks' Go (RE2) regex syntax into `regex` crate syntax.
//!
//! The two dialects agree on almost everything; this pre-pass handles the
//! differences that show up in real gitleaks configs:
//! - a `{` that does not start a repetition (`{2}`, `{2,}`, `{2,5}`) is a
//!   literal in Go but an error here, so it is escaped (`}` likewise);
//! - `\Q…\E` literal spans are expanded into escaped text.
//!
//! Character classes are copied through untouched (a `{` inside `[...]` is
//! already literal in both dialects).

/// Rewrites a Go regex so the `regex` crate accepts it with the same meaning.
pub fn translate(go: &str) -> String {
    let chars: Vec<char> = go.chars().collect();
    let mut out = String::with_capacity(go.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    // Whether the previous token can be repeated (so `{n}` is a quantifier).
    let mut repeatable = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            if chars.get(i + 1) == Some(&'Q') && !in_class {
                let mut j = i + 2;
                let mut lit = String::new();
                while j < chars.len() && !(chars[j] == '\\' && chars.get(j + 1) == Some(&'E')) {
                    lit.push(chars[j]);
                    j += 1;
                }
                out.push_str(&regex::escape(&lit));
                i = (j + 2).min(chars.len().max(j));
                repeatable = !lit.is_empty();
                continue;
            }
            out.push(c);
            if let Some(&n) = chars.get(i + 1) {
                out.push(n);
            }
            i += 2;
            repeatable = true;
            continue;
        }
        if in_class {
            out.push(c);
            if c == ']' {
                in_class = false;
                repeatable = true;
            }
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push(c);
                i += 1;
                // A `]` (optionally after `^`) right at the start is literal.
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
            '{' => {
                let len = repetition_len(&chars[i..]);
                if repeatable && len > 0 {
                    out.extend(&chars[i..i + len]);
                    i += len;
                    // A lazy `?` after the repetition is copied by the next round.
                    repeatable = false;
                } else {
                    out.push_str("\\{");
                    i += 1;
                    repeatable = true;
                }
            }
            '}' => {
                out.push_str("\\}");
                i += 1;
                repeatable = true;
            }
            '(' | '|' => {
                out.push(c);
                i += 1;
                repeatable = false;
            }
            '*' | '+' | '?' => {
                out.push(c);
                i += 1;
                repeatable = false;
            }
            _ => {
                out.push(c);
                i += 1;
                repeatable = true;
            }
        }
    }
    out
}

/// Length of a `{n}`, `{n,}` or `{n,m}` quantifier at the start of `s`, or 0.
fn repetition_len(s: &[char]) -> usize {
    let mut i = 1;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < s.len() && s[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return 0;
    }
    if s.get(i) == Some(&',') {
        i += 1;
        digits(&mut i);
    }
    if s.get(i) == Some(&'}') { i + 1 } else { 0 }
}

#[cfg(test)]
mod tests;
