use proptest::prelude::*;
use unicode_general_category::{GeneralCategory, get_general_category};

use super::*;

fn check(input: &str, want: &str) {
    assert_eq!(one_line(input), want, "input {input:?}");
}

#[test]
fn terminal_controls_become_visible_escapes() {
    check("plain text", "plain text");
    // ANSI: clear screen, cursor up, OSC 8 hyperlink, 8-bit CSI.
    check("a\u{1b}[2Jb", "a\\u{001b}[2Jb");
    check("\u{1b}[1A\u{1b}[2K", "\\u{001b}[1A\\u{001b}[2K");
    check(
        "\u{1b}]8;;http://x\u{7}y\u{1b}]8;;\u{7}",
        "\\u{001b}]8;;http://x\\u{0007}y\\u{001b}]8;;\\u{0007}",
    );
    check("\u{9b}31m", "\\u{009b}31m");
    // Carriage return and backspace overwrite what was printed.
    check("safe\rEVIL", "safe\\u{000d}EVIL");
    check("x\u{8}y", "x\\u{0008}y");
    // Newline and tab in a one-line field.
    check("a\nb\tc", "a\\u{000a}b\\u{0009}c");
}

#[test]
fn invisible_and_reordering_characters_become_visible_escapes() {
    // Bidi overrides, isolates and marks.
    check("a\u{202e}b", "a\\u{202e}b");
    check("\u{2066}x\u{2069}", "\\u{2066}x\\u{2069}");
    check("\u{200f}\u{061c}", "\\u{200f}\\u{061c}");
    // Zero-width characters, BOM, soft hyphen, tags, separators.
    check(
        "a\u{200b}\u{200d}\u{2060}\u{feff}b",
        "a\\u{200b}\\u{200d}\\u{2060}\\u{feff}b",
    );
    check("soft\u{ad}hyphen", "soft\\u{00ad}hyphen");
    check("\u{e0041}", "\\u{e0041}");
    check("a\u{2028}b\u{2029}c", "a\\u{2028}b\\u{2029}c");
}

#[test]
fn stacked_combining_marks_are_cut_after_two() {
    check("e\u{301}", "e\u{301}");
    check(
        "e\u{301}\u{302}\u{303}\u{304}",
        "e\u{301}\u{302}\\u{0303}\\u{0304}",
    );
    // Non-Latin text with marks is untouched.
    check("नमस्ते", "नमस्ते");
}

#[test]
fn multi_line_keeps_newlines_only() {
    assert_eq!(multi_line("a\nb\tc\r\n"), "a\nb\\u{0009}c\\u{000d}\n");
    assert_eq!(lines("a\nb\u{1b}"), ["a", "b\\u{001b}"]);
}

#[test]
fn cut_and_wrap_count_display_columns() {
    assert_eq!(cut("abcdef", 4), "abc…");
    assert_eq!(cut("abc", 3), "abc");
    // Wide characters take two columns.
    assert_eq!(cut("日本語テキスト", 5), "日本…");
    assert_eq!(wrap("abcdefg", 3), ["abc", "def", "g"]);
    assert_eq!(wrap("日本語", 4), ["日本", "語"]);
    assert_eq!(wrap("", 3), [""]);
}

#[test]
fn words_wrap_at_spaces() {
    assert_eq!(
        wrap_words("against the bottle's current Dockerfile", 20),
        ["against the bottle's", "current Dockerfile"]
    );
    assert_eq!(
        wrap_words("a verylongwordindeed b", 8),
        ["a", "verylong", "wordinde", "ed b"]
    );
    assert_eq!(wrap_words("", 5), [""]);
    // Indentation and inner runs of spaces are kept.
    assert_eq!(wrap_words("  credential  none", 40), ["  credential  none"]);
    assert_eq!(wrap_words("   a b", 4), ["   a", "b"]);
}

#[test]
fn an_excerpt_says_what_it_left_out() {
    let e = Excerpt::of("one\ntwo\nthree\nfour\n\n", 2, 80);
    assert_eq!(e.lines, ["one", "two"]);
    assert_eq!(e.more_lines, 2);
    assert!(!e.is_whole());
    let e = Excerpt::of(&"x".repeat(100), 3, 10);
    assert_eq!(e.lines, ["xxxxxxxxx…"]);
    assert!(e.cut && e.more_lines == 0 && !e.is_whole());
    assert!(Excerpt::of("short", 3, 80).is_whole());
}

fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            get_general_category(c),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn nothing_hidden_survives_one_line(s in any::<String>()) {
        let out = one_line(&s);
        prop_assert!(!out.chars().any(hidden), "{out:?}");
    }

    #[test]
    fn only_newlines_survive_multi_line(s in any::<String>()) {
        let out = multi_line(&s);
        prop_assert!(!out.chars().any(|c| c != '\n' && hidden(c)), "{out:?}");
        prop_assert_eq!(out.matches('\n').count(), s.matches('\n').count());
    }

    #[test]
    fn plain_printable_text_is_unchanged(s in "[ -~]{0,200}") {
        prop_assert_eq!(one_line(&s), s);
    }

    #[test]
    fn cut_lines_fit_and_wrapped_lines_fit_and_join_back(s in any::<String>(), max in 2usize..120) {
        let safe = one_line(&s);
        prop_assert!(width(&cut(&safe, max)) <= max);
        let pieces = wrap(&safe, max);
        prop_assert!(pieces.iter().all(|p| width(p) <= max), "{pieces:?}");
        prop_assert_eq!(pieces.concat(), safe.clone());
        let words = wrap_words(&safe, max);
        prop_assert!(words.iter().all(|p| width(p) <= max), "{words:?}");
    }
}
