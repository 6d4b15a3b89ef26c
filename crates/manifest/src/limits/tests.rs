use proptest::prelude::*;

use super::*;

#[track_caller]
fn check(text: &str, expected: Result<u64, &str>) {
    match (MemorySize::parse(text), expected) {
        (Ok(m), Ok(bytes)) => assert_eq!(m.bytes(), bytes, "{text:?}"),
        (Err(e), Err(fragment)) => {
            let msg = e.to_string();
            assert!(msg.contains(fragment), "{text:?}: {msg}");
            assert!(msg.contains(&format!("{text:?}")), "names the input: {msg}");
        }
        (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn memory_sizes_parse_like_docker() {
    check("8g", Ok(8 * GIB));
    check("8G", Ok(8 * GIB));
    check("512m", Ok(512 * MIB));
    check("65536k", Ok(64 * MIB));
    check("67108864", Ok(64 * MIB));
    check("67108864b", Ok(64 * MIB));
    check(" 1g ", Ok(GIB));
    check("1024g", Ok(1024 * GIB));
    for bad in [
        "", "g", "8gb", "8 g", "1.5g", "-1g", "8t", "0x10m", "8g8", "８g",
    ] {
        check(bad, Err("expected a whole number with an optional unit"));
    }
    for out in [
        "63m",
        "0",
        "1025g",
        "99999999999999999999999g",
        "18446744073709551615g",
    ] {
        check(out, Err("out of range"));
    }
}

#[test]
fn memory_sizes_display_in_the_largest_exact_unit() {
    let show = |b: u64| MemorySize::from_bytes(b).map(|m| m.to_string());
    assert_eq!(show(8 * GIB).as_deref(), Some("8g"));
    assert_eq!(show(1536 * MIB).as_deref(), Some("1536m"));
    assert_eq!(show(64 * MIB + KIB).as_deref(), Some("65537k"));
    assert_eq!(show(64 * MIB + 1).as_deref(), Some("67108865b"));
    assert_eq!(show(MIN_MEMORY_BYTES - 1), None);
}

#[test]
fn workspace_modes_parse_and_name_the_valid_ones() {
    assert_eq!(WorkspaceMode::parse("protect"), Ok(WorkspaceMode::Protect));
    assert_eq!(WorkspaceMode::parse("copy"), Ok(WorkspaceMode::Copy));
    let err = WorkspaceMode::parse("rw").expect_err("rw");
    assert!(
        err.contains("\"rw\"") && err.contains("protect") && err.contains("copy"),
        "{err}"
    );
    assert_eq!(WorkspaceMode::default(), WorkspaceMode::Protect);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Display and parse round-trip for every size in range.
    #[test]
    fn display_round_trips(bytes in MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES) {
        let m = MemorySize::from_bytes(bytes).expect("in range");
        prop_assert_eq!(MemorySize::parse(&m.to_string()), Ok(m));
    }

    /// Any text parses to an in-range size or a named error; never a panic.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,24}") {
        match MemorySize::parse(&text) {
            Ok(m) => prop_assert!((MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&m.bytes())),
            Err(e) => {
                let shown = format!("{text:?}");
                prop_assert!(e.to_string().contains(&shown));
            }
        }
    }

    /// Digits with a unit scale exactly, or are refused as out of range.
    #[test]
    fn units_scale_exactly(n in 0u64..100_000_000, unit in prop::sample::select(vec!["", "b", "k", "m", "g", "K", "M", "G"])) {
        let scale = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1, "k" => KIB, "m" => MIB, _ => GIB,
        };
        let got = MemorySize::parse(&format!("{n}{unit}"));
        match n.checked_mul(scale).and_then(MemorySize::from_bytes) {
            Some(m) => prop_assert_eq!(got, Ok(m)),
            None => prop_assert!(matches!(got, Err(LimitError::MemoryRange(_)))),
        }
    }
}
